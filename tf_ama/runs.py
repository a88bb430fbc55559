"""The run directory written by `tf-ama train --out RUN_DIR`.

    RUN_DIR/config.json          setting, model config and training config (JSON)
    RUN_DIR/model.keras          the trained model (Keras format), written atomically at the end
    RUN_DIR/backup/              BackupAndRestore checkpoints: re-running resumes from here
    RUN_DIR/logs/                TensorBoard logs
    RUN_DIR/history.csv          per-epoch metrics (CSVLogger)
    RUN_DIR/evaluation.json      exact evaluation against the baselines
    RUN_DIR/training_curves.png  soft and exact revenue over steps, baselines as lines
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import keras

CONFIG = "config.json"
MODEL = "model.keras"
BACKUP = "backup"
LOGS = "logs"
HISTORY = "history.csv"
EVALUATION = "evaluation.json"
CURVES = "training_curves.png"


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
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomic(path, payload):
    """Writes JSON to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, ".json") as temporary, open(temporary, "w") as file:
        json.dump(payload, file, indent=2, sort_keys=True)
        file.write("\n")


def save_model_atomic(model, path):
    """Saves a `.keras` file atomically (see `atomic_file`)."""
    with atomic_file(path, ".keras") as temporary:
        model.save(temporary)


def read_config(run_dir):
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir!r} is not a tf_ama run directory (no {CONFIG}); create one with "
            "`tf-ama train SETTING --out RUN_DIR`."
        )
    with open(path) as file:
        return json.load(file)


def load_run(run_dir):
    """`(model, config)` of a finished run: the trained model and its config.json."""
    config = read_config(run_dir)
    path = os.path.join(run_dir, MODEL)
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir!r} has no trained model ({MODEL}): the run has not finished. Re-run "
            "the same `tf-ama train ... --out RUN_DIR` command to resume it."
        )
    import tf_ama.model  # noqa: F401  (registers the class for deserialization)

    return keras.saving.load_model(path), config
