"""The bundle-size family's dynamic program: exact outcome and training step, timed.

For each setting, a `"bundle-sizes"` model with random `c` and `g` (the cost does not depend
on their values) is timed, best of `--repeats`, in one process:

* the exact outcome of `--profiles` fresh profiles (`model(bids)`, the served computation,
  without XLA) in blocks of 8, 64, 512 and the default (`tf_ama.core.mechanism.menu_block_size`),
  and the default with XLA (`jit_compile=True`, what `evaluate` uses); each as a ratio to the
  default block without XLA;
* one training step of the relaxation (`relaxation.batched_revenue_and_gradients`, the soft
  program of `bundle_sizes.soft_family` and its gradient) on a batch of `--batch` profiles,
  with and without XLA.

    python benchmarks/bundle_sizes_benchmark.py                    # 5x5, 3x10 and 5x10
    python benchmarks/bundle_sizes_benchmark.py --settings additive_3x10_uniform --json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_ama  # noqa: E402
from tf_ama.core.mechanism import exact_outcome, menu_block_size  # noqa: E402
from tf_ama.core.relaxation import batched_revenue_and_gradients  # noqa: E402

SETTINGS = ("additive_5x5_uniform", "additive_3x10_uniform", "additive_5x10_uniform")


def best_time(function, repeats):
    """Seconds of the fastest of `repeats` calls (after one untimed call: tracing, XLA)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def measure(setting, profiles, batch, repeats, seed=0):
    """The timings of one setting (a dict; module docstring)."""
    model = tf_ama.AffineMaximizerAuction(setting, menu="bundle-sizes", seed=seed)
    rng = np.random.default_rng(seed)
    layer = model.menu_layer
    layer.family_boosts.assign(layer.family_boosts + 0.1 * rng.normal(
        size=layer.family_boosts.shape).astype(np.float32))
    layer.bundle_size_boosts.assign(0.1 * rng.normal(
        size=layer.bundle_size_boosts.shape).astype(np.float32))
    menu = model.menu(tf.float64)
    bids = tf.cast(model.setting.sample(profiles, seed + 1), tf.float64)
    default = menu_block_size(menu)
    seconds = {}
    for block in sorted({8, 64, 512, default}):
        seconds[f"block {block}"] = best_time(
            lambda: exact_outcome(bids, *menu, micro_batch_size=block), repeats)
    seconds["default, XLA"] = best_time(
        lambda: exact_outcome(bids, *menu, jit_compile=True), repeats)
    reference = seconds[f"block {default}"]
    valuations = tf.cast(model.setting.sample(batch, seed + 2), tf.float32)
    menu32 = model.menu(tf.float32)
    steps = {}
    for jit in (False, True):
        steps["XLA" if jit else "plain"] = best_time(lambda: batched_revenue_and_gradients(
            valuations, *menu32[:3], model.temperature, micro_batch_size="auto",
            jit_compile=jit, separable_boosts=menu32.separable_boosts,
            size_boosts=menu32.size_boosts), repeats)
    return {"setting": setting, "profiles": profiles, "default_block": default,
            "outcome_seconds": seconds,
            "outcome_ratio": {k: v / reference for k, v in seconds.items()},
            "batch": batch, "step_seconds": steps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--profiles", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [measure(s, args.profiles, args.batch, args.repeats) for s in args.settings]
    if args.json:
        print(json.dumps(results, indent=1))
    for result in results:
        outcome = ", ".join(f"{name} {seconds:.2f} s ({result['outcome_ratio'][name]:.2f}x)"
                            for name, seconds in result["outcome_seconds"].items())
        steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in
                          result["step_seconds"].items())
        print(f"{result['setting']}: exact outcome of {result['profiles']} profiles: {outcome}; "
              f"a training step of {result['batch']}: {steps}")
    return results


if __name__ == "__main__":
    main()
