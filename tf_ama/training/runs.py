"""The run directory written by `tf-ama train --out RUN_DIR`.

    RUN_DIR/config.json          setting, model config and training config (JSON)
    RUN_DIR/model.keras          the trained model (Keras format), written atomically at the end
    RUN_DIR/backup/              checkpoints (tf_ama.training.checkpoints): re-running resumes from here;
                                 removed once model.keras is written
    RUN_DIR/logs/                TensorBoard logs
    RUN_DIR/history.csv          per-epoch metrics (CSVLogger)
    RUN_DIR/evaluation.json      exact evaluation against the baselines
    RUN_DIR/training_curves.png  soft and exact revenue over steps, baselines as lines
"""

from __future__ import annotations

import os
import warnings
import zipfile

import keras

from tf_ama.training import checkpoints
from tf_ama.utils import files

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
def save_model_atomic(model, path):
    """Saves a `.keras` file atomically (see `atomic_file`)."""
    with files.atomic_file(path, ".keras") as temporary:
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
    except ValueError as error:  # tf_ama.utils.files: not JSON, not UTF-8, unreadable, ...
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
            files.write_json_atomic(path, copy.config)
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
    except ValueError as error:  # tf_ama.utils.files: damaged, not a zip, not JSON, ...
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
    import tf_ama.models.contextual  # noqa: F401  (registers both auction classes for loading)

    with files.reading(f"{path} (a Keras model file) cannot be loaded", "Re-run the same "
                       f"`tf-ama train ... --out {run_dir}` command to train it again."):
        return keras.saving.load_model(path), config
