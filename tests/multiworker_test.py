"""Several machines, tested for real: two worker processes on localhost, each with its own
`TF_CONFIG`, train under `tf.distribute.MultiWorkerMirroredStrategy` (tf_ama/utils/distributed.py).

They run a plain `fit`, then the README's `tf-ama train` commands (README.md, "Several
devices: `tf.distribute`"), interrupted after an epoch and run again. Each result is compared
with the same run on two logical CPU devices of this process (tests/conftest.py): the
training stream folds the replica id into the seed (`tf_ama.data.datasets.step_valuations`), so the
single-process run must have two replicas too.

Tolerance: none, the weights must be EQUAL. With two replicas every all-reduce (gradients,
metrics, batch shares) adds two numbers, and a + b == b + a exactly in floating point, so
the order of the summation, the one thing that differs between the ring all-reduce of two
workers and the reduction of one process, cannot change a bit; each replica runs the same
ops on the same half of the global batch.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.cli import app as cli, commands as cli_commands
from tf_ama.training import runs
from tf_ama.utils import distributed

TESTS = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(TESTS), "docs", "user_guide.md")  # the multi-machine block
TIMEOUT = 240  # seconds for each pair of workers; both are killed when it runs out
SETTING, MENU_SIZE, SEED = "additive_2x2_uniform", 16, 0
GLOBAL_BATCH = 64  # of the plain fit: 32 profiles per replica

# One worker: a plain fit, then the README's command interrupted at the start of epoch 2.
WORKER = f"""
import json, os, sys
from tf_ama.utils import distributed

strategy = distributed.strategy_from_environment()  # first: before TensorFlow runs anything

import keras
import numpy as np
import tf_ama
from tf_ama.cli import app as cli, commands
from tf_ama.training import run as training
from interrupt import Stop, StopAt

output, argv = sys.argv[1], sys.argv[2:]
index = strategy.cluster_resolver.task_id
os.makedirs(f"{{output}}-own-{{index}}")  # each worker a different folder: refused on both
open(f"{{output}}-own-{{index}}/file", "w").write("x" * index)
try:
    with strategy.scope(), distributed.run_directory(f"{{output}}-own-{{index}}"):
        raise AssertionError("two workers seeing different run directories trained")
except ValueError as error:
    open(output + ".refusal", "w").write(str(error))

with strategy.scope():
    model = tf_ama.AffineMaximizerAuction({SETTING!r}, menu_size={MENU_SIZE}, seed={SEED})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
history = model.fit(tf_ama.fresh_valuations({GLOBAL_BATCH}), epochs=2, steps_per_epoch=3, verbose=0)
np.savez(output + ".npz", *[v.numpy() for v in model.trainable_variables])
json.dump(history.history, open(output + ".json", "w"))

train_run = training.train_run  # tf-ama train imports it when it runs: stopped at epoch 2
training.train_run = lambda *args, **kwargs: train_run(*args, callbacks=[StopAt(1)], **kwargs)
try:
    commands.train_setting(cli.build_parser().parse_args(argv), strategy)
except Stop:
    sys.exit(3)
"""


def _readme_commands():
    """The two commands of the README's multi-machine block: `(TF_CONFIG, tf-ama args)`."""
    text = open(README).read()
    section = text[text.index("### Several devices: `tf.distribute`"):]
    section = section[:section.index("\n### ")]
    commands = []
    for line in section.splitlines():
        if line.startswith("TF_CONFIG="):
            assignment, program, *args = shlex.split(line)
            assert program == "tf-ama", line
            commands.append((json.loads(assignment[len("TF_CONFIG="):]), args))
    assert [c[0]["task"]["index"] for c in commands] == [0, 1], "one command per worker"
    return commands


def _localized(commands, ports, out):
    """The README's commands with free localhost ports for host1:12345, host2:12345 and `out`
    for its --out: `(TF_CONFIG text, args)` of each worker."""
    hosts = commands[0][0]["cluster"]["worker"]
    assert hosts == ["host1:12345", "host2:12345"]
    localized = []
    for config, args in commands:
        config = json.dumps({**config, "cluster": {"worker": [f"localhost:{p}" for p in ports]}})
        args = list(args)
        args[args.index("--out") + 1] = out
        localized.append((config, args))
    return localized


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(tmp_path, name, commands):
    """Runs one process per `(TF_CONFIG, argv)` in `commands`, each with a TMPDIR of its own;
    returns `[(status, output)]`. Kills them all after TIMEOUT seconds."""
    processes = []
    for index, (config, argv) in enumerate(commands):
        temporary = tmp_path / f"tmp-{index}"
        temporary.mkdir(exist_ok=True)
        env = dict(os.environ, TF_CONFIG=config, TF_CPP_MIN_LOG_LEVEL="2",
                   TMPDIR=str(temporary), PYTHONPATH=TESTS, CUDA_VISIBLE_DEVICES="")
        log = open(tmp_path / f"{name}-{index}.log", "w+")
        processes.append((subprocess.Popen([sys.executable, *argv], env=env, cwd=tmp_path,
                                           stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + TIMEOUT
    results = []
    try:
        for process, log in processes:
            status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            log.seek(0)
            results.append((status, log.read()))
    except subprocess.TimeoutExpired:
        for process, _ in processes:
            process.kill()
        logs = []
        for process, log in processes:
            process.wait()
            log.seek(0)
            logs.append(log.read()[-3000:])
        pytest.fail(f"{name}: the workers did not finish in {TIMEOUT} s; their last output:\n"
                    + "\n-----\n".join(logs))
    return results


def _expect(results, status, name):
    for index, (code, output) in enumerate(results):
        assert code == status, f"{name}: worker {index} exited {code}:\n{output[-4000:]}"


@pytest.fixture(scope="module")
def two_replicas():
    """A MirroredStrategy over this process's two logical CPU devices (reducing on one
    device: see tests/model_test.py `_mirrored`)."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    assert len(devices) == 2, "tests/conftest.py configures two logical CPU devices"
    return tf.distribute.MirroredStrategy(devices,
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The two workers of `WORKER`, the README's commands localized to a fresh run directory:
    `(tmp_path, localized README commands, run directory, results)`."""
    tmp_path = tmp_path_factory.mktemp("workers")
    (tmp_path / "tf_ama_worker.py").write_text(WORKER)
    out = str(tmp_path / "run")
    commands = _localized(_readme_commands(), _free_ports(2), out)
    results = _run_workers(tmp_path, "interrupted", [
        (config, ["tf_ama_worker.py", str(tmp_path / f"worker-{index}"), *args])
        for index, (config, args) in enumerate(commands)])
    _expect(results, 3, "the interrupted run")
    return tmp_path, commands, out


@pytest.mark.slow
def test_two_workers_fit_the_weights_of_two_replicas_in_one_process(interrupted, two_replicas):
    tmp_path = interrupted[0]
    with two_replicas.scope():
        model = tf_ama.AffineMaximizerAuction(SETTING, menu_size=MENU_SIZE, seed=SEED)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(tf_ama.fresh_valuations(GLOBAL_BATCH), epochs=2, steps_per_epoch=3,
                        verbose=0)
    expected = [v.numpy() for v in model.trainable_variables]
    for index in range(2):
        with np.load(tmp_path / f"worker-{index}.npz") as saved:
            weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        assert len(weights) == len(expected)
        for got, want in zip(weights, expected):
            np.testing.assert_array_equal(got, want)  # exact: see the module docstring
        logged = json.loads((tmp_path / f"worker-{index}.json").read_text())
        assert logged == {k: [float(x) for x in v] for k, v in history.history.items()}


@pytest.mark.slow
def test_workers_seeing_different_run_directories_are_refused_on_both(interrupted):
    tmp_path = interrupted[0]
    for index in range(2):
        refusal = (tmp_path / f"worker-{index}.refusal").read_text()
        assert "different contents in the run directory" in refusal
        assert "shared filesystem" in refusal


@pytest.mark.slow
def test_the_readme_command_on_two_workers_resumes_into_the_run_of_one_process(
        interrupted, two_replicas, tmp_path):
    workers_tmp, commands, out = interrupted
    # The interrupted run: the chief published the checkpoint of epoch 1 and nothing more.
    assert os.path.isdir(os.path.join(out, runs.BACKUP, "epoch-000001"))
    assert not os.path.exists(os.path.join(out, runs.MODEL))
    with open(os.path.join(out, runs.HISTORY)) as file:
        assert len(file.read().splitlines()) == 2  # header, epoch 0

    # The README's commands, as they are, run again: they resume and finish.
    results = _run_workers(workers_tmp, "resumed", [
        (config, ["-m", "tf_ama.cli.app", *args]) for config, args in commands])
    _expect(results, 0, "the re-run README commands")
    assert "Epoch 2/2" in results[0][1] and "Epoch 1/2" not in results[0][1], results[0][1]
    assert "trained as worker 1; the chief evaluates" in results[1][1]

    # The same command, uninterrupted, on two replicas in this process.
    reference = str(tmp_path / "one_process")
    argv = list(commands[0][1])
    argv[argv.index("--out") + 1] = reference
    cli_commands.train_setting(cli.build_parser().parse_args(argv), two_replicas)

    trained, expected = runs.load_run(out)[0], runs.load_run(reference)[0]
    for got, want in zip(trained.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)  # exact: see the module docstring
    # Only the chief wrote the run directory: the files of one process, each written once.
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))
    for name in (runs.HISTORY, runs.CONFIG):
        with open(os.path.join(out, name)) as got, open(os.path.join(reference, name)) as want:
            assert got.read() == want.read(), name
    with open(os.path.join(out, runs.EVALUATION)) as got, \
            open(os.path.join(reference, runs.EVALUATION)) as want:
        assert json.load(got) == json.load(want)
    # The other worker's copy of the run directory is gone.
    for index in range(2):
        assert os.listdir(workers_tmp / f"tmp-{index}") == [], index


def test_tf_config_is_checked_and_the_strategy_made_first(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distributed.strategy_from_environment() is tf.distribute.get_strategy()
    assert distributed.is_chief() and not distributed.several_workers()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["host1:12345"]')
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distributed.strategy_from_environment()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["host1:12345"]}}')
    with pytest.raises(ValueError, match=re.escape("TF_CONFIG must give the cluster and this task")):
        distributed.strategy_from_environment()
    # This process has run TensorFlow ops: too late for the strategy, and said so.
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in _free_ports(2)]},
        "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="already run an op in this process"):
        distributed.strategy_from_environment()


def test_contextual_settings_refuse_tf_config(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}, "task": {"type": "worker", "index": 0}}')
    assert cli.main(["train", "contextual_a", "--out", str(tmp_path / "run")]) == 2
    assert "contextual settings train on one machine only: unset TF_CONFIG" in (
        capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "run")
