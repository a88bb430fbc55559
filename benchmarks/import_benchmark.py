"""Start-up time of the `tf-ama` command and of `import tf_ama`, and what each loads.

    python benchmarks/import_benchmark.py [--runs 7] [--json results.json]

Each case runs in a fresh subprocess of this interpreter, `--runs` times (after one
untimed run that warms the file cache); the table gives the median and the range of the
wall times, and the heavy top-level packages the process had loaded when it exited
(tensorflow, keras, tensorflow_probability, matplotlib, ...). On a shared machine other
jobs inflate single runs: compare medians, measured in the same minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("tensorflow", "keras", "tensorflow_probability", "tf_keras", "matplotlib",
         "tensorflow_serving", "grpc", "requests", "numpy")

# Runs `code` in the child and appends the loaded heavy packages, as JSON, to the last
# stdout line, whatever `code` does (argparse's --help exits through SystemExit).
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print("\\nLOADED " + json.dumps(sorted(
    name for name in {heavy!r} if name in sys.modules))))
{code}
"""

CASES = {
    "tf-ama --help": "import sys; sys.argv = ['tf-ama', '--help']; "
                     "from tf_ama.cli.app import main; sys.exit(main())",
    "tf-ama settings": "import sys; sys.argv = ['tf-ama', 'settings']; "
                       "from tf_ama.cli.app import main; sys.exit(main())",
    "import tf_ama": "import tf_ama",
    "import tf_ama; tf_ama.AffineMaximizerAuction":
        "import tf_ama; tf_ama.AffineMaximizerAuction",
    "import tf_ama.serving.client": "import tf_ama.serving.client",
}


def _run(code):
    """(wall seconds, loaded heavy packages) of one subprocess running `code`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY, code=code)],
                            capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - start
    lines = [line for line in result.stdout.splitlines() if line.startswith("LOADED ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{code!r} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds, json.loads(lines[-1][len("LOADED "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    results = {}
    for name in args.cases:
        _run(CASES[name])  # warm the file cache
        times, loaded = [], None
        for _ in range(args.runs):
            seconds, loaded = _run(CASES[name])
            times.append(seconds)
        results[name] = {"median_s": statistics.median(times), "min_s": min(times),
                         "max_s": max(times), "runs": args.runs, "loaded": loaded}

    width = max(len(name) for name in results)
    print(f"{'case':<{width}}  median s  (min - max)     heavy packages loaded")
    for name, row in results.items():
        print(f"{name:<{width}}  {row['median_s']:8.2f}  ({row['min_s']:.2f} - {row['max_s']:.2f})"
              f"  {', '.join(row['loaded']) or '-'}")
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"Python {sys.version.split()[0]}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
    return results


if __name__ == "__main__":
    main()
