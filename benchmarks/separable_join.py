"""A trained lottery menu joined with the item-separable family at separate Myerson (issue 14).

    python benchmarks/separable_join.py RUN_DIR [--samples 100000]

Takes the lottery AMA of a finished `tf-ama train` run (additive, i.i.d. U[0, 1] bidders),
joins it with the separable family at separate Myerson (`c[nobody, j] = 0.5`,
`c[bidder, j] = 0`, weights as trained) and shifts every lottery boost by one constant
`delta` (entry 0 stays at 0). For every `delta` the joined mechanism is an AMA, so it is
exactly strategyproof and IR; no parameter is trained. `delta` is chosen by exact revenue
on the model's validation sample (seed + 1) and reported on its evaluation sample (seed + 2),
beside the two parts alone. Measures what the union can give before any joint training.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--deltas", type=float, nargs="+",
                        default=[round(0.1 * k, 1) for k in range(-2, 21)])
    args = parser.parse_args()

    import tensorflow as tf

    from tf_ama import runs, seeds
    from tf_ama.mechanism import exact_outcome

    model = runs.load_run(args.run_dir)[0]
    allocations, boosts, weights, _ = model.exact_menu()
    m, n = model.setting.num_bidders, model.setting.num_items
    family = np.zeros((m + 1, n))
    family[-1] = 0.5  # the monopoly reserve of U[0, 1]: separate Myerson

    def revenue(seed, delta=None, lottery=True):
        bids = tf.cast(model.setting.sample(args.samples, seed), tf.float64)
        shifted = boosts + (delta or 0.0)
        shifted[0] = 0.0
        menu = (allocations, shifted) if lottery else (allocations[:1], boosts[:1])
        outcome = exact_outcome(bids, *menu, weights, jit_compile=True,
                                separable_boosts=None if delta is None and lottery else family)
        paid = outcome["payments"].numpy().sum(axis=1)
        won = float(np.mean(outcome["menu_index"].numpy() < len(menu[0])))
        return float(paid.mean()), float(paid.std() / np.sqrt(len(paid))), won

    start = time.perf_counter()
    validation, evaluation = seeds.validation_seed(model.seed), seeds.evaluation_seed(model.seed)
    on_validation = {delta: revenue(validation, delta)[0] for delta in args.deltas}
    best = max(on_validation, key=on_validation.get)
    result = {
        "run": args.run_dir, "setting": model.setting.name, "menu_size": model.menu_size,
        "lottery_alone": revenue(evaluation)[:2],
        "family_alone": revenue(evaluation, lottery=False, delta=0.0)[:2],
        "delta_chosen_on_validation": best,
        "joined": revenue(evaluation, best),
        "validation_by_delta": on_validation,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
