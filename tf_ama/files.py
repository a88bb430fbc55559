"""Reading what users give: the one home of what a reader does with bytes it cannot read.

Every reader of user input (data files, setting files, run configs, JSON flags, a server's
answers) parses inside `reading(what)`: whatever the parser raises on bad bytes
(`READ_ERRORS`: a truncated zip, a CSV field beyond the csv module's limit, JSON nested too
deeply for the parser's recursion, text that is not UTF-8, an integer of thousands of
digits, ...) becomes one `ValueError` naming `what` and the problem, with no traceback.
So the command line's error boundary (`tf_ama.cli.run_command`) needs no reader-specific
exception type, and a new reader cannot leak one: it parses inside `reading` too.

JSON is read strictly (`parse_json`, `load_json`): a key given twice in one object is
refused (Python's json keeps the last one silently), as is anything `reading` refuses.

Standard library only: importing this module loads neither NumPy nor TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import struct
import zipfile
import zlib

# What parsers of user bytes raise on bad input (ValueError includes json.JSONDecodeError,
# UnicodeDecodeError and int()'s digit limit; OSError includes a directory opened as a file).
READ_ERRORS = (ValueError, OSError, EOFError, csv.Error, zipfile.BadZipFile, zlib.error,
               struct.error, RecursionError, OverflowError, NotImplementedError)


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
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"the key(s) {twice} appear twice in one object; give each once")
    return dict(pairs)


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


def load_json(path, what=None):
    """The JSON value in the file `path` (UTF-8), read strictly; a ValueError naming the
    file (as `what`, default the path) if it cannot be read or is not valid JSON."""
    what = os.fspath(path) if what is None else what
    with reading(what):
        with open(path, "rb") as file:
            text = file.read()
    return parse_json(text, what)
