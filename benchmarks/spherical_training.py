"""Lottery vs deterministic AMA on unit_demand_2x4_spherical, trained on the exact expectation.

The spherical distribution (DESIGN §4, base 2) has 5 points per bidder, so 25 profiles.
`tf_ama.expectation_dataset` is all of them with their probabilities as sample weights:
training on it is gradient ascent on the EXACT expected soft revenue (no sampling noise), and
validating on it gives the exact expected revenue (no standard error). `evaluate` on 100 000
fresh samples is reported beside it as a check.

Recipe, the same for both menus and every seed (Adam): the phases of PHASES, (steps,
lambda, learning rate) each, set per epoch by `tf_ama.TemperatureScheduler` and
`keras.callbacks.LearningRateScheduler`. Lottery: K = 4096 learned entries; deterministic:
the 21 deterministic allocations, boosts learned.

    python benchmarks/spherical_training.py --seeds 0 1 2          # ~2-3 min per seed, 2 cores
    python benchmarks/spherical_training.py --seeds 0 --steps-scale 0.1 --menu-size 64
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

SETTING = "unit_demand_2x4_spherical"
STEPS_PER_EPOCH = 500
# (steps, lambda, learning rate): a soft start, the paper's lambda = 100, then annealing.
PHASES = ((2000, 10.0, 0.01), (2000, 30.0, 0.01), (2000, 100.0, 0.01),
          (1000, 300.0, 0.003), (1000, 1000.0, 0.001))


def phase_schedule(phases, column):
    """Per-epoch value of `column` (1: lambda, 2: learning rate) of the phase the epoch is in."""
    bounds = np.cumsum([phase[0] for phase in phases]) // STEPS_PER_EPOCH

    def schedule(epoch, _=None):
        index = min(int(np.searchsorted(bounds, epoch, side="right")), len(phases) - 1)
        return float(phases[index][column])

    return schedule


def exact_expected_revenue(model):
    """sum_profiles probability * (summed exact payments), in float64."""
    profiles, probabilities = tf_ama.distributions.finite_support(
        model.setting.distribution_fn(tf.float64))
    payments = model(tf.constant(profiles))["payments"].numpy().sum(axis=1)
    return float(np.dot(probabilities, payments))


def train(menu, seed, menu_size, phases):
    model = tf_ama.AffineMaximizerAuction(
        SETTING, menu=menu, menu_size=menu_size if menu == "lottery" else 21, seed=seed,
        temperature=phases[0][1])
    model.compile(optimizer=keras.optimizers.Adam(phases[0][2]))
    steps = sum(phase[0] for phase in phases)
    start = time.perf_counter()
    model.fit(tf_ama.expectation_dataset(SETTING).repeat(), epochs=steps // STEPS_PER_EPOCH,
              steps_per_epoch=STEPS_PER_EPOCH, verbose=0, callbacks=[
                  tf_ama.TemperatureScheduler(phase_schedule(phases, 1),
                                              scale_learning_rate=False),
                  keras.callbacks.LearningRateScheduler(phase_schedule(phases, 2))])
    seconds = time.perf_counter() - start
    report = tf_ama.evaluate(model, num_samples=100_000, seed=2, baselines=False)
    return {"menu": menu, "seed": seed, "menu_size": model.menu_size, "steps": steps,
            "seconds": round(seconds, 1), "exact_revenue": round(exact_expected_revenue(model), 4),
            "sampled_revenue": round(report.revenue, 4),
            "sampled_stderr": round(report.revenue_stderr, 4),
            "entries_used": report.entries_used, "lottery_entries_used": report.lottery_entries_used,
            "max_regret": report.max_regret, "ir_violations": report.ir_violations}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--menu-size", type=int, default=4096)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every phase's steps (rounded to whole epochs of "
                             f"{STEPS_PER_EPOCH})")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    phases = [(max(1, round(steps * args.steps_scale / STEPS_PER_EPOCH)) * STEPS_PER_EPOCH,
               temperature, rate) for steps, temperature, rate in PHASES]
    results = []
    for seed in args.seeds:
        for menu in ("lottery", "deterministic"):
            result = train(menu, seed, args.menu_size, phases)
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
