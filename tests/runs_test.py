"""tf_ama.training.runs: a damaged file of a run directory is an error naming the file and the fix, or
is replaced by an intact copy where one exists."""

import errno
import io
import json
import os
import warnings
import zipfile

import keras
import numpy as np
import pytest
from builders import run_listing
from interrupt import Stop, StopAt

import tf_ama
from tf_ama.training import runs
from tf_ama.utils import files

SETTING = "additive_1x2_uniform"
MODEL_KWARGS = {"menu_size": 8, "seed": 7, "jit_objective": False}
TRAINING = tf_ama.TrainingConfig(steps=2, steps_per_epoch=1, batch_size=32,
                                 validation_samples=64, evaluation_samples=64)


def _train(out, *callbacks):
    return tf_ama.train_run(SETTING, out, MODEL_KWARGS, TRAINING, verbose=0,
                            callbacks=list(callbacks))


def _truncate(path):
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[:len(data) // 2])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run directory and the bytes of its files (copied per test)."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    _train(out)
    return {name: open(os.path.join(out, name), "rb").read()
            for name in (runs.CONFIG, runs.MODEL, runs.HISTORY)}


def _copy(finished, out):
    os.makedirs(out)
    for name, data in finished.items():
        with open(os.path.join(out, name), "wb") as file:
            file.write(data)
    return out


def _assert_finished_model(out, finished, tmp_path):
    """`out` holds the finished run's model, weight for weight, and its config."""
    original = str(tmp_path / "original.keras")
    with open(original, "wb") as file:
        file.write(finished[runs.MODEL])
    model, config = runs.load_run(out)
    for mine, theirs in zip(model.weights, keras.saving.load_model(original).weights,
                            strict=True):
        assert np.array_equal(mine.numpy(), theirs.numpy())
    assert config == json.loads(finished[runs.CONFIG])


@pytest.mark.slow
def test_a_truncated_model_file_names_the_file_and_the_fix_and_retraining_fixes_it(
        tmp_path, finished):
    out = _copy(finished, str(tmp_path / "run"))
    path = os.path.join(out, runs.MODEL)
    _truncate(path)  # Keras says "File not found" for it
    with pytest.raises(ValueError, match="not a readable Keras model file") as error:
        runs.load_run(out)
    message = str(error.value)
    assert path in message and "re-run the same `tf-ama train" in message
    assert "delete the file" in message and "\n" not in message

    # The fix: the same command trains the model again (no checkpoint left: from the start).
    with pytest.warns(UserWarning, match="Training it again"):
        _train(out)
    _assert_finished_model(out, finished, tmp_path)


@pytest.mark.parametrize("config, problem", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply to parse"),  # was a RecursionError
    (b'{"a": 1, "a": 2}', r"the key\(s\) \['a'\] appear twice"),  # Keras took the last
])
def test_a_model_file_whose_config_is_not_strict_json_is_refused(tmp_path, finished, config,
                                                                 problem):
    out = _copy(finished, str(tmp_path / "run"))
    path = os.path.join(out, runs.MODEL)
    with zipfile.ZipFile(io.BytesIO(finished[runs.MODEL])) as original, \
            zipfile.ZipFile(path, "w") as damaged:
        for name in original.namelist():
            damaged.writestr(name, config if name == "config.json" else original.read(name))
    with pytest.raises(ValueError, match=rf"{path} is not a readable Keras model file \(its "
                                         rf"config.json: {problem}"):
        runs.load_run(out)


def test_a_truncated_config_names_the_file_and_the_fix(tmp_path, finished):
    out = _copy(finished, str(tmp_path / "run"))
    path = os.path.join(out, runs.CONFIG)
    _truncate(path)
    for read in (runs.load_run, runs.read_config, lambda out: _train(out)):
        with pytest.raises(ValueError) as error:
            read(out)
        message = str(error.value)
        assert path in message and "truncated or corrupt" in message, message
        assert "delete it and re-run the same `tf-ama train" in message
        assert "\n" not in message


@pytest.mark.slow
def test_a_truncated_config_is_restored_from_the_checkpoint_copy(tmp_path, finished):
    out = str(tmp_path / "run")
    with pytest.raises(Stop):
        _train(out, StopAt(1))  # killed during epoch 1: the checkpoint of epoch 1 is there
    path = os.path.join(out, runs.CONFIG)
    _truncate(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert runs.read_config(out) == json.loads(finished[runs.CONFIG])
        _train(out)  # resumes, and writes config.json back
    assert sum(f"{path} is not valid JSON" in str(w.message) for w in caught) == 2
    with open(path, "rb") as file:
        assert json.loads(file.read()) == json.loads(finished[runs.CONFIG])
    _assert_finished_model(out, finished, tmp_path)


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path, monkeypatch):
    # Python's own ENOSPC message names no file ("[Errno 28] No space left on device").
    path = tmp_path / "evaluation.json"
    files.write_json_atomic(path, {"revenue": 1.0})

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError, match=r"Could not write '.*evaluation\.json': no space left on "
                                      r"its device .* Free space there and re-run") as raised:
        files.write_json_atomic(path, {"revenue": 2.0})
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"revenue": 1.0}
    assert os.listdir(tmp_path) == ["evaluation.json"]  # no temporary left behind


@pytest.mark.slow
def test_the_library_and_the_command_line_leave_the_same_run_directory(tmp_path):
    """`tf_ama.train_run` writes the whole run directory (evaluation.json, the figures);
    `tf-ama train` with the same arguments writes the same files, with the same report.
    (The same for a contextual run: tests/contextual_test.py.)"""
    from tf_ama.cli.app import main
    from tf_ama.training.recipes import resolve

    setting, flags = "additive_1x2_uniform", ["--menu", "separable"]
    sizes = dict(steps=2, steps_per_epoch=1, batch_size=16, validation_samples=32,
                 evaluation_samples=64)
    library, command = tmp_path / "library", tmp_path / "command"
    # the command line's recipe, as it resolves it
    model_kwargs, training, recipe = resolve(setting, "default", {"menu": "separable"}, sizes)
    tf_ama.train_run(setting, library, model_kwargs, training, verbose=0, recipe=recipe)
    assert main(["train", setting, *flags, "--steps", "2", "--steps-per-epoch", "1",
                 "--batch-size", "16", "--validation-samples", "32", "--samples", "64",
                 "--out", str(command)]) == 0

    assert run_listing(library) == run_listing(command)
    assert {runs.CONFIG, runs.MODEL, runs.HISTORY, runs.EVALUATION} <= set(run_listing(library))
    for name in (runs.CONFIG, runs.EVALUATION):  # the same arguments, the same report
        assert (library / name).read_text() == (command / name).read_text(), name
