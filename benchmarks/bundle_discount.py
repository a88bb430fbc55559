"""Why contextual training stalled at per-context Myerson (issue 32): the exact revenue of the
UNTRAINED menu of per-context Myerson and one grand bundle per bidder, as a function of the
bundles' discount (`ContextualMenu(bundle_discount=d)`: bidder i's bundle boosted by
`(1 - d) sum_j c[i, j]`, a share `d` of the reserve the family charges for the items spared).

    python benchmarks/bundle_discount.py      # the table of benchmarks/README.md (issue 32)
    python benchmarks/bundle_discount.py --sizes contextual_b:5x2 --discounts 0 0.3 --samples 2000

At `d = 0` no bundle wins an auction (each scores at most as the family), so the relaxation
weighs each by `exp(-lambda * gap)` and gradient training does not find them; the table
shows how much revenue a discount alone, untrained, brings. Exact revenue on `--samples`
fresh auctions of each size (seed `--seed`), paired against per-context Myerson on the same
auctions (`tf_ama.evaluate_contextual`).
"""

from __future__ import annotations

import argparse

SIZES = ("contextual_a:2x2", "contextual_a:2x10", "contextual_a:3x10", "contextual_b:3x2",
         "contextual_b:5x2")
DISCOUNTS = (0.0, 0.1, 0.2, 0.3, 0.45, 0.6)


def measure(setting, size, discounts, samples, seed):
    """`{discount: SizeReport}` of the untrained menu (no lotteries, bidder weights 1)."""
    import tf_ama

    reports = {}
    for discount in discounts:
        model = tf_ama.ContextualAuction(setting, sizes=[size], menu_size=1, bundles=True,
                                         learn_bidder_weights=False, bundle_discount=discount,
                                         seed=0)
        reports[discount] = tf_ama.evaluate_contextual(model, num_samples=samples,
                                                       seed=seed)[size]
    return reports


def main(argv=None):
    """Prints and returns the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES),
                        help="SETTING:SIZE, e.g. contextual_b:5x2")
    parser.add_argument("--discounts", type=float, nargs="+", default=list(DISCOUNTS))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    lines = ["| setting | size | per-context Myerson | "
             + " | ".join(f"d = {d:g}" for d in args.discounts) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in args.discounts) + " |"]
    for spec in args.sizes:
        setting, size = spec.split(":")
        reports = measure(setting, size, args.discounts, args.samples, args.seed)
        myerson = next(iter(reports.values())).myerson
        cells = [f"{r.revenue:.4f} ({r.gain:+.4f} ± {r.gain_stderr:.4f})"
                 for r in reports.values()]
        lines.append(f"| {setting} | {size} | {myerson:.4f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
