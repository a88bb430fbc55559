"""What exact payments cost: `exact_outcome` against the cancelling formula, same process.

Since issue #12 the others' welfare `W_-i` is summed from the other bidders' terms
(`tf_ama.mechanism.others_welfare`: two cumulative sums over the bidder axis) instead of
`W - w_i u_i` (one subtraction, which made an item free for a bid of 1e16). This benchmark
times both formulas in one process, interleaved, on the same random lottery menu and bids:
the reference swaps `others_welfare` for the old subtraction. It reports, for the served
computation (plain, as the exported SavedModel runs it) and for evaluation (XLA):

* batch 1 latency, p50 over `--calls` calls of a `tf.function` (what one request pays);
* 100 000 profiles with the regret certificate (what `tf_ama.evaluate` pays);

and the ratio exact / reference (1.00 = no cost). The ratios are what to read: both variants
see the same machine load.

    python benchmarks/exactness_benchmark.py                            # 2x2 K=1024, 3x10 K=4096
    python benchmarks/exactness_benchmark.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_ama import mechanism, menus  # noqa: E402

CASES = [("2x2", 2, 2, 1024), ("3x10", 3, 10, 4096)]


def cancelling_others_welfare(weighted, boosts):
    """The formula before issue #12: W - w_i u_i (loses the others' terms beside huge u_i).
    It recomputes W, which the old code reused: one more reduction over `[m, B, K]` than
    before, so the reference is, if anything, slower than the old code."""
    return (tf.reduce_sum(weighted, axis=0) + boosts)[None] - weighted


@contextlib.contextmanager
def formula(function):
    """Runs `exact_outcome` with `function` as `others_welfare` (fresh XLA executables)."""
    original = mechanism.others_welfare
    mechanism.others_welfare = function
    mechanism._compiled_blocks.cache_clear()
    try:
        yield
    finally:
        mechanism.others_welfare = original
        mechanism._compiled_blocks.cache_clear()


def random_menu(num_bidders, num_items, menu_size, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(menu_size - 1, num_bidders + 1, num_items))
    allocations = menus.additive_lottery(tf.constant(logits, tf.float64))
    boosts = np.concatenate([[0.0], 0.3 * rng.normal(size=menu_size - 1)])
    return allocations, tf.constant(boosts), tf.constant(rng.uniform(0.5, 2.0, num_bidders))


def measure(menu, bids_one, bids_many, calls):
    """`{latency_ms, evaluate_plain_s, evaluate_xla_s}` of the current formula."""
    serve = tf.function(lambda bids: mechanism.exact_outcome(bids, *menu)["payments"])
    evaluate = {jit: tf.function(lambda bids, jit=jit: mechanism.exact_outcome(
        bids, *menu, with_certificate=True, jit_compile=jit)["regret"]) for jit in (False, True)}
    for _ in range(20):
        serve(bids_one)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        serve(bids_one).numpy()
        latencies.append(time.perf_counter() - start)
    result = {"latency_ms": 1e3 * float(np.median(latencies))}
    for jit, name in ((False, "evaluate_plain_s"), (True, "evaluate_xla_s")):
        evaluate[jit](bids_many).numpy()  # trace / compile
        start = time.perf_counter()
        evaluate[jit](bids_many).numpy()
        result[name] = time.perf_counter() - start
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="batch-1 calls per round")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, num_bidders, num_items, menu_size in CASES:
        menu = random_menu(num_bidders, num_items, menu_size)
        rng = np.random.default_rng(1)
        bids_many = tf.constant(rng.uniform(size=(args.samples, num_bidders, num_items)))
        bids_one = bids_many[:1]
        best = {"exact": {}, "reference": {}}
        for _ in range(args.rounds):
            for variant, function in (("exact", mechanism.others_welfare),
                                      ("reference", cancelling_others_welfare)):
                with formula(function):
                    for key, value in measure(menu, bids_one, bids_many, args.calls).items():
                        best[variant][key] = min(value, best[variant].get(key, np.inf))
        ratios = {key: best["exact"][key] / best["reference"][key] for key in best["exact"]}
        rows.append({"case": f"{name} K={menu_size}", **best, "ratio": ratios})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':<14}{'measure':<20}{'exact':>10}{'reference':>11}{'ratio':>8}")
    for row in rows:
        for key, unit in (("latency_ms", "ms"), ("evaluate_plain_s", "s"), ("evaluate_xla_s", "s")):
            print(f"{row['case']:<14}{key:<20}{row['exact'][key]:>9.3f}{unit[0]}"
                  f"{row['reference'][key]:>10.3f}{unit[0]}{row['ratio'][key]:>8.2f}")


if __name__ == "__main__":
    main()
