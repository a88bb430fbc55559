"""Exact evaluation of a full learned menu, with and without XLA, and of its pruned version.

Trains a lottery AMA briefly, prunes it to the entries that matter on 100 000 profiles
(`tf_ama.evaluation.usage.prune`), then times `evaluate(..., baselines=False)` on 100 000 FRESH
profiles (best of `--repeats`): the full menu without XLA (the served computation), the full
menu with XLA (`jit_compile=True`, the default of `evaluate`) and the pruned menu (XLA); and
`menu_usage` of the full menu (XLA), i.e. the exact outcome without the regret certificate. It
reports the fraction of entries used and kept, the speed-ups, and the revenues (full with and
without XLA agree to ~1e-14; the pruned model is a different, smaller AMA off the pruning
samples, so its revenue agrees within a few standard errors).

The pruned menu is what skipping entries could save at most, but it is another AMA off its
samples. `block_bound_kept` asks whether a skip that keeps the outcome bit for bit pays (issue
18): over blocks of `--bound-blocks` consecutive profiles, how many entries the block bound
(`block_bound_masks`) cannot rule out, on average.

    python benchmarks/evaluation_benchmark.py                      # additive_2x2_uniform, K=1024
    python benchmarks/evaluation_benchmark.py --menu-size 4096 --steps 300 --json
    python benchmarks/evaluation_benchmark.py --model-from RUN/model.keras --samples 20000
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_ama  # noqa: E402
from tf_ama.evaluation import reports as evaluation, usage  # noqa: E402


def best_time(function, repeats):
    """`(seconds of the fastest of `repeats` calls, last result)`."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def block_bound_masks(profiles, allocations, boosts, bidder_weights, block):
    """`[blocks, K]` bool: the entries that the block bound keeps on each block of `block`
    consecutive profiles (float64 numpy arrays, shapes as in `tf_ama.exact_outcome`).

    On a block whose bids lie in `[low, high]` (per bidder and item), entry k's welfare
    `W[k] = b_k + sum_i w_i sum_j a_kij v_ij` lies in `[b_k + sum w a low, b_k + sum w a high]`
    (allocations and weights are >= 0), and `W_-i[k]` likewise without bidder i's terms. An
    entry whose upper bound is below the best lower bound, for the welfare and for every
    `W_-i`, is no maximizer on any profile of the block (up to rounding): the exact outcome
    could skip it and stay the same."""
    weighted = allocations * bidder_weights[None, :, None]  # [K, m, n]
    num_bidders = len(bidder_weights)
    masks = []
    for start in range(0, len(profiles), block):
        part = profiles[start:start + block]
        low = np.einsum("ij,kij->ik", part.min(axis=0), weighted)  # [m, K]
        high = np.einsum("ij,kij->ik", part.max(axis=0), weighted)
        keep = np.zeros(len(boosts), bool)
        for left_out in (None, *range(num_bidders)):  # the welfare, then each W_-i
            rows = [i for i in range(num_bidders) if i != left_out]
            lowest = boosts + low[rows].sum(axis=0)
            keep |= boosts + high[rows].sum(axis=0) >= lowest.max()
        masks.append(keep)
    return np.array(masks)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="additive_2x2_uniform")
    parser.add_argument("--menu-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200, help="training steps (brief)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--micro-batch-size", "--chunk-size", type=int, default=None,
                        help="profiles per block of the exact outcome (default: "
                             "tf_ama.core.blocks.outcome_block_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-from", default=None,
                        help="a trained model.keras to evaluate instead of a brief training "
                             "(--setting, --menu-size, --steps and --batch-size are then unused)")
    parser.add_argument("--bound-blocks", default="1,8,64,1024",
                        help="block sizes for block_bound_kept, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.model_from:
        model, train_seconds = keras.models.load_model(args.model_from), None
        if not isinstance(model, tf_ama.AffineMaximizerAuction):
            raise ValueError(f"`--model-from`: {args.model_from} holds a "
                             f"{type(model).__name__}; this benchmark measures one menu for "
                             "all profiles (tf_ama.AffineMaximizerAuction).")
        args.setting, args.menu_size, args.steps = model.setting.name, model.menu_size, None
    else:
        model = tf_ama.AffineMaximizerAuction(args.setting, menu_size=args.menu_size, seed=0)
        model.compile(keras.optimizers.Adam(0.01))
        start = time.perf_counter()
        model.fit(tf_ama.fresh_valuations(args.batch_size), epochs=1,
                  steps_per_epoch=args.steps, verbose=0)
        train_seconds = time.perf_counter() - start
    menu = model.exact_menu()
    if menu.separable_boosts is not None:
        raise ValueError("`--model-from`: a menu with the item-separable family is not "
                         "measured here (the block bound covers the explicit entries).")
    profiles = np.asarray(model.setting.sample(min(args.samples, 4096), seed=2), np.float64)
    bound_kept = {block: float(block_bound_masks(profiles, *menu[:3], block).sum(axis=1).mean())
                  for block in map(int, args.bound_blocks.split(","))}

    start = time.perf_counter()
    pruned = usage.prune(model, num_samples=args.samples, seed=1,
                              micro_batch_size=args.micro_batch_size)
    prune_seconds = time.perf_counter() - start
    used = usage.menu_usage(model, num_samples=args.samples, seed=1,
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
    usage_seconds, _ = best_time(lambda: usage.menu_usage(
        model, num_samples=args.samples, seed=2, micro_batch_size=args.micro_batch_size),
        args.repeats)
    result = {
        "setting": args.setting,
        "menu_size": args.menu_size,
        "train_steps": args.steps,
        "batch_size": args.batch_size,
        "train_seconds": None if train_seconds is None else round(train_seconds, 2),
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
        # entries the block bound keeps, mean over blocks of this many profiles (<= 4096)
        "block_bound_kept": bound_kept,
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
