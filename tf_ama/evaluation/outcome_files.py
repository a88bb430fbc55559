r"""Per-profile outcomes of an evaluation, written to a file for audit (`tf-ama evaluate
--outcomes FILE`, `tf_ama.evaluate(..., outcomes=FILE)`).

One record per evaluated profile, in the order of the evaluation sample
(`tf_ama.data.settings.sample_blocks`), with `exact_outcome`'s numbers (float64; with XLA unless
`--no-xla` / `jit_compile=False`, which is bit for bit what the exported model serves):

    bids        float64 [N, m, n]  the profile: bidder i's bid (= value) for item j
    menu_index  int64   [N]        the chosen menu entry (ties to the lowest index; an index
                                   >= the menu size is an entry of the item-separable family)
    allocation  float64 [N, m, n]  P(bidder i gets item j) under the chosen entry
    payments    float64 [N, m]     bidder i's payment
    values      float64 [N, m]     bidder i's value of the allocation at the bids; its
                                   utility is values - payments (>= 0: IR)

Revenue per profile is `payments.sum(axis=1)`; the report's revenue is its mean.

Formats, chosen by the file's extension:

* `.npz` (for millions of profiles): an uncompressed NumPy zip with one `.npy` member per
  array above, plus `info`, a JSON string (setting, seed, num_samples, menu, jit_compile).
  `numpy.load(FILE)["payments"]` reads one array. Written chunk by chunk: each array goes to
  a raw scratch file beside FILE, then into its zip member (header + bytes), so memory stays
  bounded; the disk needs twice the file's size while it is written (3x10: 536 bytes per
  profile, 5.4 GB for 10^7 profiles).
* `.csv`: a header line, then one line per profile: `profile, menu_index`, then
  `bid_i_j`, `allocation_i_j` (bidder i, item j, 0-based, bidder-major as the arrays),
  `payment_i`, `value_i`. Floats are written as Python's `repr`, the shortest text that
  reads back to the same float64, bit for bit. About 1.3 KB per 3x10 profile, and slower
  to write (~9 s per 10^5 3x10 profiles, benchmarks/README.md): `.npz` for millions.

Either is written atomically (`tf_ama.training.files.atomic_file`): it appears complete at the end of
the evaluation, or not at all. `read_outcomes(FILE)` reads either back into the arrays above.
Parquet is not offered (it would need pyarrow, which is not a dependency).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from tf_ama.utils import files

SUFFIXES = (".npz", ".csv")
# The arrays of a file: name -> (dtype, trailing axes: "mn", "m" or "").
ARRAYS = {"bids": (np.float64, "mn"), "menu_index": (np.int64, ""),
          "allocation": (np.float64, "mn"), "payments": (np.float64, "m"),
          "values": (np.float64, "m")}


def check_path(name, path) -> str:
    """`path` as a str, checked before an evaluation starts: a file name ending in `.npz` or
    `.csv` whose directory exists (or can be created) and is writable. The ValueError names
    the argument `name`."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a file path ending in .npz or .csv; got "
                         f"{type(path).__name__}.")
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        extra = (" (Parquet would need pyarrow, which is not a dependency)"
                 if suffix == ".parquet" else "")
        raise ValueError(f"`{name}` must be a file name ending in .npz (NumPy, for millions of "
                         f"profiles) or .csv (one line per profile){extra}; got {path!r}.")
    if os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file name, not a directory; got {path!r}.")
    directory = os.path.dirname(os.path.abspath(path))
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"`{name}` cannot be written: {existing!r} is a file, not a "
                         f"directory; got {path!r}. Give a path in a writable directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"`{name}` cannot be written: no permission to write in "
                         f"{existing!r}; got {path!r}. Give a path in a writable directory.")
    return path


def _shape(axes, num_samples, num_bidders, num_items):
    return (num_samples,) + tuple({"m": num_bidders, "n": num_items}[axis] for axis in axes)


class _Writer:
    """Receives the outcomes slice by slice (`write`); checks their shapes and count."""

    def __init__(self, num_samples, num_bidders, num_items):
        self.shapes = {name: _shape(axes, num_samples, num_bidders, num_items)
                       for name, (_, axes) in ARRAYS.items()}
        self.num_samples = num_samples
        self.written = 0

    def write(self, outcome):
        """Appends the profiles of `outcome` (a dict with every key of `ARRAYS`)."""
        size = len(outcome["bids"])
        arrays = {}
        for name, (dtype, _) in ARRAYS.items():
            array = np.ascontiguousarray(outcome[name], dtype)
            if array.shape != (size,) + self.shapes[name][1:]:
                raise ValueError(f"Outcome {name!r} has shape {array.shape}; expected "
                                 f"{(size,) + self.shapes[name][1:]}.")
            arrays[name] = array
        if self.written + size > self.num_samples:
            raise ValueError(f"More than the {self.num_samples} profiles announced.")
        self._append(arrays, size)
        self.written += size


class _NpzWriter(_Writer):
    def __init__(self, scratch, *shape):
        super().__init__(*shape)
        self._raw = {name: open(os.path.join(scratch, name), "w+b") for name in ARRAYS}

    def _append(self, arrays, size):
        for name, array in arrays.items():
            array.tofile(self._raw[name])

    def finish(self, path, info):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, (dtype, _) in ARRAYS.items():
                raw = self._raw[name]
                raw.flush()
                raw.seek(0)
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                          "fortran_order": False, "shape": self.shapes[name]}
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(member, header)
                    shutil.copyfileobj(raw, member, 1 << 24)
            with archive.open("info.npy", "w") as member:
                np.lib.format.write_array(member, np.array(json.dumps(info, sort_keys=True)),
                                          allow_pickle=False)

    def close(self):
        for raw in self._raw.values():
            raw.close()


def _csv_header(num_bidders, num_items):
    """The columns of an outcome CSV of `num_bidders` x `num_items`."""
    pairs = [f"{i}_{j}" for i in range(num_bidders) for j in range(num_items)]
    return (["profile", "menu_index"] + [f"bid_{p}" for p in pairs]
            + [f"allocation_{p}" for p in pairs] + [f"payment_{i}" for i in range(num_bidders)]
            + [f"value_{i}" for i in range(num_bidders)])


class _CsvWriter(_Writer):
    def __init__(self, text, *shape):
        super().__init__(*shape)
        _, num_bidders, num_items = self.shapes["bids"]
        self._text = text
        self._text.write(",".join(_csv_header(num_bidders, num_items)) + "\n")

    def _append(self, arrays, size):
        floats = np.concatenate([arrays[name].reshape(size, -1) for name in
                                 ("bids", "allocation", "payments", "values")], axis=1)
        self._text.writelines(
            f"{profile},{index}," + ",".join(map(repr, row)) + "\n"
            for profile, index, row in zip(range(self.written, self.written + size),
                                           arrays["menu_index"].tolist(), floats.tolist()))

    def finish(self, path, info):
        self._text.flush()

    def close(self):
        pass


@contextlib.contextmanager
def outcome_writer(path, num_samples, num_bidders, num_items, info):
    """Yields a writer whose `write(outcome)` appends the profiles of an `exact_outcome`
    dict (plus its `bids`); on leaving the block without error, with all `num_samples`
    written, the file appears at `path` (atomically, with `info` in a `.npz`). On an error
    nothing is left behind (scratch files included)."""
    from tf_ama.utils.files import atomic_file

    path = check_path("outcomes", path)
    suffix = os.path.splitext(path)[1].lower()
    shape = (num_samples, num_bidders, num_items)
    with contextlib.ExitStack() as stack:
        try:
            temporary = stack.enter_context(atomic_file(path, suffix))
            if suffix == ".npz":
                scratch = stack.enter_context(tempfile.TemporaryDirectory(
                    dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-outcomes-"))
                writer = _NpzWriter(scratch, *shape)
            else:
                text = stack.enter_context(open(temporary, "w", newline=""))
                writer = _CsvWriter(text, *shape)
        except OSError as error:
            raise OSError(error.errno, f"`outcomes`: could not write {path!r}: "
                          f"{error.strerror or error}") from error
        stack.callback(writer.close)
        yield writer
        if writer.written != num_samples:
            raise ValueError(f"`outcomes`: {writer.written} profiles written of {num_samples}.")
        writer.finish(temporary, info)
        writer.close()


def read_outcomes(path) -> dict:
    """The arrays of an outcome file (`.npz` or `.csv`), as in the module docstring; a
    `.npz` also gives `info` (a dict). Reads the whole file into memory."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    written = "not an outcome file written by tf_ama (tf-ama evaluate --outcomes)"
    if suffix == ".npz":
        with files.reading(path), np.load(path, allow_pickle=False) as archive:
            missing = sorted((set(ARRAYS) | {"info"}) - set(archive.files))
            if missing:
                raise ValueError(f"{written}: it lacks {missing}")
            arrays = {name: archive[name] for name in ARRAYS}
            arrays["info"] = files.parse_json(str(archive["info"]), "its info")
        return arrays
    if suffix != ".csv":
        raise ValueError(f"`path` must end in .npz or .csv; got {path!r}.")
    with files.reading(path):
        with open(path, encoding="utf-8") as file:
            header = file.readline(1 << 20).strip().split(",")
        num_bidders = sum(column.startswith("payment_") for column in header)
        num_items = sum(column.startswith("bid_0_") for column in header)
        if num_bidders < 1 or num_items < 1 or header != _csv_header(num_bidders, num_items):
            raise ValueError(f"{written}: its header is not one")
        indices = np.loadtxt(path, np.int64, delimiter=",", skiprows=1, usecols=(0, 1),
                             ndmin=2)
        floats = np.loadtxt(path, np.float64, delimiter=",", skiprows=1, ndmin=2,
                            usecols=range(2, len(header)))
    cells = num_bidders * num_items
    size = len(indices)
    return {"bids": floats[:, :cells].reshape(size, num_bidders, num_items),
            "menu_index": indices[:, 1],
            "allocation": floats[:, cells:2 * cells].reshape(size, num_bidders, num_items),
            "payments": floats[:, 2 * cells:2 * cells + num_bidders],
            "values": floats[:, 2 * cells + num_bidders:]}
