"""The TF Serving layout of an export: `<base_dir>/<version>/`, each version folder written
whole or not at all.

A version is written in a temporary folder `.tmp-export-<host>-<pid>-*` of `base_dir` and
renamed to its number when complete (`write_version`); a failed write removes it, and a
later export removes the leftovers of an exporting process that died. A version is never
overwritten. `assets.extra/tf_ama_config.json` records what was exported
(`read_export_config`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile

import tensorflow as tf

from tf_ama.utils import checks, files
from tf_ama.utils.files import current_umask

CONFIG_FILE = "tf_ama_config.json"


WARMUP_FILE = "tf_serving_warmup_requests"


ASSETS_EXTRA = "assets.extra"


_TMP_PREFIX = ".tmp-export-"


# mkdtemp's random suffix has no '-', so the host (which may) is everything before -<pid>-.
_TMP_PATTERN = re.compile(r"^\.tmp-export-(?P<host>.+)-(?P<pid>\d+)-[^-]+$")


class ExportError(ValueError):
    """A bad argument to `export_saved_model` / `load_menu_model`, a failed write or a damaged
    version folder (the message names the file or folder and says the fix)."""


# What writing a SavedModel raises when the file system fails: Python's writes raise OSError,
# TensorFlow's (saved_model.pb, variables, warm-up records) its own errors, e.g. a full disk
# (ENOSPC) is ResourceExhaustedError "...; No space left on device".
_WRITE_ERRORS = (OSError, tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
                 tf.errors.NotFoundError)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _write_failure(base_dir, error):
    """The ExportError for a file system `error` while exporting into `base_dir`."""
    code = getattr(error, "errno", None)
    if code in _NO_SPACE or isinstance(error, tf.errors.ResourceExhaustedError):
        problem = "no space left on its device"
        fix = "free space there (or choose a folder on another device) and export again"
    elif code in _NOT_ALLOWED or isinstance(error, tf.errors.PermissionDeniedError):
        problem = "this user may not write there"
        fix = "make the folder writable (or choose another one) and export again"
    else:
        problem = "a write failed"
        fix = "check that the folder is a writable directory and export again"
    return ExportError(
        f"Could not export into {base_dir!r}: {problem}; no version folder was written. To fix: "
        f"{fix}. ({type(error).__name__}: {checks.one_line(error)})")


def _existing_versions(base_dir):
    return sorted(int(name) for name in os.listdir(base_dir) if name.isdigit())


EXISTING = ("Version {version} already exists in {base_dir!r} and is never overwritten. Pass "
             "version=None (--version omitted) to export the next free version, or delete it.")


def check_training_config(training_config):
    if training_config is not None:
        try:
            json.dumps(training_config)
        except (TypeError, ValueError) as error:
            raise ExportError(f"`training_config` must be JSON-serializable: {error}") from None


def _host():
    """This machine's name, safe in a file name."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _remove_stale_temporaries(base_dir):
    """Removes `.tmp-export-<host>-<pid>-*` folders of this host whose exporting process no
    longer exists (a pid means nothing on another host)."""
    for name in os.listdir(base_dir):
        match = _TMP_PATTERN.match(name)
        if not match or match.group("host") != _host():
            continue
        pid = int(match.group("pid"))
        try:
            os.kill(pid, 0)
            continue  # still running: another export in progress
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # exists, owned by someone else
        shutil.rmtree(os.path.join(base_dir, name), ignore_errors=True)


def write_version(base_dir, version, write):
    """Calls `write(folder)` on a temporary folder of `base_dir`, renamed to the version
    folder when complete (removed if anything fails); returns the version folder. A failed
    write raises the ExportError of `_write_failure`."""
    try:
        return _write_version(base_dir, version, write)
    except _WRITE_ERRORS as error:
        raise _write_failure(base_dir, error) from error


def _write_version(base_dir, version, write):
    os.makedirs(base_dir, exist_ok=True)
    _remove_stale_temporaries(base_dir)
    temporary = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{_host()}-{os.getpid()}-", dir=base_dir)
    try:
        write(temporary)
        # mkdtemp makes the folder owner-only; a server running as another user must read it.
        os.chmod(temporary, 0o777 & ~current_umask())
        while True:
            number = version if version is not None else max(
                _existing_versions(base_dir), default=0) + 1
            target = os.path.join(base_dir, str(number))
            if os.path.exists(target):  # another export took it meanwhile
                if version is not None:
                    raise ExportError(f"Version {version} appeared in {base_dir!r} meanwhile.")
                continue
            try:
                os.rename(temporary, target)  # atomic; fails on a non-empty target
            except OSError:
                if version is not None or not os.path.exists(target):
                    raise
                continue
            return target
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def resolve_version_dir(path) -> str:
    """`path` if it is a version folder; for a model folder, its highest version."""
    path = os.fspath(path)
    if not os.path.exists(os.path.join(path, "saved_model.pb")) and os.path.isdir(path):
        versions = _existing_versions(path)
        if versions:
            return os.path.join(path, str(versions[-1]))
    return path


def reexport_fix(version_dir):
    """The fix for a damaged version folder."""
    base_dir = os.path.dirname(os.path.normpath(version_dir)) or "."
    return f"export the run again (tf-ama export RUN_DIR --to {base_dir})"


def read_export_config(version_dir) -> dict:
    """The `tf_ama_config.json` of an exported version folder."""
    path = os.path.join(version_dir, ASSETS_EXTRA, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ExportError(
            f"{str(version_dir)!r} is not a tf_ama SavedModel version folder (no "
            f"{ASSETS_EXTRA}/{CONFIG_FILE}). Give the numeric folder, e.g. "
            "models/additive_2x2_uniform/1, written by tf_ama.export_saved_model.")
    try:
        config = files.load_json(path)
    except ValueError as error:  # tf_ama.utils.files: not JSON, not UTF-8, unreadable, ...
        raise ExportError(
            f"{path!r} is damaged: it is not the JSON that export writes. Delete the version "
            f"folder {str(version_dir)!r} and {reexport_fix(version_dir)}. "
            f"({str(error).split(': ', 1)[-1]})") from None
    if not (isinstance(config, dict) and isinstance(config.get("setting"), dict)
            and isinstance(config.get("model"), dict)):
        raise ExportError(
            f"{path!r} is damaged: it has no `setting` and `model` sections. Delete the version "
            f"folder {str(version_dir)!r} and {reexport_fix(version_dir)}.")
    return config
