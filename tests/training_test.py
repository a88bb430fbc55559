"""train_run's run directory: a run killed at any moment resumes into the same model.

The kills are real (SIGKILL, in a subprocess) and land at chosen points: the subprocess wraps
one library function (an HDF5 dataset write, a rename into the checkpoint folder, the rename
that publishes model.keras) and kills itself on its n-th call, so no kill depends on timing.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import tf_ama
from tf_ama.training import checkpoints, runs

SETTING = "additive_1x2_uniform"
MODEL_KWARGS = {"menu_size": 8, "seed": 3, "jit_objective": False}  # no XLA compile: faster
# Annealed in the last of 3 epochs: the learning rate and the temperature change, so a resume
# must restore both (the optimizer's state and the model's temperature).
TRAINING = dict(steps=3, steps_per_epoch=1, batch_size=32, validation_samples=64,
                evaluation_samples=64, final_temperature=300.0, anneal_fraction=0.3)

KILLING_RUN = r"""
import json, os, signal, sys

import h5py

out, event, count, setting, model_kwargs, training = sys.argv[1:]
backup = os.path.join(out, "backup")
calls = 0


def kill_on(owner, name, matches):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        global calls
        if matches(*args):
            calls += 1
            if calls == int(count):
                os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def into_backup(source, target, *rest):  # publishing a checkpoint folder
    return (os.path.dirname(os.path.abspath(target)) == os.path.abspath(backup)
            and not os.path.basename(target).startswith("."))


kill_on(*{
    "h5-write": (h5py.Group, "__setitem__", lambda *args: True),
    "publish": (os, "rename", into_backup),
    "model-publish": (os, "replace",
                      lambda source, target, *rest: os.path.basename(target) == "model.keras"),
}[event])

import tf_ama

tf_ama.train_run(setting, out, json.loads(model_kwargs),
                 tf_ama.TrainingConfig(**json.loads(training)), verbose=0)
print("finished without being killed")
"""


def _train(out):
    return tf_ama.train_run(SETTING, out, MODEL_KWARGS, tf_ama.TrainingConfig(**TRAINING),
                            verbose=0)


def _killed_run(out, event, count):
    """Runs the training command in a subprocess that SIGKILLs itself at the `count`-th
    `event`; fails unless the kill happened."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", KILLING_RUN, out, event, str(count), SETTING,
         json.dumps(MODEL_KWARGS), json.dumps(TRAINING)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == -signal.SIGKILL, (
        f"not killed at {event} #{count} (status {result.returncode}):\n{result.stderr[-3000:]}")


def _published(out):
    backup = os.path.join(out, runs.BACKUP)
    return sorted(name for name in os.listdir(backup) if not name.startswith("."))


def _hidden(out):
    return [name for name in os.listdir(os.path.join(out, runs.BACKUP)) if name.startswith(".")]


def _assert_same_model(model, reference, optimizer=True):
    """Every weight array equal (and the optimizer's variables: step, learning rate, moments),
    and the same config."""
    pairs = [(model.weights, reference.weights)]
    if optimizer:
        pairs.append((model.optimizer.variables, reference.optimizer.variables))
    for mine, theirs in pairs:
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert np.array_equal(a.numpy(), b.numpy()), a.path
    name = {"name": None}  # Keras numbers the names of models built in one process
    assert {**model.get_config(), **name} == {**reference.get_config(), **name}  # temperature


@pytest.mark.slow
def test_a_run_killed_at_any_moment_resumes_into_the_bit_identical_model(tmp_path):
    reference = _train(str(tmp_path / "uninterrupted"))
    out = str(tmp_path / "killed")

    # 1. Killed while the first checkpoint's weights are half-written (2nd HDF5 dataset):
    #    nothing is published, so the re-run starts from the beginning.
    _killed_run(out, "h5-write", 2)
    assert _published(out) == [] and len(_hidden(out)) == 1
    # 2. Restarted, it publishes epochs 1 and 2, then is killed with the checkpoint of epoch 3
    #    (the last) written in full but not yet published, just before its rename; epoch 3's
    #    history row is written, and must not be written twice.
    _killed_run(out, "publish", 3)
    assert _published(out) == [checkpoints.folder_name(e) for e in (1, 2)]
    assert len(_hidden(out)) == 1
    # 3. Resumed at epoch 2, it trains epoch 3 again, publishes it, retires epoch 1 and is
    #    killed while publishing model.keras (written in full, not yet renamed).
    _killed_run(out, "model-publish", 1)
    assert _published(out) == [checkpoints.folder_name(e) for e in (2, 3)]
    assert _hidden(out) == [] and not os.path.exists(os.path.join(out, runs.MODEL))

    # The same command, uninterrupted: resumes at epoch 3 (the annealed temperature with it),
    # with nothing left to train, and writes the model.
    model = _train(out)
    _assert_same_model(model, reference)
    _assert_same_model(runs.load_run(out)[0], reference, optimizer=False)
    assert not os.path.exists(os.path.join(out, runs.BACKUP))  # removed once model.keras is
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no leftovers
    # One history row per epoch, the same as uninterrupted: none lost, none written twice.
    with open(os.path.join(out, runs.HISTORY)) as mine, \
            open(os.path.join(str(tmp_path / "uninterrupted"), runs.HISTORY)) as theirs:
        assert mine.read() == theirs.read()


@pytest.mark.slow
def test_a_run_whose_parameters_overflow_stops_with_one_line_and_the_fix(tmp_path):
    """Was the exact outcome's refusal of a NaN `allocations`, deep in a graph's traceback."""
    with pytest.raises(ValueError, match=r"^\S*run: training diverged: the menu's parameters "
                                         r"overflowed float32 .* at temperature 1e\+30\. .*"
                                         r"scale the values down .* or lower --temperature\.$"):
        tf_ama.train_run(SETTING, tmp_path / "run", {**MODEL_KWARGS, "temperature": 1e30},
                         tf_ama.TrainingConfig(**{**TRAINING, "final_temperature": None}),
                         verbose=0)
