"""Roofline of the training step and of exact evaluation: what the machine can do, what a
step must do, and how far the measured time is from the floor.

    python benchmarks/roofline.py                       # machine numbers + the paper-size rows

Machine: memory bandwidth (NumPy triad `a = b + s * c` over 256 MB arrays, 2 threads' worth
of cores) and matmul peak (TensorFlow float32 / float64 2048 x 2048 matmul). Work per step
(`m` bidders, `n` items, `K` entries, batch `B`):

* contractions: the forward `u = v a` and the backward `dR/da = g^T v`, each `2 B m n K`
  FLOPs (float32 in training, float64 in exact evaluation, which has only the forward);
* elementwise: the fused kernel touches `[B, m + 1, K]` elements a fixed number of times
  (two exponentials per `[B, m + 1, K]` element, ~30 other float ops); one pass over the
  tensor moves `4 B (m + 1) K` bytes in float32.

A step whose micro-batches stay in cache moves almost nothing to and from DRAM, so its floor
is compute: contractions at the matmul peak plus elementwise work at the vector rate. The
plain (autodiff, whole-batch) step makes ~50 DRAM passes; its floor is bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ELEMENTWISE_FLOPS = 30  # float ops per [B, m + 1, K] element per step, besides the exps
PLAIN_PASSES = 50  # DESIGN §2: passes over [B, m + 1, K] of the autodiff step


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


def measure_exp(repeats=5, count=1 << 24):
    """Elements per second of tf.exp on float32 (the vector rate of a transcendental)."""
    x = tf.random.uniform([count])
    run = tf.function(lambda: tf.exp(x))
    run().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - start)
    return count / best


def step_floor(machine, m, n, k, batch):
    """Seconds: (compute floor of the fused step, bandwidth floor of the plain step)."""
    elements = batch * (m + 1) * k
    contraction = 2 * (2 * batch * m * n * k) / (machine["matmul_f32_gflops"] * 1e9)
    elementwise = (2 * elements / machine["exp_per_s"]
                   + ELEMENTWISE_FLOPS * elements / (machine["matmul_f32_gflops"] * 1e9))
    plain = PLAIN_PASSES * 4 * elements / (machine["bandwidth_gbs"] * 1e9)
    return contraction + elementwise, plain


def evaluation_floor(machine, m, n, k, profiles):
    """Seconds: the float64 forward contraction of exact evaluation at the float64 peak."""
    return 2 * profiles * m * n * k / (machine["matmul_f64_gflops"] * 1e9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    machine = {
        "bandwidth_gbs": round(measure_bandwidth(), 1),
        "matmul_f32_gflops": round(measure_matmul(tf.float32), 1),
        "matmul_f64_gflops": round(measure_matmul(tf.float64), 1),
        "exp_per_s": float(f"{measure_exp():.3g}"),
    }
    rows = []
    for name, m, n in (("additive 2x2", 2, 2), ("additive 3x10", 3, 10)):
        fused, plain = step_floor(machine, m, n, 4096, 2**15)
        rows.append({"step": f"{name}, K=4096, B=2^15", "fused_floor_s": round(fused, 3),
                     "plain_bandwidth_floor_s": round(plain, 2),
                     "bytes_per_pass_gb": round(4 * 2**15 * (m + 1) * 4096 / 1e9, 2)})
    rows.append({"step": "exact evaluation 3x10, K=4096, 100 000 profiles (float64)",
                 "contraction_floor_s": round(evaluation_floor(machine, 3, 10, 4096, 100_000), 3)})
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    print("machine:", ", ".join(f"{k} {v}" for k, v in machine.items()))
    for row in rows:
        print(" ", ", ".join(f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
