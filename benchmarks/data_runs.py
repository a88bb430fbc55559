"""Your own data, end to end: a CSV of valuation profiles trained on, evaluated on held-out
rows and exported with the README's two commands.

    python benchmarks/data_runs.py --out runs/data [--rows 200000] [--seed 0]
        [-- extra tf-ama train flags, e.g. --steps 100]

The CSV (`OUT/bids.csv`) is a market the built-in settings do not have: 2 bidders x 5 items,
bidder i's value for item j is `s_i * u_ij` with a bidder scale `s_i ~ U[0.5, 1.5]` (one per
profile: a bidder who values one item highly tends to value all of them highly) and
`u_ij ~ U[0, 1]`, drawn with NumPy from `--seed`. Then, timed, as a user would type them:

    tf-ama train additive_2x5_uniform --valuations OUT/bids.csv --out OUT/run
    tf-ama export OUT/run --to OUT/models

The report is the run's `evaluation.json`: exact revenue on the held-out test rows beside
VCG, separate Myerson and the grand bundle on the same rows; with the commands' wall time
and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def write_market(path, rows, seed):
    """The CSV of the module docstring, written in pieces (header `b0_i0,...,b1_i4`)."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as file:
        file.write(",".join(f"b{i}_i{j}" for i in range(2) for j in range(5)) + "\n")
        for start in range(0, rows, 50_000):
            size = min(50_000, rows - start)
            values = rng.uniform(0.5, 1.5, (size, 2, 1)) * rng.uniform(0, 1, (size, 2, 5))
            np.savetxt(file, values.reshape(size, 10), delimiter=",", fmt="%.6f")


def timed(argv):
    """Runs `tf-ama ARGV`; returns its wall seconds (raises if it fails)."""
    command = [os.path.join(os.path.dirname(sys.executable), "tf-ama"), *argv]
    print("$", " ".join(["tf-ama", *argv]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("train_flags", nargs="*", help="extra `tf-ama train` flags (after --)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    csv, run, models = (os.path.join(args.out, name) for name in ("bids.csv", "run", "models"))
    if not os.path.exists(csv):
        write_market(csv, args.rows, args.seed)
    seconds = {"train": timed(["train", "additive_2x5_uniform", "--valuations", csv, "--out", run,
                               *args.train_flags]),
               "export": timed(["export", run, "--to", models])}
    report = json.load(open(os.path.join(run, "evaluation.json")))
    rows = json.load(open(os.path.join(run, "config.json")))["setting"]["distribution_params"]["rows"]
    summary = {
        "rows": rows, "test_revenue": report["revenue"], "stderr": report["revenue_stderr"],
        "baselines": {name: result["revenue"] for name, result in report["baselines"].items()},
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        # ru_maxrss of the largest child (kB on Linux): the train command's.
        "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(summary, indent=2))
    with open(os.path.join(args.out, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    return summary


if __name__ == "__main__":
    main()
