"""Peak memory and time of `tf-ama evaluate --samples N` (issue 17: bounded memory at 10^7).

Builds an UNTRAINED lottery AMA (`tf_ama.AffineMaximizerAuction(SETTING, menu_size=K)`, seed
0) and saves it as a run directory (config.json + model.keras, what `tf-ama evaluate` loads);
then, for each N of `--samples`, runs `tf-ama evaluate RUN --samples N --json` in its own
process (`python -m tf_ama.cli.app`, XLA on, baselines included, as a user runs it) and reports
its peak resident memory (`ru_maxrss` of that child, from `os.wait4`) and wall time (TensorFlow's
import and the XLA compile included). An untrained menu costs what a trained one of the same
size costs: the exact outcome is dense in the K entries, whatever their values (only the
entries-used count differs).

    python benchmarks/evaluation_memory.py --samples 1000000 2000000 10000000   # 3x10, K=4096
    python benchmarks/evaluation_memory.py --samples 100000 --outcomes npz --json

`--outcomes npz|csv` also writes the per-profile outcomes (`--outcomes FILE` into the run
directory, deleted afterwards; it needs ~2x the file's size on disk while written).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from tf_ama.utils import files

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def save_untrained_run(run_dir, setting, menu_size):
    """An untrained lottery AMA saved as a run directory `tf-ama evaluate` loads."""
    import tf_ama
    from tf_ama.training import runs

    model = tf_ama.AffineMaximizerAuction(setting, menu_size=menu_size, seed=0)
    os.makedirs(run_dir, exist_ok=True)
    files.write_json_atomic(os.path.join(run_dir, runs.CONFIG), {
        "setting": model.setting.to_dict(), "model": {"menu": "lottery", "menu_size": menu_size},
        "note": "untrained, for benchmarks/evaluation_memory.py"})
    runs.save_model_atomic(model, os.path.join(run_dir, runs.MODEL))


def measure(run_dir, samples, outcomes=None):
    """`tf-ama evaluate RUN --samples N --json` in a child process: its report, peak RSS
    (bytes) and wall seconds."""
    command = [sys.executable, "-m", "tf_ama.cli.app", "evaluate", run_dir, "--samples",
               str(samples), "--json", "--no-progress"]
    if outcomes:
        command += ["--outcomes", outcomes]
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stdout.close()
        if child.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n"
                               f"{errors.read()[-3000:]}")
    return json.loads(out), usage.ru_maxrss * 1024, seconds  # ru_maxrss is in KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="additive_3x10_uniform")
    parser.add_argument("--menu-size", type=int, default=4096)
    parser.add_argument("--samples", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--outcomes", choices=("npz", "csv"), default=None,
                        help="also write the per-profile outcomes in this format")
    parser.add_argument("--run-dir", default=None,
                        help="where to save the untrained model (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="evaluation-memory-") as scratch:
        run_dir = args.run_dir or os.path.join(scratch, "run")
        save_untrained_run(run_dir, args.setting, args.menu_size)
        rows = []
        for samples in args.samples:
            outcomes = (os.path.join(run_dir, f"outcomes.{args.outcomes}") if args.outcomes
                        else None)
            report, peak, seconds = measure(run_dir, samples, outcomes)
            row = {"setting": args.setting, "menu_size": args.menu_size, "samples": samples,
                   "outcomes": args.outcomes, "peak_rss_gb": round(peak / 1e9, 3),
                   "seconds": round(seconds, 1), "revenue": report["revenue"],
                   "revenue_ci95": report["revenue_ci95"],
                   "baselines": {name: result["revenue"]
                                 for name, result in report["baselines"].items()}}
            if outcomes:
                row["outcomes_bytes"] = os.path.getsize(outcomes)
                os.remove(outcomes)
            rows.append(row)
            if not args.json:
                print(f"{samples:>12,} profiles  peak RSS {row['peak_rss_gb']:.3f} GB  "
                      f"{row['seconds']:.1f} s  revenue {row['revenue']:.5f} "
                      f"95% CI [{row['revenue_ci95'][0]:.5f}, {row['revenue_ci95'][1]:.5f}]",
                      flush=True)
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
