"""Training-step time and peak memory over (setting, menu size, batch, micro-batch, XLA, objective).

Each configuration runs in its own subprocess so that its peak resident memory (ru_maxrss,
`peak_gb`) is its own; `tensor_peak_gb` is the tensors' share of it (TensorFlow's CPU
allocator's peak, what a GPU would hold). Usage (the rows of benchmarks/README.md):

    python benchmarks/train_step_benchmark.py --setting additive_2x2_uniform --menu-size 4096 \
        --batch-size 32768 --micro-batch-size auto --jit-objective on --objective fused --steps 3

    python benchmarks/train_step_benchmark.py --grid paper     # both paper-size settings, several configs

    # today's fused step against the active set (tf_ama.ActiveSet), on a trained menu:
    python benchmarks/train_step_benchmark.py --grid active --menu-from RUN/model.keras

`--menu-from FILE.keras` starts from a trained model's menu (e.g. `tf-ama train ... --steps
2000`); `--active-margin T` trains over the active set; `--jit-compile on` compiles the whole
step with XLA (Keras' `jit_compile=True`, what `"auto"` does on a GPU). `--objective plain` differentiates `relaxation.soft_payments` automatically (the straightforward
step of docs/design.md §3); `fused` is the model's own step
(`relaxation.batched_revenue_and_gradients`).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_one(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_ama
    from tf_ama.data.datasets import step_valuations
    from tf_ama.core.relaxation import soft_payments
    from tf_ama.core.blocks import training_block_size

    micro = {"auto": "auto", "none": None}.get(args.micro_batch_size)
    micro = int(args.micro_batch_size) if micro is None and args.micro_batch_size != "none" else micro
    options = dict(micro_batch_size=micro, jit_objective=args.jit_objective == "on",
                   active_margin=args.active_margin,
                   active_refresh_steps=args.active_refresh_steps)
    if args.menu_from:
        trained = keras.models.load_model(args.menu_from)
        model = tf_ama.AffineMaximizerAuction.from_config(
            {**trained.get_config(), **options, "name": None})
        model.menu_layer.set_weights(trained.menu_layer.get_weights())
        model.bidder_weights_layer.set_weights(trained.bidder_weights_layer.get_weights())
    else:
        model = tf_ama.AffineMaximizerAuction(args.setting, menu_size=args.menu_size, seed=0,
                                              **options)
    if args.objective == "plain":
        def plain_train_step(data):  # the straightforward step: autodiff of the formula
            valuations, _ = step_valuations(data, model.setting, model.valuation_distribution,
                                            model.data_seed, model.optimizer.iterations)
            with tf.GradientTape() as tape:
                allocations, boosts, weights, *_ = model.menu(valuations.dtype)
                payments = soft_payments(valuations, allocations, boosts, weights,
                                         model.temperature)
                loss = -tf.reduce_mean(tf.reduce_sum(payments, axis=1))
            variables = model.trainable_variables
            model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return {"loss": loss}
        model.train_step = plain_train_step
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=args.jit_compile == "on")
    data = tf_ama.fresh_valuations(args.batch_size)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)  # trace and warm up

    class StepTimer(keras.callbacks.Callback):
        """Wall time between consecutive step ends inside one `fit` (what training pays per
        step; a separate `fit` per step would add fit's own set-up, ~0.1-0.3 s, to each)."""

        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step's result
            self.ends.append(time.perf_counter())
            if "active_entries" in logs:
                self.active = float(logs["active_entries"])

    timer = StepTimer()
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
    times = np.diff(timer.ends)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # The tensors' share of it: TensorFlow's CPU allocator's peak (what a GPU would hold),
    # without the runtime, the graphs and the compiled kernels that the resident peak counts.
    tensor_peak_gb = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**30
    active = getattr(timer, "active", None)
    return {"setting": model.setting.name, "menu_size": model.menu_size, "batch_size": args.batch_size,
            "micro_batch_size": ((training_block_size(model.setting.num_bidders,
                                                           model.menu_size)
                                  if model.micro_batch_size == "auto" else model.micro_batch_size)
                                 if args.objective == "fused" and args.active_margin is None
                                 else None if args.objective == "plain" else "auto (the set's)"),
            "jit_objective": args.jit_objective, "jit_compile": args.jit_compile,
            "active_margin": args.active_margin, "active_entries": active,
            "trained_menu": bool(args.menu_from),
            "objective": args.objective,
            # the mean: what a run pays per step, the active set's refreshes included
            "seconds_per_step": float(np.mean(times)), "median_seconds": float(np.median(times)),
            "step_seconds": [round(float(t), 3) for t in times],
            "peak_gb": round(peak_gb, 2), "tensor_peak_gb": round(tensor_peak_gb, 3)}


GRIDS = {
    "paper": [
        dict(setting=s, menu_size=4096, batch_size=32768, micro_batch_size=mb,
             jit_objective=jit, objective=o)
        for s in ("additive_2x2_uniform", "additive_3x10_uniform")
        for o, mb, jit in (("plain", "none", "off"), ("fused", "none", "off"),
                           ("fused", "512", "off"), ("fused", "auto", "off"),
                           ("fused", "512", "on"), ("fused", "64", "on"), ("fused", "auto", "on"))
    ],
    # Needs --menu-from: today's fused step and the active set's, on the same trained menu.
    "active": [dict(micro_batch_size="auto", jit_objective="on", objective="fused",
                    active_margin=margin) for margin in (None, 25.0)],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="additive_2x2_uniform")
    parser.add_argument("--menu-size", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32768)
    parser.add_argument("--micro-batch-size", default="auto", help="auto, none or a number")
    parser.add_argument("--jit-objective", choices=("on", "off"), default="on",
                        help="XLA for the fused per-micro-batch kernel")
    parser.add_argument("--jit-compile", choices=("on", "off"), default="off",
                        help="XLA for the whole step (Keras' compile(jit_compile=...))")
    parser.add_argument("--objective", choices=("plain", "fused"), default="fused")
    parser.add_argument("--active-margin", type=float, default=None,
                        help="train over the active set with this margin (tf_ama.ActiveSet)")
    parser.add_argument("--active-refresh-steps", type=int, default=10,
                        help="with --active-margin: choose the set again every this many steps")
    parser.add_argument("--menu-from", default=None,
                        help="a model.keras whose trained menu the steps start from")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--grid", choices=sorted(GRIDS))
    args = parser.parse_args()
    if args.grid:
        for config in GRIDS[args.grid]:
            argv = [sys.executable, __file__, "--steps", str(args.steps)]
            if args.menu_from:
                argv += ["--menu-from", args.menu_from]
            for key, value in config.items():
                if value is not None:
                    argv += ["--" + key.replace("_", "-"), str(value)]
            result = subprocess.run(argv, capture_output=True, text=True)
            print(result.stdout.strip() or result.stderr.strip().splitlines()[-1], flush=True)
        return
    print(json.dumps(run_one(args)), flush=True)


if __name__ == "__main__":
    main()
