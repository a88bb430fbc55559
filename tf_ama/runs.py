"""The run directory written by `tf-ama train --out RUN_DIR`.

    RUN_DIR/config.json          setting, model config and training config (JSON)
    RUN_DIR/model.keras          the trained model (Keras format), written atomically at the end
    RUN_DIR/backup/              checkpoints (tf_ama.checkpoints): re-running resumes from here;
                                 removed once model.keras is written
    RUN_DIR/logs/                TensorBoard logs
    RUN_DIR/history.csv          per-epoch metrics (CSVLogger)
    RUN_DIR/evaluation.json      exact evaluation against the baselines
    RUN_DIR/training_curves.png  soft and exact revenue over steps, baselines as lines
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import warnings
import zipfile

import keras

from tf_ama import checkpoints, files

CONFIG = "config.json"
MODEL = "model.keras"
BACKUP = "backup"
LOGS = "logs"
HISTORY = "history.csv"
EVALUATION = "evaluation.json"
CURVES = "training_curves.png"
SEPARABLE_BOOSTS = "separable_boosts.png"  # menus with the item-separable family
SELECTION = "selection.json"  # their start or trained state, whichever validated higher
POLISH = "polish.json"  # runs with TrainingConfig.polish: the trained or polished menu
_TEMPORARY = ".tmp-"  # atomic_file's temporary files


def current_umask():
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yields a temporary path beside `path`; on success renames it over `path`.

    A reader (a person, TensorBoard, TF Serving) never sees a half-written file, and a failed
    write leaves nothing behind. The file gets the usual permissions (0666 less the umask;
    mkstemp alone would make it owner-only).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=_TEMPORARY, suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Python's message names no file: say which one, and that nothing was lost.
        raise OSError(error.errno, f"Could not write {os.fspath(path)!r}: no space left on its device "
                      "(the previous version of the file, if any, is intact). Free space there "
                      "and re-run the same command; a training run resumes from its last "
                      "checkpoint.") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_leftovers(run_dir):
    """Removes the temporary files of `atomic_file` writes that a kill interrupted (a
    `.tmp-*.keras` as big as the model, for one)."""
    if os.path.isdir(run_dir):
        for name in os.listdir(run_dir):
            path = os.path.join(run_dir, name)
            if name.startswith(_TEMPORARY) and os.path.isfile(path):
                os.remove(path)


def write_json_atomic(path, payload):
    """Writes JSON to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, ".json") as temporary, open(temporary, "w") as file:
        json.dump(payload, file, indent=2, sort_keys=True)
        file.write("\n")


def save_model_atomic(model, path):
    """Saves a `.keras` file atomically (see `atomic_file`)."""
    with atomic_file(path, ".keras") as temporary:
        model.save(temporary)


def read_config(run_dir, repair=False):
    """The run's config.json, as a dict.

    A damaged config.json (truncated, corrupt) is replaced by the copy that every checkpoint
    holds, with a warning, when there is an intact checkpoint (and rewritten on disk if
    `repair`); otherwise a ValueError names the file and the fix.
    """
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir!r} is not a tf_ama run directory (no {CONFIG}); create one with "
            "`tf-ama train SETTING --out RUN_DIR`."
        )
    try:
        config = files.load_json(path)
        problem = None if isinstance(config, dict) else "not a JSON object"
    except ValueError as error:  # tf_ama.files: not JSON, not UTF-8, unreadable, ...
        problem = f"not valid JSON, truncated or corrupt ({str(error).split(': ', 1)[-1]})"
    if problem is None:
        return config
    try:
        copy = checkpoints.latest(os.path.join(run_dir, BACKUP))
    except ValueError:  # damaged checkpoints too: the error below is about config.json
        copy = None
    if copy is not None and copy.config is not None:
        warnings.warn(f"{path} is {problem}; using the copy in {copy.metadata_path}"
                      + (", and writing it back." if repair else "."), stacklevel=2)
        if repair:
            write_json_atomic(path, copy.config)
        return copy.config
    raise ValueError(
        f"{path} is {problem}. Fix: delete it and re-run the same `tf-ama train ... --out "
        f"{run_dir}` command, which writes it again from the arguments (a finished run is then "
        "trained again, into the same model)."
    )


def check_model_file(path):
    """Raises a ValueError naming `path` and the fix unless it is a complete Keras archive.

    A `.keras` file is a zip; a truncated one has lost its directory and a corrupt one fails
    the checksum of a member. Keras itself reports either as "File not found".
    """
    try:
        with files.reading(path), zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            problem = (f"member {damaged} fails its checksum" if damaged is not None else
                       None if "config.json" in archive.namelist() else "no config.json inside")
            if problem is None:  # read strictly (Keras would take a key given twice)
                files.parse_json(archive.read("config.json"), "its config.json")
    except ValueError as error:  # tf_ama.files: damaged, not a zip, not JSON, ...
        problem = str(error).split(": ", 1)[-1].rstrip(".")
    if problem is not None:
        run_dir = os.path.dirname(path) or "."
        raise ValueError(
            f"{path} is not a readable Keras model file ({problem}). Fix: re-run the same "
            f"`tf-ama train ... --out {run_dir}` command, which trains the model again (from the "
            "last checkpoint, if one is left) and rewrites the file; or delete the file."
        )


def load_run(run_dir):
    """`(model, config)` of a finished run: the trained model and its config.json.

    Raises a ValueError naming the file and the fix when either is missing or damaged.
    """
    config = read_config(run_dir)
    path = os.path.join(run_dir, MODEL)
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir!r} has no trained model ({MODEL}): the run has not finished. Re-run "
            "the same `tf-ama train ... --out RUN_DIR` command to resume it."
        )
    check_model_file(path)
    import tf_ama.model  # noqa: F401  (registers the class for deserialization)

    with files.reading(f"{path} (a Keras model file) cannot be loaded", "Re-run the same "
                       f"`tf-ama train ... --out {run_dir}` command to train it again."):
        return keras.saving.load_model(path), config
