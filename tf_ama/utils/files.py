"""Reading what users give: the one home of what a reader does with bytes it cannot read.

Every reader of user input (data files, setting files, run configs, JSON flags, a server's
answers) parses inside `reading(what)`: whatever the parser raises on bad bytes
(`READ_ERRORS`: a truncated zip, a CSV field beyond the csv module's limit, JSON nested too
deeply for the parser's recursion, text that is not UTF-8, an integer of thousands of
digits, ...) becomes one `ValueError` naming `what` and the problem, with no traceback.
So the command line's error boundary (`tf_ama.cli.app.run_command`) needs no reader-specific
exception type, and a new reader cannot leak one: it parses inside `reading` too.

JSON is read strictly (`parse_json`, `load_json`): a key given twice in one object is
refused (Python's json keeps the last one silently), as is anything `reading` refuses.

Standard library only: importing this module loads neither NumPy nor TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import stat
import struct
import tempfile
import tokenize
import zipfile
import zlib

# What parsers of user bytes raise on bad input (ValueError includes json.JSONDecodeError,
# UnicodeDecodeError and int()'s digit limit; OSError includes a directory opened as a file).
# The largest settings, config or certificate file read (a run's config.json is a few kB).
MAX_FILE_BYTES = 64 << 20
# RuntimeError: zipfile's for an encrypted member; SyntaxError and tokenize.TokenError:
# NumPy's parse of a damaged .npy header.
READ_ERRORS = (ValueError, OSError, EOFError, csv.Error, zipfile.BadZipFile, zlib.error,
               struct.error, RecursionError, OverflowError, NotImplementedError, RuntimeError,
               SyntaxError, tokenize.TokenError)


def describe(error) -> str:
    """A short, one-line reason for a `READ_ERRORS` exception."""
    if isinstance(error, RecursionError):
        return "nested too deeply to parse"
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot be read ({error.strerror})"
    if isinstance(error, csv.Error) and "field larger than field limit" in str(error):
        return f"a field longer than {csv.field_size_limit():,} characters (no number is that long)"
    if isinstance(error, zipfile.BadZipFile):
        return f"not a readable zip archive ({error})"
    message = " ".join(str(error).split())
    digits = re.search(r"limit \((\d+) digits\) for integer string conversion.*has (\d+)", message)
    if type(error) is ValueError and digits:  # int()'s guard against quadratic parsing
        return f"a number of {digits[2]} digits (at most {digits[1]} are read)"
    if type(error) is ValueError and message:  # a parser's own words, e.g. json's
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@contextlib.contextmanager
def reading(what, fix=""):
    """Runs a parser of user input: any `READ_ERRORS` exception becomes
    `ValueError("{what}: {reason}.{fix}")` (one line); `what` may be a function giving it
    when the error happens (e.g. with the line reached). Wrap the parsing only, not checks
    whose errors already name the argument (those would be named twice)."""
    try:
        yield
    except READ_ERRORS as error:
        what = what() if callable(what) else what
        raise ValueError(f"{what}: {describe(error).rstrip('.')}.{' ' + fix if fix else ''}"
                         ) from None


def _unique_keys(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen, twice = set(), set()
        for key, _ in pairs:
            (twice if key in seen else seen).add(key)
        raise ValueError(f"the key(s) {sorted(twice)[:5]} appear twice in one object; give "
                         "each once")
    return result


def parse_json(text, what):
    """The JSON value in `text` (str or UTF-8 bytes), read strictly (module docstring); a
    ValueError naming `what` if it is not valid JSON."""
    with reading(what):
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON ({error})") from None


def read_bytes(path, what=None, limit=MAX_FILE_BYTES):
    """The bytes of the regular file `path`, or a ValueError naming it (as `what`, default
    the path): a pipe or a device (/dev/zero) would be read without end, and a file beyond
    `limit` bytes is not what a setting or a certificate is."""
    what = os.fspath(path) if what is None else what
    with reading(what):
        if not stat.S_ISREG(os.stat(path).st_mode):  # before open(), which blocks on a pipe
            raise ValueError("not a regular file (a pipe or a device?); save it to a file"
                             if not os.path.isdir(path) else "is a directory, not a file")
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what}: larger than {limit:,} bytes, more than such a file holds.")
    return data


def load_json(path, what=None):
    """The JSON value in the file `path` (UTF-8, a regular file of at most `MAX_FILE_BYTES`),
    read strictly; a ValueError naming the file (as `what`, default the path) if it cannot
    be read or is not valid JSON."""
    what = os.fspath(path) if what is None else what
    return parse_json(read_bytes(path, what), what)


# ------------------------------------------------------------------ writing, atomically
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
