"""The item-separable family's table: `tf-ama train` runs of the family alone and of the
lottery menu joined with it, per setting and seed, with the lottery phase alone beside.

    python benchmarks/separable_runs.py --out runs/separable [--settings ...] [--seeds 0 1 2]
        [--separable-steps 500] [--table benchmarks/separable_runs.md] [-- TRAIN FLAGS]

Every run is `tf-ama train SETTING --menu MENU --seed S --out OUT/SETTING/MENU-S` with the
command line's defaults (plus the flags after `--`), so a row is what a user gets from one
command. A `lottery+separable` run trains its lottery menu alone first (in `.../lottery`,
the "lottery" column: a lottery-only run of the same budget), then joins it with the family
(`tf_ama.training.joining`). The family alone trains for `--separable-steps` (it starts at separate
Myerson, optimal among separate auctions for i.i.d. regular bidders, and keeps its start
unless training raises its validation revenue). Runs resume where they stopped; finished runs are only read. Revenues
are exact, on the 100 000 profiles of each run's evaluation seed (seed + 2), the baselines
on the same profiles; times are wall-clock seconds of the `tf-ama train` process.
"""

from __future__ import annotations

import argparse
import os
import statistics

from recipe_runs import cell as _cell, read as _read, run, write_table  # benchmarks/ on sys.path

SETTINGS = ("additive_2x2_uniform", "additive_2x5_uniform", "additive_3x10_uniform",
            "additive_5x10_uniform")
MENUS = ("separable", "lottery+separable")


def main(argv=None):
    """Runs (or reads) the runs asked for; prints and returns the table's lines."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--settings", nargs="+", default=SETTINGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--separable-steps", type=int, default=500)
    parser.add_argument("--table", help="also write the markdown table to this file")
    parser.add_argument("flags", nargs=argparse.REMAINDER,
                        help="after `--`: flags for every tf-ama train run")
    args = parser.parse_args(argv)
    flags = args.flags[1:] if args.flags[:1] == ["--"] else args.flags

    rows = ["| setting | separable | lottery (phase 1) | lottery+separable | family share | "
            "separate Myerson | VCG | minutes (separable, joined) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setting in args.settings:
        results = {menu: [] for menu in (*MENUS, "lottery")}
        shares, myerson, vcg, minutes = [], [], [], {menu: [] for menu in MENUS}
        for seed in args.seeds:
            for menu in MENUS:
                out = os.path.join(args.out, setting, f"{menu}-{seed}")
                steps = ["--steps", str(args.separable_steps)] if menu == "separable" else []
                seconds = run(["train", setting, "--menu", menu, "--seed", str(seed), *steps,
                               *flags], out)
                report = _read(out)
                results[menu].append(report["revenue"])
                minutes[menu].append(seconds / 60)
                if menu == "lottery+separable":
                    results["lottery"].append(_read(os.path.join(out, "lottery"))["revenue"])
                    shares.append(report["family_share"])
                    myerson.append(report["baselines"]["separate_myerson"]["revenue"])
                    vcg.append(report["baselines"]["vcg"]["revenue"])
        rows.append(
            f"| `{setting}` | {_cell(results['separable'])} | {_cell(results['lottery'])} | "
            f"**{_cell(results['lottery+separable'])}** | {statistics.mean(shares):.0%} | "
            f"{statistics.mean(myerson):.4f} | {statistics.mean(vcg):.4f} | "
            f"{statistics.mean(minutes['separable']):.1f}, "
            f"{statistics.mean(minutes['lottery+separable']):.1f} |")
        print("\n".join(rows), flush=True)
    write_table(args.table, rows)
    return rows


if __name__ == "__main__":
    main()
