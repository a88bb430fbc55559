"""The recipes' table: `tf-ama train SETTING [--menu deterministic] --seed S` with no tuning
flag (the setting's default recipe, `tf_ama.training.recipes`), per setting and seed.

    python benchmarks/recipe_runs.py --out runs/recipes [--rows 0 3] [--seeds 0 1 2]
        [--table benchmarks/recipe_runs.md] [-- TRAIN FLAGS]

Each row is what a user gets from one command: `tf-ama train SETTING [FLAGS] --seed S --out
OUT/ROW/seed-S`. Runs resume where they stopped; finished runs are only read (a run
directory trained earlier with the same configuration, e.g. by benchmarks/separable_runs.py,
can be copied in: `tf-ama train` then loads it, which proves the configuration is the
recipe's). Revenues are exact, on the 100 000 profiles of each run's evaluation seed
(seed + 2); minutes are wall-clock minutes of the `tf-ama train` process. Flags after `--`
go to every `tf-ama train` (none for the table: it is the recipes with no tuning flag;
tests/benchmarks_test.py passes tiny sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (setting, flags, seeds, "mean at least", goal, minutes allowed): issue 15's acceptance
# (and issue 33's 5x5, 3x10 and 5x10 rows).
ROWS = (
    ("unit_demand_2x4_spherical", (), (0, 1, 2), 2.20, 2.25, 15),
    ("unit_demand_2x4_spherical", ("--menu", "deterministic"), (0, 1, 2), 1.70, 1.80, 10),
    ("additive_2x2_uniform", (), (0, 1, 2), 0.868, 0.872, 15),
    ("additive_2x2_uniform", ("--menu", "deterministic"), (0, 1, 2), 0.865, 0.8673, 10),
    # issue 33's: EquivariantNet (approximately strategyproof) 5.744
    ("additive_3x10_uniform", (), (0, 1, 2), 5.65, 5.74, 30),
    ("additive_1x2_uniform_4_16_4_7", (), (0, 1, 2), 9.70, 9.75, 10),
    ("additive_3x1_exponential", (), (0, 1, 2), 2.747, 2.750, 10),
    # issue 33's: CITransNet (approximately strategyproof) 2.3788
    ("additive_2x5_uniform", (), (0, 1, 2), 2.37, 2.38, 20),
    # issue 33's: separate Myerson earns 3.359, CITransNet (approximately strategyproof) 3.476
    ("additive_5x5_uniform", (), (0, 1, 2), 3.40, 3.47, 30),
    # issue 33's: RegretNet (approximately strategyproof) 6.778
    ("additive_5x10_uniform", (), (0, 1, 2), 6.74, 6.78, 30),
)


def run(argv, out):
    """`tf-ama ARGV --out OUT` unless OUT holds an evaluated run; returns its seconds (from
    `OUT/seconds.json` when it had finished)."""
    if not os.path.exists(os.path.join(out, "evaluation.json")):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tf_ama.cli.app", *argv, "--out", out], check=True)
        with open(os.path.join(out, "seconds.json"), "w") as file:
            json.dump(time.perf_counter() - start, file)
    return read(out, "seconds.json")


def read(path, name="evaluation.json"):
    with open(os.path.join(path, name)) as file:
        return json.load(file)


def cell(values):
    """`mean (v1, v2, ...)`, or the value alone."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ({', '.join(f'{v:.4f}' for v in values)})"


def write_table(path, rows):
    """Writes the markdown table `rows` to `path` (nothing if None)."""
    if path:
        with open(path, "w") as file:
            file.write("\n".join(rows) + "\n")


def main(argv=None):
    """Runs (or reads) the rows asked for; prints and returns the table's lines."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=list(range(len(ROWS))),
                        help="indices into ROWS")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="default: each row's own")
    parser.add_argument("--table", help="also write the markdown table to this file")
    parser.add_argument("train_flags", nargs="*",
                        help="after `--`: flags for every tf-ama train run (default: none)")
    args = parser.parse_args(argv)

    rows = ["| setting | command beyond `tf-ama train SETTING --seed S` | revenue: mean (min / max) "
            "| each seed | mean at least (goal) | minutes per seed (allowed) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for index in args.rows:
        setting, flags, seeds, floor, goal, allowed = ROWS[index]
        name = setting + "".join(f"-{flag.strip('-')}" for flag in flags)
        revenues, minutes = [], []
        for seed in args.seeds or seeds:
            out = os.path.join(args.out, name, f"seed-{seed}")
            minutes.append(run(["train", setting, *flags, "--seed", str(seed),
                                *args.train_flags], out) / 60)
            revenues.append(read(out)["revenue"])
        mean = statistics.mean(revenues)
        rows.append(
            f"| `{setting}` | {' '.join(flags) or '(none)'} | **{mean:.4f}** "
            f"({min(revenues):.4f} / {max(revenues):.4f}) | "
            f"{', '.join(f'{v:.4f}' for v in revenues)} | {floor} ({goal}): "
            f"{'met' if mean >= floor else 'MISSED'}, goal {'met' if mean >= goal else 'missed'}"
            f" | {statistics.mean(minutes):.1f} ({allowed}) |")
        print("\n".join(rows), flush=True)
    write_table(args.table, rows)
    return rows


if __name__ == "__main__":
    main()
