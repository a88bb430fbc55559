"""Argument checks: the one home of the errors that name a bad argument and the fix (and
of `one_line`, an error message on one line for the command line and export).

Every public function and constructor of tf_ama checks its scalar arguments with these, so
that the same kind of argument is accepted and refused the same way everywhere:

* booleans are never numbers (`True` is not a size, a seed or a temperature);
* integers are Python or NumPy integers; numbers are finite reals (no NaN, no inf);
* the error is a `ValueError` whose message names the argument (in backticks), says what it
  must be and shows what was given.

NumPy only: importing this module loads neither TensorFlow nor Keras.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings

import numpy as np

SEED_LIMIT = 2**31  # seeds are int32 in the stateless random ops
MAX_MODEL_VERSION = 2**63 - 1  # TF Serving's model versions are int64


def _range_text(minimum, maximum, *, above=None):
    parts = []
    if above is not None:
        parts.append(f"> {above}")
    if minimum is not None:
        parts.append(f">= {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    return " and ".join(parts)


def integer(name, value, *, minimum=None, maximum=None):
    """`value` as an int: an integer (not a bool) in `[minimum, maximum]`."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bounds = _range_text(minimum, maximum)
        raise ValueError(f"`{name}` must be an int{' ' + bounds if bounds else ''}; got {value!r}.")
    return int(value)


def number(name, value, *, above=None, minimum=None, maximum=None):
    """`value` as a float: a finite real number (not a bool) `> above`, in `[minimum, maximum]`."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or (above is not None and not value > above)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bounds = _range_text(minimum, maximum, above=above)
        raise ValueError(f"`{name}` must be a finite number{' ' + bounds if bounds else ''}; "
                         f"got {value!r}.")
    return float(value)


def boolean(name, value):
    """`value` itself if it is `True` or `False` (NumPy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")
    return bool(value)


def choice(name, value, options):
    """`value` if it is one of `options`."""
    if isinstance(value, bool) or value not in tuple(options):
        raise ValueError(f"`{name}` must be one of {tuple(options)}; got {value!r}.")
    return value


def seed(name, value):
    """`value` as an int seed in `[0, 2**31)` (the range of the stateless random ops)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            0 <= value < SEED_LIMIT):
        raise ValueError(f"`{name}` must be an int in [0, 2**31); got {value!r}.")
    return int(value)


def optional(check, name, value, *args, **kwargs):
    """`None` if `value` is None, else `check(name, value, *args, **kwargs)`; the error says
    that None is accepted too (e.g. `optional(integer, "micro_batch_size", size, minimum=1)`)."""
    if value is None:
        return None
    try:
        return check(name, value, *args, **kwargs)
    except ValueError as error:
        raise ValueError(str(error).replace(" must be ", " must be None or ", 1)) from None


def string(name, value):
    """`value` if it is a non-empty `str`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{name}` must be a non-empty string; got {value!r}.")
    return value


def directory(name, value):
    """`value` as a `str` path of a directory to write into: a non-empty path that is not an
    existing file (it may exist as a directory, or not yet)."""
    import os

    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise ValueError(f"`{name}` must be a directory path; got {value!r}. Name a new "
                         "folder, e.g. runs/my_run.")
    path = os.fspath(value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`{name}` {path!r} is a file, not a directory; name a new folder "
                         "(or an earlier run's, to resume it).")
    return path


class _Renamed:
    def __repr__(self):
        return "<deprecated>"


# The default of a renamed keyword argument, so that passing it at all (even None) is seen.
RENAMED = _Renamed()


def renamed(old_name, old_value, new_name, new_value, *, stacklevel=3):
    """The value of the argument `new_name`, which was called `old_name`: `new_value`, or
    `old_value` with a `DeprecationWarning` if the caller used the old keyword (its default
    `RENAMED` tells). The old name keeps working until it is removed; giving both is refused.
    The warning points at the caller of the function that calls `renamed` (`stacklevel` 3;
    one more per helper in between).

        def evaluate(..., micro_batch_size=None, *, chunk_size=checks.RENAMED):
            micro_batch_size = checks.renamed("chunk_size", chunk_size,
                                              "micro_batch_size", micro_batch_size)
    """
    if old_value is RENAMED:
        return new_value
    warnings.warn(f"`{old_name}` is deprecated; it is now called `{new_name}` (same meaning).",
                  DeprecationWarning, stacklevel=stacklevel)
    if new_value is not None:
        raise ValueError(f"Give `{new_name}` only: `{old_name}` is its deprecated name; got "
                         f"both ({new_name}={new_value!r}, {old_name}={old_value!r}).")
    return old_value


# Lines of graph context in TensorFlow's messages: where the failing node was built (a Python
# stack), the node itself; the message proper is the rest.
_GRAPH_CONTEXT = ("Graph execution error", "Detected at node", 'File "', "<stack traces",
                  "[[{{", "in user code")


def one_line(error) -> str:
    """`error`'s message on one line: some messages list details on further lines,
    TensorFlow's (`OpError.message`) add lines of graph context, which are left out."""
    tf = sys.modules.get("tensorflow")
    is_op_error = tf is not None and hasattr(tf, "errors") and isinstance(error, tf.errors.OpError)
    lines = [line.strip() for line in (error.message if is_op_error else str(error)).splitlines()]
    lines = [line for line in lines if line]
    if is_op_error:
        lines = [line for line in lines if not line.startswith(_GRAPH_CONTEXT)] or lines
    return " ".join(lines)
