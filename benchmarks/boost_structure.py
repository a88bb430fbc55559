"""What a trained deterministic menu's boosts learned: how much of its revenue a smaller
family of boosts keeps.

    python benchmarks/boost_structure.py RUN_DIR [--samples 100000]

Takes a finished `tf-ama train SETTING --menu deterministic` run (additive: every 0/1
allocation `a` with its own boost `b_a`, e.g. the default of `additive_5x5_uniform`) and fits
its boosts by least squares on the features of a smaller family, weighting the entries that
win a profile of the validation sample (seed + 1) a thousand times more than those that never
do (their boosts are whatever training left). Each fitted menu is then served exactly
(`tf_ama.exact_outcome`) on the evaluation sample (seed + 2), beside the trained one:

  separable:      b_a = sum_j c[o_j, j], the owner `o_j` of item j (a bidder or nobody): the
                  item-separable family (separate Myerson is one of its members);
  + bundle sizes: b_a = sum_j c[o_j, j] + sum_o g[o, k_o], with `k_o` the number of items
                  owner `o` gets: a boost for the size of each bidder's bundle (and for the
                  number of items kept).

If the bundle-size family keeps the trained revenue, the gain over separate auctions is a
price for the size of each bundle: a family with O(m n) parameters whose welfare maximizer a
dynamic program over the bidders' item counts finds, for settings whose allocations are far
too many to enumerate (benchmarks/README.md, "Revenue frontier").
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def owners(allocations):
    """`[K, n]` the owner of each item in each 0/1 allocation `[K, m, n]`: the bidder, or m
    for nobody."""
    num_bidders = allocations.shape[1]
    return np.where(allocations.sum(axis=1) > 0.5, allocations.argmax(axis=1), num_bidders)


def features(owner, num_bidders, family):
    """The design matrix `[K, features]` of `family` ("separable" or "bundle sizes")."""
    num_items = owner.shape[1]
    columns = [(owner[:, j] == o) for o in range(num_bidders + 1) for j in range(num_items)]
    if family == "bundle sizes":
        counts = np.stack([(owner == o).sum(axis=1) for o in range(num_bidders + 1)], axis=1)
        columns += [counts[:, o] == k for o in range(num_bidders + 1)
                    for k in range(1, num_items + 1)]
    return np.column_stack(columns).astype(np.float64)


def structure(model, validation, evaluation):
    """`{family: {"parameters", "rms_residual", "revenue"}}` with "trained" the model's own
    menu (module docstring), on float64 `[P, m, n]` samples."""
    import tensorflow as tf

    import tf_ama

    allocations, boosts, weights, family, _ = (None if t is None else np.asarray(t, np.float64)
                                               for t in model.menu(tf.float64))
    if family is not None or not np.all((allocations == 0) | (allocations == 1)):
        raise ValueError("boost_structure: the run's menu must be deterministic "
                         "(`tf-ama train SETTING --menu deterministic`), without the family.")
    served = tf_ama.exact_outcome(tf.constant(validation, tf.float64), allocations, boosts,
                                  weights)["menu_index"].numpy()
    importance = np.where(np.bincount(served, minlength=len(boosts)) > 0, 1.0, 1e-3)

    def revenue(menu_boosts):
        outcome = tf_ama.exact_outcome(tf.constant(evaluation, tf.float64), allocations,
                                       menu_boosts - menu_boosts[0], weights)
        return float(tf.reduce_mean(tf.reduce_sum(outcome["payments"], axis=1)))

    report = {"trained": {"parameters": len(boosts) - 1, "rms_residual": 0.0,
                          "revenue": revenue(boosts)}}
    owner = owners(allocations)
    for name in ("separable", "bundle sizes"):
        design = features(owner, allocations.shape[1], name)
        scale = np.sqrt(importance)[:, None]
        coefficients = np.linalg.lstsq(design * scale, boosts * scale[:, 0], rcond=None)[0]
        fitted = design @ coefficients
        residual = np.sqrt(np.average((boosts - fitted) ** 2, weights=importance))
        report[name] = {"parameters": int(np.linalg.matrix_rank(design)),
                        "rms_residual": float(residual), "revenue": revenue(fitted)}
    return report


def main(argv=None):
    """Prints and returns the report (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args(argv)

    from tf_ama.training import runs
    from tf_ama.utils import seeds

    model = runs.load_run(args.run_dir)[0]
    sample = lambda seed, size: np.asarray(model.setting.sample(size, seed), np.float64)
    report = structure(model, sample(seeds.validation_seed(model.seed), 10_000),
                       sample(seeds.evaluation_seed(model.seed), args.samples))
    print("| boosts | parameters | rms residual (entries in play) | exact revenue |")
    print("| --- | --- | --- | --- |")
    for name, row in report.items():
        print(f"| {name} | {row['parameters']} | {row['rms_residual']:.4f} | "
              f"{row['revenue']:.4f} |")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
