"""Where a contextual evaluation should trace its block: `tf_ama.evaluate_contextual` in
blocks of `BLOCK` auctions, eager block by block or traced once (`TRACED_FROM_BLOCKS`), on
the untrained default menu of each size, in one process.

    python benchmarks/contextual_evaluation.py     # the table of benchmarks/README.md (issue 32)
    python benchmarks/contextual_evaluation.py --sizes contextual_a:2x3 --samples 4096 50000

Each cell is the wall-clock seconds of one `evaluate_contextual` call (the trace included
where it traces, as in a run's choice and evaluation, which trace once per size), and the
ratio eager / traced: above 1, tracing pays. Both give the same report (checked: revenues
within 1e-6 of each other, relative; the network's float32 menus may round apart in their
last bits between eager execution and a graph).
"""

from __future__ import annotations

import argparse
import time

SIZES = ("contextual_a:2x3", "contextual_a:3x10")
SAMPLES = (4096, 10_240, 20_480, 50_000)


def measure(setting, size, samples, seed=1):
    """`({"eager": seconds, "traced": seconds}, relative difference of the two revenues)` of
    `evaluate_contextual` on `samples` auctions of `size`."""
    import tf_ama
    from tf_ama.evaluation import contextual

    model = tf_ama.ContextualAuction(setting, sizes=[size], seed=0,
                                     menu_size=128 if "x10" in size else 64)
    contextual.evaluate_contextual(model, num_samples=16, seed=seed)  # the network built
    seconds, reports = {}, {}
    for mode, blocks in (("eager", float("inf")), ("traced", 0)):
        default, contextual.TRACED_FROM_BLOCKS = contextual.TRACED_FROM_BLOCKS, blocks
        try:
            start = time.perf_counter()
            reports[mode] = contextual.evaluate_contextual(model, num_samples=samples,
                                                           seed=seed)[size]
            seconds[mode] = time.perf_counter() - start
        finally:
            contextual.TRACED_FROM_BLOCKS = default
    difference = abs(reports["eager"].revenue - reports["traced"].revenue)
    return seconds, difference / abs(reports["eager"].revenue)


def main(argv=None):
    """Prints and returns the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES),
                        help="SETTING:SIZE, e.g. contextual_a:3x10")
    parser.add_argument("--samples", type=int, nargs="+", default=list(SAMPLES))
    args = parser.parse_args(argv)
    lines = ["| setting | size | auctions (blocks) | eager s | traced s | eager / traced |",
             "| --- | --- | --- | --- | --- | --- |"]
    from tf_ama.evaluation.contextual import BLOCK

    for spec in args.sizes:
        setting, size = spec.split(":")
        for samples in args.samples:
            seconds, difference = measure(setting, size, samples)
            if not difference <= 1e-6:
                raise AssertionError(f"{spec}, {samples}: eager and traced revenues differ by "
                                     f"{difference:.3g} of the revenue")
            lines.append(f"| {setting} | {size} | {samples} ({-(-samples // BLOCK)}) | "
                         f"{seconds['eager']:.2f} | {seconds['traced']:.2f} | "
                         f"{seconds['eager'] / seconds['traced']:.2f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
