"""What exact payments cost: `exact_outcome` against the code before them, in one process.

Since issue #12 the others' welfare `W_-i` is summed from the other bidders' terms
(`tf_ama.core.mechanism.others_welfare`) instead of `W - w_i u_i` (one subtraction, which made an
item free for a bid of 1e16). This benchmark loads the reference mechanism (`tf_ama/mechanism.py`, now
`tf_ama/core/mechanism.py`) as it was at git
revision `--reference` (default: main before the change) as a second module and times both
`exact_outcome`s in the same process, interleaved, on the same random lottery menu and bids
(both choose the same entries; the reference's payments are wrong only beside huge bids). It
reports, for the served computation (plain, as the exported SavedModel runs it) and for
evaluation (XLA):

* batch 1 latency, p50 over `--calls` calls of a `tf.function` (what one request pays);
* 100 000 profiles with the regret certificate (what `tf_ama.evaluate` pays);

and the ratio exact / reference (1.00 = no cost). The ratios are what to read: both variants
see the same machine load. Needs the git history (run it in a clone of the repository).

    python benchmarks/exactness_benchmark.py        # 2x2 K=1024, 3x10 K=4096, 5x10 K=2048
    python benchmarks/exactness_benchmark.py --json
    python benchmarks/exactness_benchmark.py --cases 2x2:64 --samples 300 --calls 3 --rounds 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_ama.core import allocations as menus, mechanism  # noqa: E402

CASES = [("2x2", 2, 2, 1024), ("3x10", 3, 10, 4096), ("5x10", 5, 10, 2048)]
REFERENCE = "5855271"  # main before issue #12 (W_-i = W - w_i u_i)


def load_reference(revision):
    """`tf_ama/mechanism.py` (its path before the layered package) at git `revision`,
    imported as a separate module."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        source = subprocess.run(["git", "show", f"{revision}:tf_ama/mechanism.py"], cwd=root,
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"--reference {revision}: cannot read tf_ama/mechanism.py at that "
                         f"revision with git ({error}); run this in a git clone of tf_ama.")
    path = os.path.join(tempfile.mkdtemp(), "reference_mechanism.py")
    with open(path, "w") as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location("reference_mechanism", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_menu(num_bidders, num_items, menu_size, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(menu_size - 1, num_bidders + 1, num_items))
    allocations = menus.additive_lottery(tf.constant(logits, tf.float64))
    boosts = np.concatenate([[0.0], 0.3 * rng.normal(size=menu_size - 1)])
    return allocations, tf.constant(boosts), tf.constant(rng.uniform(0.5, 2.0, num_bidders))


def measure(module, menu, bids_one, bids_many, calls):
    """`{latency_ms, evaluate_plain_s, evaluate_xla_s}` of `module.exact_outcome`."""
    serve = tf.function(lambda bids: module.exact_outcome(bids, *menu)["payments"])
    evaluate = {jit: tf.function(lambda bids, jit=jit: module.exact_outcome(
        bids, *menu, with_certificate=True, jit_compile=jit)["regret"]) for jit in (False, True)}
    for _ in range(20):
        serve(bids_one)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        serve(bids_one).numpy()
        latencies.append(time.perf_counter() - start)
    result = {"latency_ms": 1e3 * float(np.median(latencies))}
    for jit, name in ((False, "evaluate_plain_s"), (True, "evaluate_xla_s")):
        evaluate[jit](bids_many).numpy()  # trace / compile
        start = time.perf_counter()
        evaluate[jit](bids_many).numpy()
        result[name] = time.perf_counter() - start
    return result


def _case(text):
    """`MxN:K` -> `("MxN", M, N, K)`, a row of CASES."""
    try:
        size, menu_size = text.split(":")
        num_bidders, num_items = size.split("x")
        return size, int(num_bidders), int(num_items), int(menu_size)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected BIDDERSxITEMS:K, e.g. 2x2:1024; got {text!r}") from None


def main(argv=None):
    """Prints the comparison; returns its rows (one per case)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=_case, nargs="+", default=CASES,
                        help="BIDDERSxITEMS:K of each case (default: "
                             f"{' '.join(f'{name}:{k}' for name, _, _, k in CASES)})")
    parser.add_argument("--calls", type=int, default=500, help="batch-1 calls per round")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--reference", default=REFERENCE,
                        help=f"git revision of the reference mechanism (default {REFERENCE})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference)
    rows = []
    for name, num_bidders, num_items, menu_size in args.cases:
        menu = random_menu(num_bidders, num_items, menu_size)
        rng = np.random.default_rng(1)
        bids_many = tf.constant(rng.uniform(size=(args.samples, num_bidders, num_items)))
        bids_one = bids_many[:1]
        best = {"exact": {}, "reference": {}}
        for _ in range(args.rounds):
            for variant, module in (("exact", mechanism), ("reference", reference)):
                for key, value in measure(module, menu, bids_one, bids_many, args.calls).items():
                    best[variant][key] = min(value, best[variant].get(key, np.inf))
        ratios = {key: best["exact"][key] / best["reference"][key] for key in best["exact"]}
        rows.append({"case": f"{name} K={menu_size}", **best, "ratio": ratios})
    if args.json:
        print(json.dumps(rows, indent=2))
        return rows
    print(f"{'case':<14}{'measure':<20}{'exact':>10}{'reference':>11}{'ratio':>8}")
    for row in rows:
        for key, unit in (("latency_ms", "ms"), ("evaluate_plain_s", "s"), ("evaluate_xla_s", "s")):
            print(f"{row['case']:<14}{key:<20}{row['exact'][key]:>9.3f}{unit[0]}"
                  f"{row['reference'][key]:>10.3f}{unit[0]}{row['ratio'][key]:>8.2f}")
    return rows


if __name__ == "__main__":
    main()
