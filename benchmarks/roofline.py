"""Roofline of the training step and of exact evaluation: what the machine can do, what a
step must do, and how far a measured time is from the floor.

    python benchmarks/roofline.py [--json] [--bandwidth-mb 256] [--matmul-size 2048]

Machine: memory bandwidth (NumPy `a = 3 * c; a += b` over 256 MB arrays) and matmul peak
(TensorFlow float32 / float64 2048 x 2048 matmul). Work per step (`m` bidders, `n` items,
`K` entries, batch `B`):

* contractions: the forward `u = v a` and the backward `dR/da = g^T v`, each `2 B m n K`
  FLOPs (float32 in training; exact evaluation has only the forward, in float64). Their time
  at the matmul peak is the compute floor of the contractions;
* elementwise: `[B, m + 1, K]` elements per step (`B (m + 1) K`), each touched by ~40 float
  operations and two exponentials in the fused kernel. One pass over that tensor moves
  `4 B (m + 1) K` bytes; the plain autodiff step makes ~50 such passes through DRAM, which
  gives its bandwidth floor. The fused step keeps each micro-batch in cache, so DRAM is not
  its limit: its time is the elementwise work itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PLAIN_PASSES = 50  # docs/design.md §3: passes over [B, m + 1, K] of the autodiff step


def measure_bandwidth(megabytes=256, repeats=5):
    """GB/s of the triad a = b + s * c (3 arrays moved per element)."""
    count = megabytes * 2**20 // 8
    b, c = np.random.rand(count), np.random.rand(count)
    a = np.empty_like(b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - start)
    return 4 * count * 8 / best / 1e9  # multiply reads c, writes a; add reads a, b, writes a


def measure_matmul(dtype, size=2048, repeats=5):
    """GFLOP/s of a size x size matmul in TensorFlow."""
    x = tf.random.uniform([size, size], dtype=dtype)
    run = tf.function(lambda: tf.matmul(x, x))
    run().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def step_floors(machine, m, n, k, batch):
    """`(contraction floor in s, DRAM floor of the plain step in s, elements per step)`."""
    elements = batch * (m + 1) * k
    contraction = 2 * (2 * batch * m * n * k) / (machine["matmul_f32_gflops"] * 1e9)
    plain = PLAIN_PASSES * 4 * elements / (machine["bandwidth_gbs"] * 1e9)
    return contraction, plain, elements


def evaluation_floor(machine, m, n, k, profiles):
    """Seconds: the float64 forward contraction of exact evaluation at the float64 peak."""
    return 2 * profiles * m * n * k / (machine["matmul_f64_gflops"] * 1e9)


def main(argv=None):
    """Prints and returns `{"machine": ..., "rows": [...]}`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bandwidth-mb", type=int, default=256,
                        help="size of each array of the bandwidth triad")
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="n of the n x n matmul of the peak")
    args = parser.parse_args(argv)
    machine = {
        "bandwidth_gbs": round(measure_bandwidth(args.bandwidth_mb), 1),
        "matmul_f32_gflops": round(measure_matmul(tf.float32, args.matmul_size), 1),
        "matmul_f64_gflops": round(measure_matmul(tf.float64, args.matmul_size), 1),
    }
    rows = []
    for name, m, n in (("additive 2x2", 2, 2), ("additive 3x10", 3, 10)):
        contraction, plain, elements = step_floors(machine, m, n, 4096, 2**15)
        rows.append({"step": f"{name}, K=4096, B=2^15",
                     "contraction_floor_s": round(contraction, 3),
                     "plain_dram_floor_s": round(plain, 2),
                     "elements_per_step_millions": round(elements / 1e6),
                     "bytes_per_pass_gb": round(4 * elements / 1e9, 2)})
    rows.append({"step": "exact evaluation 3x10, K=4096, 100 000 profiles (float64)",
                 "contraction_floor_s": round(evaluation_floor(machine, 3, 10, 4096, 100_000), 3)})
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
    else:
        print("machine:", ", ".join(f"{k} {v}" for k, v in machine.items()))
        for row in rows:
            print(" ", ", ".join(f"{k}: {v}" for k, v in row.items()))
    return {"machine": machine, "rows": rows}


if __name__ == "__main__":
    main()
