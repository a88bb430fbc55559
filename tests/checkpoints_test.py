"""tf_ama.training.checkpoints: damaged checkpoints fall back to intact ones, and run directories in
keras.callbacks.BackupAndRestore's layout (written before the module) still resume.

Every resumed run must end bit-identical to an uninterrupted one; the epochs it trains show
which checkpoint it resumed from. (Kills themselves: tests/training_test.py.)
"""

import json
import os
import warnings

import keras
import numpy as np
import pytest
from interrupt import Stop, StopAt

import tf_ama
from tf_ama.training import checkpoints, runs

SETTING = "additive_1x2_uniform"
MODEL_KWARGS = {"menu_size": 8, "seed": 5, "jit_objective": False}
TRAINING = tf_ama.TrainingConfig(steps=3, steps_per_epoch=1, batch_size=32,
                                 validation_samples=64, evaluation_samples=64)


class _StopAtTrainEnd(keras.callbacks.Callback):
    """Stops the run after its last epoch, before train_run writes model.keras."""

    def on_train_end(self, logs=None):
        raise Stop()


class _Epochs(keras.callbacks.Callback):
    """Records the epochs trained."""

    def __init__(self):
        super().__init__()
        self.trained = []

    def on_epoch_begin(self, epoch, logs=None):
        self.trained.append(epoch)


def _train(out, *callbacks):
    return tf_ama.train_run(SETTING, out, MODEL_KWARGS, TRAINING, verbose=0,
                            callbacks=list(callbacks))


def _interrupted(out, epoch):
    with pytest.raises(Stop):
        _train(out, StopAt(epoch))


def _resumed(out):
    """`(model, epochs trained)` of re-running the command on `out`."""
    epochs = _Epochs()
    return _train(out, epochs), epochs.trained


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _train(str(tmp_path_factory.mktemp("uninterrupted") / "run"))


def _assert_same_weights(model, reference):
    for mine, theirs in zip(model.weights + model.optimizer.variables,
                            reference.weights + reference.optimizer.variables, strict=True):
        assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path


def _truncate(path):
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[:len(data) // 2])


def _legacy_run(out, epochs_done):
    """A run directory as train_run wrote it before tf_ama.training.checkpoints: BackupAndRestore
    (double_checkpoint=True) in backup/, interrupted after `epochs_done` epochs."""
    _interrupted(out, 0)  # config.json, as train_run writes it; no checkpoint yet
    model = tf_ama.AffineMaximizerAuction(SETTING, **MODEL_KWARGS)
    model.compile(optimizer=keras.optimizers.Adam(TRAINING.learning_rate),
                  jit_compile=TRAINING.jit_compile)
    with pytest.raises(Stop):
        model.fit(tf_ama.fresh_valuations(TRAINING.batch_size), epochs=TRAINING.epochs,
                  steps_per_epoch=TRAINING.steps_per_epoch, verbose=0, callbacks=[
                      keras.callbacks.BackupAndRestore(os.path.join(out, runs.BACKUP),
                                                       double_checkpoint=True),
                      StopAt(epochs_done)])
    return os.path.join(out, runs.BACKUP)


def _legacy_killed_between_weights_and_metadata(backup):
    # The weights of epoch 2 were written; the metadata still says epoch 1, like its copy.
    with open(os.path.join(backup, "training_metadata.json.bkp")) as file:
        previous = file.read()
    with open(os.path.join(backup, "training_metadata.json"), "w") as file:
        file.write(previous)


@pytest.mark.parametrize("damage, epochs_trained", [
    (None, [2]),
    # Issue #12: a truncated training_metadata.json raised a bare JSON error, its intact
    # .bkp ignored.
    (lambda backup: _truncate(os.path.join(backup, "training_metadata.json")), [1, 2]),
    (lambda backup: _truncate(os.path.join(backup, "latest.weights.h5")), [1, 2]),
    # BackupAndRestore would load epoch 2's weights and train epochs 1 and 2 again on them.
    (_legacy_killed_between_weights_and_metadata, [1, 2]),
], ids=["intact", "truncated-metadata", "truncated-weights", "killed-between-the-two"])
@pytest.mark.slow
def test_a_run_in_the_backup_and_restore_layout_resumes(tmp_path, reference, damage,
                                                         epochs_trained):
    out = str(tmp_path / "run")
    backup = _legacy_run(out, epochs_done=2)
    if damage is not None:
        damage(backup)
    epochs = _Epochs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Stop):  # stopped after its last epoch, before model.keras
            _train(out, epochs, _StopAtTrainEnd())
    skipped = [str(w.message) for w in caught if "Skipped checkpoint files" in str(w.message)]
    assert len(skipped) == (damage is not None), skipped
    assert epochs.trained == epochs_trained
    # Resumed, it checkpoints in the new layout; the old files are gone.
    names = sorted(os.listdir(backup))
    assert names[-1] == checkpoints.folder_name(3) and all(n.startswith("epoch-") for n in names)
    model, trained = _resumed(out)
    assert trained == []
    _assert_same_weights(model, reference)
    assert not os.path.exists(backup)


@pytest.mark.slow
def test_a_backup_and_restore_run_killed_in_its_first_checkpoint_starts_again(tmp_path,
                                                                              reference):
    # Issue #12: killed while latest.weights.h5 was first written, the same command then
    # always failed with an HDF5 error.
    out = str(tmp_path / "run")
    backup = _legacy_run(out, epochs_done=1)
    _truncate(os.path.join(backup, "latest.weights.h5"))
    os.remove(os.path.join(backup, "training_metadata.json"))  # killed before it was written
    with pytest.warns(UserWarning, match="first checkpoint .* was interrupted"):
        model, trained = _resumed(out)
    assert trained == [0, 1, 2]
    _assert_same_weights(model, reference)


@pytest.mark.slow
@pytest.mark.parametrize("damaged", [checkpoints.METADATA, checkpoints.WEIGHTS])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, reference, damaged):
    out = str(tmp_path / "run")
    _interrupted(out, 2)
    backup = os.path.join(out, runs.BACKUP)
    newest = os.path.join(backup, checkpoints.folder_name(2))
    _truncate(os.path.join(newest, damaged))
    with pytest.warns(UserWarning, match=f"{damaged}.*truncated or corrupt.*resuming from"):
        model, trained = _resumed(out)
    assert trained == [1, 2]
    _assert_same_weights(model, reference)


@pytest.mark.slow
def test_no_intact_checkpoint_is_an_error_naming_the_files_and_the_fix(tmp_path):
    out = str(tmp_path / "run")
    _interrupted(out, 2)
    backup = os.path.join(out, runs.BACKUP)
    for epoch in (1, 2):
        _truncate(os.path.join(backup, checkpoints.folder_name(epoch), checkpoints.METADATA))
    with pytest.raises(ValueError) as error:
        _train(out)
    message = str(error.value)
    assert os.path.join(backup, checkpoints.folder_name(2), checkpoints.METADATA) in message
    assert "truncated or corrupt" in message and f"delete {backup!r}" in message
    assert "\n" not in message


@pytest.mark.slow
def test_a_checkpoint_holds_its_weights_and_metadata_together(tmp_path):
    out = str(tmp_path / "run")
    _interrupted(out, 2)
    backup = os.path.join(out, runs.BACKUP)
    assert sorted(os.listdir(backup)) == [checkpoints.folder_name(1), checkpoints.folder_name(2)]
    checkpoint = checkpoints.latest(backup)
    assert checkpoint.epoch == 2 and checkpoint.metadata["optimizer_step"] == 2
    assert os.path.dirname(checkpoint.weights) == os.path.dirname(checkpoint.metadata_path)
    with open(os.path.join(out, runs.CONFIG)) as file:
        assert checkpoint.config == json.load(file)


@pytest.mark.slow
def test_a_resumed_model_fits_again_from_epoch_zero(tmp_path):
    # Resuming tells `fit` its first epoch; a later `fit` on the returned model must not
    # inherit it (it would skip epochs: here, all of them).
    out = str(tmp_path / "run")
    _interrupted(out, 2)
    model, trained = _resumed(out)
    assert trained == [2]
    history = model.fit(tf_ama.fresh_valuations(TRAINING.batch_size), epochs=1,
                        steps_per_epoch=1, verbose=0)
    assert history.epoch == [0]


@pytest.mark.slow
def test_weights_and_metadata_that_disagree_are_refused_naming_both_and_the_fix(tmp_path):
    out = str(tmp_path / "run")
    _interrupted(out, 2)
    newest = os.path.join(out, runs.BACKUP, checkpoints.folder_name(2))
    path = os.path.join(newest, checkpoints.METADATA)
    with open(path) as file:
        metadata = json.load(file)
    with open(path, "w") as file:
        json.dump({**metadata, "optimizer_step": 1}, file)
    with pytest.raises(ValueError) as error:
        _train(out)
    message = str(error.value)
    assert "holds optimizer step 2" in message and path in message
    assert f"Fix: delete {newest!r}" in message and "\n" not in message
