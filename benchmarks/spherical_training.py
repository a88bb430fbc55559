"""Lottery vs deterministic AMA on unit_demand_2x4_spherical, trained on the exact expectation.

The spherical distribution (DESIGN §4, base 2) puts each bidder on 5 points with probabilities
2^(4-k) / 31. The 961 profiles in which the point pair (a, b) appears 2^(4-a) * 2^(4-b) times
therefore have the distribution's expectation as their plain mean: training on that batch is
gradient descent on the EXACT expected soft revenue (no sampling noise), and the mean exact
revenue over it is the exact expected revenue (no standard error). `evaluate` on 100 000
fresh samples is reported beside it as a check.

Recipe, the same for both menus and every seed: Adam; 3000 steps at lambda = 100 (lr 0.01),
then 1000 at 300 (lr 0.003) and 1000 at 1000 (lr 0.001), set per epoch of 250 steps by
`tf_ama.TemperatureScheduler` and `keras.callbacks.LearningRateScheduler`. Lottery: K = 4096
learned entries; deterministic: the 21 deterministic allocations, boosts learned.

    python benchmarks/spherical_training.py --seeds 0 1 2          # ~5-15 min per seed, 2 cores
    python benchmarks/spherical_training.py --seeds 0 --phase-steps 250 250 250 --menu-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_ama  # noqa: E402
from tf_ama import distributions, mechanism  # noqa: E402

SETTING = "unit_demand_2x4_spherical"
STEPS_PER_EPOCH = 250
TEMPERATURES = (100.0, 300.0, 1000.0)
LEARNING_RATES = (0.01, 0.003, 0.001)


def expectation_batch(num_bidders=2, base=2):
    """`[base^(2 (P-1)) ..., 2, 4]` float32 profiles whose mean is the exact expectation."""
    points = (float(base) ** np.arange(5))[:, None] * np.asarray(
        distributions.SPHERICAL_DIRECTIONS)
    copies = base ** (4 - np.arange(5))
    if num_bidders != 2:
        raise ValueError("This script builds the 2-bidder batch only.")
    return np.array([np.stack([points[a], points[b]]) for a in range(5) for b in range(5)
                     for _ in range(copies[a] * copies[b])], np.float32)


def phase_schedule(phase_steps, values):
    """Per-epoch value: `values[i]` during phase i (phases measured in steps)."""
    bounds = np.cumsum(phase_steps) // STEPS_PER_EPOCH

    def schedule(epoch, _=None):
        return float(values[min(int(np.searchsorted(bounds, epoch, side="right")),
                                len(values) - 1)])

    return schedule


def train(menu, seed, menu_size, phase_steps, batch):
    model = tf_ama.AffineMaximizerAuction(
        SETTING, menu=menu, menu_size=menu_size if menu == "lottery" else 21, seed=seed,
        temperature=TEMPERATURES[0])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATES[0]))
    epochs = int(sum(phase_steps)) // STEPS_PER_EPOCH
    start = time.perf_counter()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=epochs,
              steps_per_epoch=STEPS_PER_EPOCH, verbose=0, callbacks=[
                  tf_ama.TemperatureScheduler(phase_schedule(phase_steps, TEMPERATURES),
                                              scale_learning_rate=False),
                  keras.callbacks.LearningRateScheduler(
                      phase_schedule(phase_steps, LEARNING_RATES))])
    seconds = time.perf_counter() - start
    outcome = mechanism.exact_outcome(tf.constant(batch, tf.float64), *model.menu(tf.float64))
    exact = float(tf.reduce_mean(tf.reduce_sum(outcome["payments"], axis=1)))
    report = tf_ama.evaluate(model, num_samples=100_000, seed=2, baselines=False)
    return {"menu": menu, "seed": seed, "menu_size": model.menu_size, "steps": int(sum(phase_steps)),
            "seconds": round(seconds, 1), "exact_revenue": round(exact, 4),
            "sampled_revenue": round(report.revenue, 4),
            "sampled_stderr": round(report.revenue_stderr, 4),
            "entries_used": report.entries_used, "lottery_entries_used": report.lottery_entries_used,
            "max_regret": report.max_regret, "ir_violations": report.ir_violations}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--menu-size", type=int, default=4096)
    parser.add_argument("--phase-steps", type=int, nargs=3, default=[3000, 1000, 1000],
                        help="steps at lambda 100, 300 and 1000 (multiples of 250)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    if any(steps % STEPS_PER_EPOCH for steps in args.phase_steps):
        parser.error(f"--phase-steps must be multiples of {STEPS_PER_EPOCH}")
    batch = expectation_batch()
    results = []
    for seed in args.seeds:
        for menu in ("lottery", "deterministic"):
            result = train(menu, seed, args.menu_size, args.phase_steps, batch)
            results.append(result)
            print(json.dumps(result) if args.json else
                  f"{menu:>13} seed {seed}: exact {result['exact_revenue']:.4f}, sampled "
                  f"{result['sampled_revenue']:.4f} +- {result['sampled_stderr']:.4f}, "
                  f"{result['entries_used']} entries used, {result['seconds']:.0f} s", flush=True)
    for menu in ("lottery", "deterministic"):
        values = [r["exact_revenue"] for r in results if r["menu"] == menu]
        print(f"{menu}: mean exact revenue over seeds {args.seeds}: {np.mean(values):.4f}")
    return results


if __name__ == "__main__":
    main()
