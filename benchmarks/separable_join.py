"""A trained lottery menu joined with the item-separable family, before any joint training.

    python benchmarks/separable_join.py RUN_DIR [--samples 100000]

Takes the lottery AMA of a finished `tf-ama train` run (additive setting), joins it with the
item-separable family at separate Myerson and shifts every lottery boost by the constant of
the highest exact revenue on the model's validation sample (seed + 1): phase 2 of
`tf-ama train --menu lottery+separable` (`tf_ama.training.joining`), alone. Reports, on its
evaluation sample (seed + 2), the lottery alone, the family alone and the join: what the
union gives before the joint steps.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None):
    """Prints and returns the report (a dict) of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args(argv)

    import tf_ama
    from tf_ama.training import joining, runs
    from tf_ama.utils import seeds

    lottery = runs.load_run(args.run_dir)[0]
    options = {"menu_size": lottery.menu_size, "seed": lottery.seed,
               "learn_bidder_weights": lottery.learn_bidder_weights}
    joined = tf_ama.AffineMaximizerAuction(lottery.setting, menu="lottery+separable", **options)
    family = tf_ama.AffineMaximizerAuction(lottery.setting, menu="separable", seed=lottery.seed)
    start = time.perf_counter()
    validation = lottery.setting.sample(10_000, seeds.validation_seed(lottery.seed))
    shift, by_shift = joining.choose_shift(joined, lottery, validation)

    def revenue(model):
        report = tf_ama.evaluate(model, args.samples, baselines=False)
        return {"revenue": report.revenue, "stderr": report.revenue_stderr,
                "family_share": report.family_share}

    report = {
        "run": args.run_dir, "setting": lottery.setting.name, "menu_size": lottery.menu_size,
        "lottery_alone": revenue(lottery), "family_alone": revenue(family),
        "shift_chosen_on_validation": shift, "joined": revenue(joined),
        "validation_by_shift": by_shift, "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
