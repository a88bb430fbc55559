"""Exact evaluation of a full learned menu, with and without XLA, and of its pruned version.

Trains a lottery AMA briefly, prunes it to the entries that matter on 100 000 profiles
(`tf_ama.evaluation.prune`), then times `evaluate(..., baselines=False)` on 100 000 FRESH
profiles (best of `--repeats`): the full menu without XLA (the served computation), the full
menu with XLA (`jit_compile=True`, the default of `evaluate`) and the pruned menu (XLA); and
`menu_usage` of the full menu (XLA), i.e. the exact outcome without the regret certificate. It
reports the fraction of entries used and kept, the speed-ups, and the revenues (full with and
without XLA agree to ~1e-14; the pruned model is a different, smaller AMA off the pruning
samples, so its revenue agrees within a few standard errors).

    python benchmarks/evaluation_benchmark.py                      # additive_2x2_uniform, K=1024
    python benchmarks/evaluation_benchmark.py --menu-size 4096 --steps 300 --json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tf_ama  # noqa: E402
from tf_ama import evaluation  # noqa: E402


def best_time(function, repeats):
    """`(seconds of the fastest of `repeats` calls, last result)`."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="additive_2x2_uniform")
    parser.add_argument("--menu-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200, help="training steps (brief)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--micro-batch-size", "--chunk-size", type=int, default=None,
                        help="profiles per block of the exact outcome (default: "
                             "tf_ama.mechanism.default_micro_batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    model = tf_ama.AffineMaximizerAuction(args.setting, menu_size=args.menu_size, seed=0)
    model.compile(keras.optimizers.Adam(0.01))
    start = time.perf_counter()
    model.fit(tf_ama.fresh_valuations(args.batch_size), epochs=1, steps_per_epoch=args.steps,
              verbose=0)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    pruned = evaluation.prune(model, num_samples=args.samples, seed=1,
                              micro_batch_size=args.micro_batch_size)
    prune_seconds = time.perf_counter() - start
    used = evaluation.menu_usage(model, num_samples=args.samples, seed=1,
                                 micro_batch_size=args.micro_batch_size)

    def run(which, jit_compile=True):
        return evaluation.evaluate(which, num_samples=args.samples, seed=2, baselines=False,
                                   micro_batch_size=args.micro_batch_size,
                                   jit_compile=jit_compile)

    run(model)  # compiles the XLA executable once (~1-2 s), not part of the timings
    plain_seconds, plain = best_time(lambda: run(model, jit_compile=False), args.repeats)
    full_seconds, full = best_time(lambda: run(model), args.repeats)
    run(pruned)
    pruned_seconds, small = best_time(lambda: run(pruned), args.repeats)
    # The exact outcome alone (allocation, payments), without the regret certificate.
    usage_seconds, _ = best_time(lambda: evaluation.menu_usage(
        model, num_samples=args.samples, seed=2, micro_batch_size=args.micro_batch_size),
        args.repeats)
    result = {
        "setting": args.setting,
        "menu_size": args.menu_size,
        "train_steps": args.steps,
        "batch_size": args.batch_size,
        "train_seconds": round(train_seconds, 2),
        "samples": args.samples,
        "entries_used": len(used),
        "entries_kept": int(pruned.menu_size),
        "fraction_used": len(used) / args.menu_size,
        "fraction_kept": pruned.menu_size / args.menu_size,
        "prune_seconds": round(prune_seconds, 3),
        "evaluate_full_plain_seconds": round(plain_seconds, 3),
        "evaluate_full_xla_seconds": round(full_seconds, 3),
        "evaluate_pruned_xla_seconds": round(pruned_seconds, 3),
        "menu_usage_full_xla_seconds": round(usage_seconds, 3),
        "xla_speed_up": round(plain_seconds / full_seconds, 1),
        "pruned_speed_up": round(full_seconds / pruned_seconds, 1),
        "revenue_full_plain": round(plain.revenue, 5),
        "revenue_full": round(full.revenue, 5),
        "revenue_full_xla_minus_plain": full.revenue - plain.revenue,
        "revenue_pruned": round(small.revenue, 5),
        "revenue_stderr": round(full.revenue_stderr, 5),
        "pruned_ir_violations": small.ir_violations,
        "pruned_max_regret": small.max_regret,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return result


if __name__ == "__main__":
    main()
