"""Atomic training checkpoints: the state a killed run resumes from, one folder per epoch.

`train_run` checkpoints at every epoch end so that re-running the same command resumes where a
killed run stopped. A checkpoint is the variables of the model and of its optimizer
(`model.save_weights`: the menu, Adam's moments, the learning rate and the step counter that
keys the stateless valuation stream) and `training_metadata.json` (the epoch, the optimizer
step, the run's config and the model attributes that callbacks change, such as the
temperature). The two must agree: the weights of one epoch with the epoch number of another
would resume the wrong epoch without a word. So both are written into a hidden folder beside
the checkpoints and published together by one `os.rename`:

    backup/epoch-000004/model.weights.h5         variables after epoch 4 (the newest)
    backup/epoch-000004/training_metadata.json   {"epoch": 4, "optimizer_step": ..., ...}
    backup/epoch-000003/...                      the one before, kept
    backup/.tmp-*/                               a write in progress, or killed: ignored

A kill at any moment leaves every published folder complete; the newest is resumed. The two
newest are kept so that one damaged later (a disk error, a truncated copy) is skipped, with a
warning, for the one before it; a removed folder is first renamed to a hidden name, so none is
ever half-deleted under its published name.

Run directories written before this module hold keras.callbacks.BackupAndRestore's layout
(`latest.weights.h5`, `training_metadata.json` and `.bkp` copies of both from the epoch
before, written one file after the other). They still resume, by the rules of `latest`, and
their files are removed once the first new checkpoint is published.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
from typing import Optional

import h5py  # Keras's own weights format (.weights.h5); used here to check a file reads
import keras

from tf_ama.utils import files

WEIGHTS = "model.weights.h5"
METADATA = "training_metadata.json"
KEEP = 2  # published checkpoints kept: the newest and one to fall back on
_FOLDER = re.compile(r"^epoch-(\d{6,})$")
_HIDDEN = ".tmp-"
# keras.callbacks.BackupAndRestore(double_checkpoint=True), as written before this module.
LEGACY_WEIGHTS = "latest.weights.h5"
LEGACY_METADATA = "training_metadata.json"
LEGACY_PREVIOUS = ".bkp"
_LEGACY_FILES = tuple(name + suffix for name in (LEGACY_WEIGHTS, LEGACY_METADATA)
                      for suffix in ("", LEGACY_PREVIOUS))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """An intact checkpoint: its weights file and what its metadata file says."""

    epoch: int  # epochs completed
    weights: str
    metadata_path: str
    metadata: dict

    @property
    def config(self) -> Optional[dict]:
        """The run's config.json as it was when the checkpoint was written (None for the
        layout written before this module, which did not record it)."""
        return self.metadata.get("config")


def folder_name(epoch: int) -> str:
    return f"epoch-{epoch:06d}"


def latest(directory) -> Optional[Checkpoint]:
    """The newest intact checkpoint in `directory`; None if there is none to resume from.

    A published folder that does not read (weights or metadata) is skipped with a warning for
    the one before it. Raises a ValueError naming the damaged files and the fix when
    checkpoints exist but none is intact: training again from the start would silently throw
    away the epochs they held.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return None
    damaged = []
    for epoch, folder in _published(directory):
        metadata_path = os.path.join(folder, METADATA)
        metadata, problem = _read_metadata(metadata_path)
        if metadata is not None and (metadata["epoch"] != epoch
                                     or not _is_count(metadata.get("optimizer_step"))):
            problem = (f"{metadata_path} does not describe the checkpoint of epoch {epoch} "
                       f"(epoch {metadata['epoch']}, optimizer_step "
                       f"{metadata.get('optimizer_step')!r})")
        weights = os.path.join(folder, WEIGHTS)
        problem = problem or _weights_problem(weights)
        if problem is None:
            _warn_skipped(damaged, folder)
            return Checkpoint(epoch, weights, metadata_path, metadata)
        damaged.append(problem)
    legacy, legacy_damaged = _latest_legacy(directory)
    if legacy is not None:
        _warn_skipped(damaged + legacy_damaged, legacy.weights)
        return legacy
    damaged += legacy_damaged
    if damaged:
        raise ValueError(
            f"No intact checkpoint to resume from in {directory!r}: {'; '.join(damaged)}. Fix: "
            f"delete {directory!r} and re-run the same command; it trains from the start and "
            "ends with the same model.")
    return None


def restore(model, checkpoint: Checkpoint, attributes=()):
    """Loads `checkpoint` into `model` (built) and its optimizer, and sets the model
    `attributes` its metadata recorded. Checks that the loaded optimizer step is the one the
    metadata recorded, so that the weights and the epoch number cannot disagree."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to load
    folder = os.path.dirname(checkpoint.weights)
    fix = (f"Fix: delete {folder!r} and re-run the same command, which then resumes from the "
           "checkpoint before it, or trains from the start if there is none (ending with the "
           "same model)")
    try:
        if checkpoint.weights.endswith(".weights.h5"):
            model.load_weights(checkpoint.weights)
        else:  # the old layout's latest.weights.h5.bkp: Keras loads only *.weights.h5 names
            with tempfile.TemporaryDirectory() as temporary:
                copy = os.path.join(temporary, LEGACY_WEIGHTS)
                shutil.copyfile(checkpoint.weights, copy)
                model.load_weights(copy)
    except (OSError, ValueError, KeyError) as error:
        reason = " ".join(str(error).split())  # Keras's messages span lines
        raise ValueError(f"The checkpoint {checkpoint.weights!r} does not load into this model "
                         f"({reason}). {fix}.") from error
    expected = checkpoint.metadata.get("optimizer_step")
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if expected is not None and step != expected:
        raise ValueError(
            f"The checkpoint {checkpoint.weights!r} holds optimizer step {step} but "
            f"{checkpoint.metadata_path!r} says {expected}. {fix}.")
    for name, value in checkpoint.metadata.get("attributes", {}).items():
        if name in attributes:
            setattr(model, name, value)


def write(model, directory, epoch: int, config=None, attributes=()) -> str:
    """Publishes the checkpoint of `epoch` (epochs completed) as `directory/epoch-NNNNNN`.

    Weights and metadata are written and flushed to disk in a hidden folder, then renamed to
    the published name in one step; then all but the `KEEP` newest checkpoints, leftover
    hidden folders and the files of the old layout are removed. Returns the folder.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    hidden = os.path.join(directory, f"{_HIDDEN}{folder_name(epoch)}-{uuid.uuid4().hex[:8]}")
    os.mkdir(hidden)  # the usual permissions, unlike mkdtemp's owner-only
    try:
        model.save_weights(os.path.join(hidden, WEIGHTS))
        metadata = {
            "epoch": epoch,
            "optimizer_step": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            "attributes": {name: getattr(model, name) for name in attributes},
            "config": config,
        }
        with open(os.path.join(hidden, METADATA), "w") as file:
            json.dump(metadata, file, indent=2, sort_keys=True)
            file.write("\n")
        for path in (os.path.join(hidden, WEIGHTS), os.path.join(hidden, METADATA), hidden):
            _fsync(path)  # on disk before published: a crash cannot publish empty files
        final = os.path.join(directory, folder_name(epoch))
        if os.path.exists(final):  # a damaged one skipped by `latest`
            _remove(final)
        os.rename(hidden, final)
        _fsync(directory)
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise
    kept = [folder for _, folder in _published(directory) if _epoch(folder) <= epoch][:KEEP]
    for _, folder in _published(directory):
        if folder not in kept:
            _remove(folder)
    for name in _LEGACY_FILES:
        if os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
    remove_leftovers(directory)
    return final


def remove_all(directory):
    """Deletes `directory` and its checkpoints (a finished run's), each published folder first
    renamed to a hidden name: a kill in between leaves intact checkpoints or hidden ones."""
    directory = os.fspath(directory)
    if os.path.isdir(directory):
        for _, folder in _published(directory):
            _remove(folder)
        shutil.rmtree(directory)


def remove_leftovers(directory):
    """Removes the hidden folders of writes or removals that a kill interrupted."""
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.startswith(_HIDDEN):
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """Resumes from `resume` (a `Checkpoint` from `latest`, or None) at train begin and
    publishes a checkpoint (`write`) at every epoch end.

    Replaces keras.callbacks.BackupAndRestore, whose weights and metadata files are written
    one after the other, in place. Put it last among the callbacks: it then restores after
    every callback's `set_model` (`TemperatureScheduler` reads the initial learning rate
    there, before the checkpoint's annealed one is loaded), and an epoch is recorded only
    after every other callback has run (CSVLogger's row is written before the checkpoint
    that makes the epoch final).

    Args:
      directory: the checkpoint folder (created).
      resume: the checkpoint to resume from.
      config: a JSON-able record of the run, stored in each checkpoint (`Checkpoint.config`).
      attributes: names of plain model attributes that callbacks change (the temperature);
        saved in each checkpoint and set again on resume.
    """

    def __init__(self, directory, resume: Optional[Checkpoint] = None, config=None,
                 attributes=()):
        super().__init__()
        self.directory = os.fspath(directory)
        self.resume = resume
        self.config = config
        self.attributes = tuple(attributes)

    def on_train_begin(self, logs=None):
        remove_leftovers(self.directory)
        if self.resume is not None:
            restore(self.model, self.resume, self.attributes)
            # How keras.callbacks.BackupAndRestore tells `fit` where to start.
            self.model._initial_epoch = self.resume.epoch

    def on_epoch_end(self, epoch, logs=None):
        write(self.model, self.directory, epoch + 1, self.config, self.attributes)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # a later `fit` on this model starts where it says


def _published(directory):
    """`(epoch, folder)` of the published checkpoints, newest first."""
    found = []
    for name in os.listdir(directory):
        match = _FOLDER.match(name)
        if match and os.path.isdir(os.path.join(directory, name)):
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def _epoch(folder):
    return int(_FOLDER.match(os.path.basename(folder)).group(1))


def _latest_legacy(directory):
    """`(checkpoint or None, problems)` for BackupAndRestore's layout.

    BackupAndRestore wrote, at each epoch end: a copy of the weights to `.bkp`, a copy of the
    metadata to `.bkp`, the new weights, the new metadata. Killed between the new weights and
    the new metadata, the current metadata still names the previous epoch, like its `.bkp`
    copy, while the weights are an epoch ahead: so when both metadata files name the same
    epoch, the `.bkp` pair is the consistent one. Without `.bkp` files and without an intact
    pair, the first checkpoint was interrupted: there is nothing to resume (None, no problem).
    """
    current = (os.path.join(directory, LEGACY_WEIGHTS), os.path.join(directory, LEGACY_METADATA))
    previous = tuple(path + LEGACY_PREVIOUS for path in current)
    if not any(os.path.exists(path) for path in current + previous):
        return None, []
    current_metadata, current_problem = _read_metadata(current[1])
    previous_metadata, previous_problem = _read_metadata(previous[1])
    problems = []
    candidates = [(previous, previous_metadata, previous_problem)]
    if current_metadata is not None and previous_metadata is not None and (
            current_metadata["epoch"] == previous_metadata["epoch"]):
        problems.append(f"{current[0]} may be newer than {current[1]}, which names the epoch "
                        f"of its {LEGACY_PREVIOUS} copy")
    else:
        candidates.insert(0, (current, current_metadata, current_problem))
    for (weights, metadata_path), metadata, problem in candidates:
        problem = problem or _weights_problem(weights)
        if problem is None:
            return Checkpoint(metadata["epoch"], weights, metadata_path, metadata), problems
        problems.append(problem)
    if not any(os.path.exists(path) for path in previous):
        warnings.warn(f"The first checkpoint in {directory!r} was interrupted ("
                      f"{'; '.join(problems)}); training from the start.", stacklevel=3)
        return None, []
    return None, problems


def _read_metadata(path):
    """`(metadata dict or None, problem or None)`: None and why when missing or damaged."""
    if not os.path.isfile(path):
        return None, f"{path} is missing"
    try:
        metadata = files.load_json(path)
    except ValueError as error:  # tf_ama.utils.files: not JSON, not UTF-8, unreadable, ...
        return None, (f"{path} is not valid JSON, truncated or corrupt "
                      f"({str(error).split(': ', 1)[-1]})")
    if not isinstance(metadata, dict) or not _is_count(metadata.get("epoch")):
        return None, f"{path} has no epoch count"
    return metadata, None


def _weights_problem(path):
    """None if `path` is an HDF5 file whose every dataset reads; otherwise why not."""
    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]  # noqa: B018  (reads the data; visititems stops on a non-None return)

    if not os.path.isfile(path):
        return f"{path} is missing"
    try:
        with h5py.File(path, "r") as file:
            file.visititems(read)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        return f"{path} is not a readable HDF5 weights file, truncated or corrupt ({error})"
    return None


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _warn_skipped(problems, used):
    if problems:
        warnings.warn(f"Skipped checkpoint files that cannot be trusted ({'; '.join(problems)}); "
                      f"resuming from {used}.", stacklevel=3)


def _remove(folder):
    """Renames `folder` to a hidden name, then deletes it: never half-deleted under its name."""
    hidden = os.path.join(os.path.dirname(folder), f"{_HIDDEN}removed-{uuid.uuid4().hex[:8]}")
    os.rename(folder, hidden)
    shutil.rmtree(hidden)


def _fsync(path):
    """Flushes a file, or a folder's entries, to disk (folders: where the system allows it)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if os.path.isdir(path):  # e.g. Windows cannot open a folder
            return
        raise
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
