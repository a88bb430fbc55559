"""Training on several machines: `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`.

    # on host1; on host2 the same with "index":1 (worker 0 is the chief)
    export TF_CONFIG='{"cluster":{"worker":["host1:12345","host2:12345"]},
                       "task":{"type":"worker","index":0}}'
    tf-ama train additive_2x2_uniform --out runs/a22

Every worker runs the same command: the same steps, the same collective ops (gradients are
summed across the workers' replicas). `tf-ama train` with `TF_CONFIG` set builds the
strategy (`strategy_from_environment`) before TensorFlow runs anything, as the strategy
requires, and `tf_ama.train_run` trains under the strategy in scope. The run directory is
written by the chief alone; each other worker trains in a copy of it in a temporary folder,
removed at the end (`run_directory`), so that every worker resumes from the same checkpoint.
`--out` must therefore be one folder that every worker sees (a shared filesystem); a worker
that sees other contents is refused before training. Each replica draws its own valuations:
the global replica id is folded into the seed (`tf_ama.data.datasets.step_valuations`), so a run
on two machines takes the same steps as a run on two devices of one machine.

The one thing in Keras's own `fit` that fails under several workers is worked around here
(`step_logs`). Tested with two processes on localhost (tests/multiworker_test.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zlib

import tensorflow as tf

_EXAMPLE = ('{"cluster":{"worker":["host1:12345","host2:12345"]},'
            '"task":{"type":"worker","index":0}}')


def strategy_from_environment():
    """A `MultiWorkerMirroredStrategy` if `TF_CONFIG` is set, else the current strategy
    (the default one: no distribution). Call it before TensorFlow runs anything (an op, a
    variable): the strategy configures the runtime's collective ops, which only a fresh
    runtime accepts."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return tf.distribute.get_strategy()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); set it like {_EXAMPLE} "
                         "(this machine's index in the worker list), or unset it to train "
                         "on one machine.") from None
    config = config if isinstance(config, dict) else {}
    task = config.get("task")
    if (not isinstance(config.get("cluster"), dict) or not isinstance(task, dict)
            or not {"type", "index"} <= task.keys()):
        raise ValueError(f"TF_CONFIG must give the cluster and this task, like {_EXAMPLE}; "
                         f"got {text!r}.")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise ValueError(
            "TF_CONFIG is set, but TensorFlow has already run an op in this process, after "
            "which no MultiWorkerMirroredStrategy can be made. Call "
            "tf_ama.utils.distributed.strategy_from_environment() (or make the strategy) first "
            "thing in the program.") from None


def several_workers(strategy=None) -> bool:
    """Whether `strategy` (default: the current one) trains on several workers, the case in
    which Keras reduces a step's outputs across workers (its own test, in
    keras/src/backend/tensorflow/trainer.py)."""
    strategy = strategy or tf.distribute.get_strategy()
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def is_chief(strategy=None) -> bool:
    """Whether this worker writes files: the chief of several workers, and every process
    that trains alone."""
    return bool((strategy or tf.distribute.get_strategy()).extended.should_checkpoint)


def step_logs(strategy, logs):
    """A train or test step's `logs` (scalar metrics, the same on every replica) in the form
    that Keras's `fit` can reduce across the workers of `strategy`.

    Keras 3 reduces a step's outputs across workers with `strategy.reduce("MEAN", value,
    axis=0)`, which refuses a scalar ("Invalid reduction dimension 0 for input with 0
    dimensions", tensorflow/tensorflow#72388); on one worker it stacks the replicas' values
    first, so scalars work there. Under several workers each value gets an axis of length
    one: its mean over the workers is the value itself, exactly ((v + v) / 2 = v), since
    the model's metrics record global means on every replica."""
    if not several_workers(strategy):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


@contextlib.contextmanager
def run_directory(out):
    """Yields the run directory this worker writes: `out` itself on the chief (and when
    training alone); on the other workers, a copy of `out` in a temporary folder, deleted at
    the end, so that they read the same config and checkpoints as the chief and write
    nothing the chief writes (Keras's multi-worker convention).

    Every worker then waits for the others (a collective op) and compares what it saw of
    `out` (file names and sizes): the chief changes nothing in `out` before every worker
    has its copy, and a worker that sees other contents (`out` not on a shared filesystem,
    so that a resumed chief would take steps a fresh worker does not) is refused with the
    fix, on every worker, rather than training apart or waiting forever."""
    strategy = tf.distribute.get_strategy()
    if not several_workers(strategy):
        yield out
        return
    seen = _fingerprint(out)
    if is_chief(strategy):
        _check_same_contents(strategy, seen, out)
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="tf-ama-worker-") as temporary:
        copy = os.path.join(temporary, os.path.basename(os.path.abspath(out)))
        if os.path.isdir(out):
            shutil.copytree(out, copy)
        _check_same_contents(strategy, seen, out)
        yield copy


def wait_for_workers(strategy=None):
    """Returns once every worker has called it (a collective op); at once when training
    alone. `tf-ama train` ends with it: a worker that exits while the chief still evaluates
    and writes the run is reported by the chief's runtime as crashed."""
    strategy = strategy or tf.distribute.get_strategy()
    if several_workers(strategy):
        _gather(strategy, 0)


def _fingerprint(out):
    """A checksum of the names and sizes of the files in `out` (0 if it does not exist)."""
    entries = []
    for folder, _, files in os.walk(out):
        for name in files:
            path = os.path.join(folder, name)
            entries.append(f"{os.path.relpath(path, out)}:{os.path.getsize(path)}")
    return zlib.crc32("\n".join(sorted(entries)).encode()) if entries else 0


def _gather(strategy, value):
    """Every replica's `value` (an integer), gathered from all the workers: a collective op,
    so that no worker goes on before every worker has called it."""
    @tf.function  # eagerly, TensorFlow warns of the overhead of each collective op
    def gather():
        return strategy.gather(strategy.run(lambda: tf.constant([value], tf.int64)), axis=0)

    return gather().numpy().tolist()


def _check_same_contents(strategy, seen, out):
    """Gathers every worker's `_fingerprint` of `out`; raises if they differ."""
    if len(set(_gather(strategy, seen))) > 1:
        raise ValueError(
            f"The workers see different contents in the run directory {out!r}: with "
            "TF_CONFIG, --out must be one folder that every worker sees at the same path "
            "(a shared filesystem); only the chief writes it. Fix: put it on a shared "
            "filesystem, or copy the chief's folder to every worker before re-running.")


def record_revenue(tracker, revenue, weight):
    """Records in `tracker` (a Mean) the global batch's weighted mean of the exact
    `revenue` `[batch]`: its weighted sum and weight, recorded by every replica (Keras
    averages the replicas' metric results), in float32 like the metric (collectives of one
    process must not mix dtypes)."""
    total = sum_over_replicas(tf.cast(tf.reduce_sum(weight), tf.float32))
    weighted = sum_over_replicas(tf.cast(tf.reduce_sum(weight * revenue), tf.float32))
    tracker.update_state(tf.math.divide_no_nan(weighted, total), sample_weight=total)


def sum_over_replicas(value):
    return tf.distribute.get_replica_context().all_reduce("sum", value)


def replica_share(valuations, sample_weight):
    """This replica's share of the global batch (of its total weight).

    Gradients are summed across replicas, so each replica's mean counts with its share: the
    sum is the global batch's (weighted) mean, whatever the split (1 with one replica).
    Keras averages the replicas' metric results, so every replica records the global mean
    as the sum of the replicas' shares of it.
    """
    local = (tf.cast(tf.shape(valuations)[0], valuations.dtype) if sample_weight is None
             else tf.reduce_sum(sample_weight))
    total = sum_over_replicas(local)
    if sample_weight is not None:
        with tf.control_dependencies([tf.debugging.assert_positive(total, message=(
                "`sample_weight` sums to 0 over a step's batch: give some profile a "
                "positive weight."))]):
            total = tf.identity(total)
    # divide_no_nan: under XLA (compile(jit_compile=True)) the asserts are dropped, and a
    # weightless step must then change nothing rather than write NaN.
    return tf.math.divide_no_nan(local, total)
