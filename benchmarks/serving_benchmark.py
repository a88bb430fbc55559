"""Serving latency and throughput of exported SavedModels (tf.saved_model.load, in process).

    python benchmarks/serving_benchmark.py [--calls 2000] [--throughput-calls 20]
        [--micro-batch-sizes 64] [--train-steps 300] [--menu-sizes 1024 4096]
        [--out results.json]

For each menu it exports the model with `tf_ama.export_saved_model`, loads it with
`tf.saved_model.load` and times `signatures["serving_default"]`:

* latency at batch 1: p50 / p99 over `--calls` calls after 50 warm-up calls;
* throughput at batch 1024: profiles per second over `--throughput-calls` calls.

Menus: additive_2x2_uniform lottery K=1024 (briefly trained, `--train-steps`, so that pruning
is realistic) and additive_3x10_uniform lottery K=4096 (untrained: the timing depends on the
menu size, not on the values), each full and pruned (`tf_ama.evaluation.usage.prune`, 20 000
profiles). This measures the graph TF Serving would run, without TF Serving's RPC overhead
(`tensorflow_model_server` is not installable on the development machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_ama  # noqa: E402
from tf_ama.serving.export import export_saved_model  # noqa: E402
from tf_ama.core.blocks import outcome_block_size  # noqa: E402


def _machine():
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in cpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    return {"cpu": model, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "tensorflow": tf.__version__, "gpu": bool(tf.config.list_physical_devices("GPU"))}


def _models(train_steps, small_size=1024, large_size=4096):
    small = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=small_size, seed=0)
    if train_steps:
        small.compile(optimizer=keras.optimizers.Adam(0.01))
        small.fit(tf_ama.fresh_valuations(batch_size=1024), epochs=1,
                  steps_per_epoch=train_steps, verbose=0)
    large = tf_ama.AffineMaximizerAuction("additive_3x10_uniform", menu_size=large_size, seed=0)
    return [(f"additive_2x2_uniform K={small_size} ({train_steps} steps trained)", small),
            (f"additive_3x10_uniform K={large_size} (untrained)", large)]


def _time(serve, setting, calls, throughput_calls, seed=0):
    rng = np.random.default_rng(seed)
    shape = (setting.num_bidders, setting.num_items)
    singles = [tf.constant(rng.uniform(size=(1, *shape))) for _ in range(64)]
    for i in range(50):
        serve(bids=singles[i % 64])["payments"].numpy()
    latencies = []
    for i in range(calls):
        start = time.perf_counter()
        serve(bids=singles[i % 64])["payments"].numpy()
        latencies.append(time.perf_counter() - start)
    batch = tf.constant(rng.uniform(size=(1024, *shape)))
    serve(bids=batch)["payments"].numpy()
    start = time.perf_counter()
    for _ in range(throughput_calls):
        serve(bids=batch)["payments"].numpy()
    elapsed = time.perf_counter() - start
    return {"latency_p50_ms": 1e3 * float(np.percentile(latencies, 50)),
            "latency_p99_ms": 1e3 * float(np.percentile(latencies, 99)),
            "throughput_profiles_per_s": 1024 * throughput_calls / elapsed}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--throughput-calls", type=int, default=20)
    parser.add_argument("--micro-batch-sizes", "--chunk-sizes", type=int, nargs="+",
                        default=[None],
                        help="profiles per block of the exported graph (default: export's)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--prune-samples", type=int, default=20_000)
    parser.add_argument("--menu-sizes", type=int, nargs=2, default=[1024, 4096],
                        metavar=("K_2x2", "K_3x10"), help="menu sizes of the two menus")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    try:
        from tf_ama.evaluation.usage import prune
    except ImportError:
        prune = None
        print("tf_ama.evaluation.usage.prune unavailable: pruned menus skipped")
    results = {"machine": _machine(), "runs": []}
    print(results["machine"])
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in _models(args.train_steps, *args.menu_sizes):
            variants = [("full", model)]
            if prune is not None:
                variants.append(("pruned", prune(model, num_samples=args.prune_samples, seed=1)))
            for variant, auction in variants:
                for block in args.micro_batch_sizes:
                    block = block or outcome_block_size(
                        auction.setting.num_bidders, auction.menu_size)
                    path = export_saved_model(auction, os.path.join(tmp, str(len(results["runs"]))),
                                              micro_batch_size=block)
                    serve = tf.saved_model.load(path).signatures["serving_default"]
                    row = {"menu": label, "variant": variant, "menu_size": auction.menu_size,
                           "micro_batch_size": block,
                           **_time(serve, auction.setting, args.calls, args.throughput_calls)}
                    results["runs"].append(row)
                    print(f"{label:48s} {variant:6s} K={row['menu_size']:5d} "
                          f"block={block:4d}  p50 {row['latency_p50_ms']:7.2f} ms  "
                          f"p99 {row['latency_p99_ms']:7.2f} ms  "
                          f"{row['throughput_profiles_per_s']:10.0f} profiles/s", flush=True)
    if args.out:
        with open(args.out, "w") as file:
            json.dump(results, file, indent=2)
    return results


if __name__ == "__main__":
    main()
