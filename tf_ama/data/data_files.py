"""Data files of valuation profiles: reading, checking, splitting, and the prior they give.

A setting made from data (`tf_ama.data.empirical.empirical_setting`) has `distribution`
"empirical" and the file's provenance as `distribution_params`; this module reads its rows.

The file is read in blocks (never whole), checked (finite, >= 0, `num_bidders * num_items`
values per profile) and hashed; each row is assigned once to a split by a hash of
(`split_seed`, row number), so the split is a fixed, seeded random partition that does not
depend on how the file is read:

    train       the prior: `setting.sample(n, seed)` draws n training rows uniformly with
                replacement (a bootstrap; `tfd.Empirical`), so training batches, reserve
                searches and recipes use the training rows only;
    validation  the epoch-end validation, the choices of a run (start or trained, restarts,
                a join's shift, the polish's check): all of its rows, held in memory;
    test        the final exact evaluation and the baselines' revenue (`evaluation_blocks`),
                read in blocks: reported as held-out revenue.

The setting's `distribution` is `"empirical"` and its `distribution_params` are the data's
provenance: absolute path, SHA-256, format, rows per split, the split's seed and fractions.
They go into the run's config and the exported model's JSON; a file changed since is refused
(the hash is checked whenever the rows are read). Only the training rows are held in memory
(as one float32 tensor, 4 bytes per value, for the bootstrap); everything else streams.

Formats: `.npy` (`[N, m, n]` or `[N, m * n]`, memory-mapped), `.npz` (one array, or the one
named `valuations`; loaded whole, as NumPy cannot map a zip member), `.csv` (one row per
profile, bidder-major: bidder 0's values for items 0..n-1, then bidder 1's, ...; an optional
header line). Parquet is not read: it would need pyarrow, which nothing else here uses;
convert with `pandas.read_parquet(path).to_numpy()` and `numpy.save`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import os
import re

import numpy as np

from tf_ama.core.exactness import MAX_EXACT_INTEGER
from tf_ama.utils import checks, files

FORMATS = (".npy", ".npz", ".csv")
SPLITS = ("train", "validation", "test")
BLOCK_ROWS = 1 << 16  # profiles per block read
MAX_VALUE = float(np.finfo(np.float32).max)  # training draws the train rows as float32
_PARAMS = ("path", "sha256", "format", "rows", "split_seed", "validation_fraction",
           "test_fraction")
_cache: dict = {}  # (path, sha256, split) -> rows of a split, float64 (train and validation)
_hashes: dict = {}  # (path, size, mtime_ns) -> sha256, so that a file is hashed once per process


def is_empirical(setting) -> bool:
    return setting.distribution == "empirical"


def check_params(params):
    """Refuses `distribution_params` that are not an `empirical_setting`'s (without reading
    the file: a model trained on data loads where the data is not)."""
    missing = [key for key in _PARAMS if key not in params]
    unknown = sorted(set(params) - set(_PARAMS))
    if missing or unknown:
        raise ValueError(
            f"`distribution_params` of an 'empirical' setting must have exactly the fields "
            f"{list(_PARAMS)}; missing {missing}, unknown {unknown}. Make one with "
            "tf_ama.empirical_setting(setting, path) (tf-ama train ... --valuations FILE).")
    if not isinstance(params["rows"], dict) or set(params["rows"]) != set(SPLITS):
        raise ValueError(f"`distribution_params.rows` must give the rows of each split "
                         f"{list(SPLITS)}; got {params['rows']!r}.")
    for split in SPLITS:
        checks.integer(f"distribution_params.rows.{split}", params["rows"][split], minimum=1)
    checked_fractions(params["validation_fraction"], params["test_fraction"])
    checks.seed("distribution_params.split_seed", params["split_seed"])


def checked_fractions(validation_fraction, test_fraction):
    validation_fraction = checks.number("validation_fraction", validation_fraction, above=0)
    test_fraction = checks.number("test_fraction", test_fraction, above=0)
    if validation_fraction + test_fraction >= 1:
        raise ValueError(f"`validation_fraction` + `test_fraction` must be < 1 (some rows must "
                         f"be left to train on); got {validation_fraction} + {test_fraction}.")
    return validation_fraction, test_fraction


def distribution(num_bidders, num_items, dtype=None, **params):
    """The bootstrap prior: `tfd.Empirical` over the training rows (the `"empirical"`
    family of `tf_ama.data.distributions`)."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    check_params(params)
    rows = split_rows(params, num_bidders, num_items, "train")
    return tfp.distributions.Empirical(tf.constant(rows, dtype or tf.float32), event_ndims=2,
                                       name="EmpiricalValuations")


def split_rows(params, num_bidders, num_items, split):
    """The rows of `split` ("train" or "validation"), float64 `[rows, m, n]`, read once per
    process (the file's hash checked)."""
    key = (params["path"], params["sha256"], params["split_seed"],
           params["validation_fraction"], params["test_fraction"], split)
    if key not in _cache:
        _cache[key] = np.concatenate(list(split_blocks(params, num_bidders, num_items, split)))
    return _cache[key]


def split_blocks(params, num_bidders, num_items, split):
    """Yields the rows of `split` of the data in `params`, in file order, float64 blocks
    `[b, m, n]` (b <= BLOCK_ROWS, some possibly empty), after checking that the file is the
    one recorded."""
    checks.choice("split", split, SPLITS)
    path = params["path"]
    if not os.path.isfile(path):
        raise ValueError(f"The valuations of this setting were read from {path}, which no "
                         "longer exists; put the file back (its SHA-256 is in the setting's "
                         "distribution_params) or train on another with --valuations.")
    if file_sha256(path) != params["sha256"]:
        raise ValueError(f"{path} has changed since this setting was made from it (SHA-256 "
                         f"{params['sha256'][:12]}..., now {file_sha256(path)[:12]}...); "
                         "restore it, or train a new run on the new file.")
    code, count = SPLITS.index(split), 0
    for block, codes in assign_splits(path, num_bidders, num_items, params["split_seed"],
                                      params["validation_fraction"], params["test_fraction"]):
        count += int(np.count_nonzero(codes == code))
        if count > params["rows"][split]:
            break
        yield block[codes == code]
    if count != params["rows"][split]:
        found = f"more than {params['rows'][split]:,}" if count > params["rows"][split] else (
            f"{count:,}")
        raise ValueError(f"{path}: the {split} split has {found} rows, not the "
                         f"{params['rows'][split]:,} this setting records; make the setting "
                         "again from the file (tf_ama.empirical_setting, --valuations).")


def assign_splits(path, num_bidders, num_items, seed, validation_fraction, test_fraction):
    """Yields `(block, codes)`: checked float64 blocks of the file and each row's split
    (index into SPLITS), from a hash of (seed, row number)."""
    start = 0
    for block in read_blocks(path, num_bidders, num_items):
        uniform = _row_uniforms(seed, np.arange(start, start + len(block), dtype=np.uint64))
        codes = np.where(uniform < test_fraction, 2,
                         np.where(uniform < test_fraction + validation_fraction, 1, 0))
        start += len(block)
        yield block, codes


def _row_uniforms(seed, rows):
    """A uniform in [0, 1) per row number: SplitMix64 of (seed << 32) + row, its top 53 bits."""
    with np.errstate(over="ignore"):
        z = rows + np.uint64(seed << 32) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def read_blocks(path, num_bidders, num_items, block_rows=BLOCK_ROWS):
    """Yields the file's profiles as float64 blocks `[b, num_bidders, num_items]`, each
    checked: a bad value is refused with its row (and line, for CSV) and the fix."""
    path = checked_path(path)
    num_bidders = checks.integer("num_bidders", num_bidders, minimum=1)
    num_items = checks.integer("num_items", num_items, minimum=1)
    block_rows = checks.integer("block_rows", block_rows, minimum=1)
    width = num_bidders * num_items
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        blocks = _csv_blocks(path, width, block_rows)
    else:
        array = _numpy_array(path, extension)
        shape = list(array.shape)
        if not (array.ndim == 2 and shape[1] == width or
                array.ndim == 3 and shape[1:] == [num_bidders, num_items]):
            raise ValueError(
                f"`valuations` {path}: the array has shape {shape}; it must be [profiles, "
                f"{num_bidders}, {num_items}] or [profiles, {width}] (bidders x items of the "
                "setting, bidder-major).")
        check_dtype(path, array.dtype)
        blocks = ((start, array[start:start + block_rows], None)
                  for start in range(0, len(array), block_rows))
    total = 0
    for start, block, lines in blocks:
        with files.reading(f"`valuations` {path}"):  # a memory map of a truncated file
            block = np.array(block)
        check_exact_integers(path, block, start)
        block = block.astype(np.float64).reshape(-1, num_bidders, num_items)
        check_values(path, block, start, lines)
        total += len(block)
        yield block
    if total == 0:
        raise ValueError(f"`valuations` {path} holds no profiles.")


def checked_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`valuations` must be a file path; got {type(path).__name__}.")
    path = os.path.abspath(os.fspath(path))
    extension = os.path.splitext(path)[1].lower()
    if extension == ".parquet":
        raise ValueError(f"`valuations` {path}: Parquet is not read (it would need pyarrow); "
                         "convert it: numpy.save('bids.npy', pandas.read_parquet(path).to_numpy()).")
    if extension not in FORMATS:
        raise ValueError(f"`valuations` {path}: unknown format {extension!r}; give one of "
                         f"{', '.join(FORMATS)}.")
    if os.path.isdir(path):
        raise ValueError(f"`valuations` {path} is a directory; give a data file in it.")
    if not os.path.exists(path):
        raise ValueError(f"`valuations` {path} does not exist.")
    if not os.path.isfile(path):  # a pipe or a device would be read without end
        raise ValueError(f"`valuations` {path} is not a regular file; save the data to one.")
    return path


def _numpy_array(path, extension):
    """The array of an .npy file (memory-mapped) or the one array of an .npz file."""
    reading = functools.partial(files.reading, f"`valuations` {path} is not a readable "
                                f"{extension} file", "Write it with numpy.save (or numpy.savez).")
    with reading():  # not NumPy's format, truncated, pickled, a damaged zip
        loaded = np.load(path, mmap_mode="r" if extension == ".npy" else None,
                         allow_pickle=False)
    if isinstance(loaded, np.ndarray) != (extension == ".npy"):
        kind = ".npy" if isinstance(loaded, np.ndarray) else ".npz"
        if kind == ".npz":
            loaded.close()
        raise ValueError(f"`valuations` {path}: the file is in the {kind} format; name it "
                         f"{kind}.")
    if extension == ".npy":
        return loaded
    with loaded as archive:
        members, names = archive.zip.namelist(), archive.files
        if len(set(members)) != len(members):
            raise ValueError(f"`valuations` {path}: the archive holds a member name twice "
                             f"({members}); which one is meant is unclear.")
        if len(names) != 1 and "valuations" not in names:
            raise ValueError(f"`valuations` {path}: an .npz must hold one array or one named "
                             f"'valuations'; it holds {names}.")
        name = "valuations" if "valuations" in names else names[0]
        with reading():
            array = archive[name]
    if not isinstance(array, np.ndarray):
        raise ValueError(f"`valuations` {path}: its member {name!r} is not a NumPy array "
                         "(.npy).")
    return array


def check_dtype(path, dtype):
    """Refuses arrays whose values are not plain real numbers: booleans, complex numbers,
    dates and durations (NumPy counts timedelta64 as an integer), objects, strings, and
    floats wider than float64 (they would be rounded)."""
    if not (dtype.kind in "iu" or dtype.kind == "f" and dtype.itemsize <= 8):
        raise ValueError(f"`valuations` {path}: values must be real numbers (float16, float32, "
                         f"float64 or integers); the array's dtype is {dtype}. Convert it, "
                         "e.g. numpy.save(path, array.astype(numpy.float64)), if that is what "
                         "the values mean.")


def check_exact_integers(path, block, start):
    """Refuses integers that float64 cannot hold exactly (they would be rounded)."""
    if block.dtype.kind in "iu" and block.size:
        too_large = block.reshape(len(block), -1) > MAX_EXACT_INTEGER  # negatives: later
        if too_large.any():
            row = int(np.argwhere(too_large.any(axis=1))[0, 0])
            _refuse_integer(f"{path} profile {start + row}",
                            block.reshape(len(block), -1)[row][too_large[row]][0])


def _refuse_integer(where, value):
    raise ValueError(f"`valuations` {where}: the integer {value} is beyond 2**53, where "
                     "float64 (the dtype of bids) would round it; give values of at most "
                     "2**53.")


def _csv_blocks(path, width, block_rows):
    """`(first row, block, line numbers)` of a CSV file: one profile per line (fields may be
    quoted), an optional header line (a first line that is not all numbers), blank lines
    skipped; UTF-8, with or without a byte-order mark (bytes that are not UTF-8 are refused
    with their line, by `_parse_csv`)."""
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
        reader = csv.reader(file)
        rows = ((number, fields) for number, fields in enumerate(reader, start=1)
                if any(field.strip() for field in fields))
        # What the csv module refuses (a field beyond its limit: no number is that long) is
        # refused with the line reached.
        parsing = functools.partial(files.reading, lambda: f"`valuations` {path} line "
                                    f"{reader.line_num}", "Save the file as CSV: numbers "
                                    "separated by commas, one profile per line.")
        with parsing():
            first = next(rows, None)
        header = None
        if first is not None and not _is_numeric_row(first[1]):
            header = _check_text(path, *first)
            first = None
        rows = itertools.chain([first] if first is not None else [], rows)
        start = 0
        while True:
            with parsing():
                chunk = list(itertools.islice(rows, block_rows))
            if not chunk:
                if start == 0 and header is not None:
                    raise ValueError(f"`valuations` {path} holds no profiles: its one line, "
                                     f"{header[:80]!r}, is not all numbers, so it is read as a "
                                     "header (numbers are separated by commas).")
                return
            numbers = np.array([number for number, _ in chunk])
            yield start, _parse_csv(path, chunk, width), numbers
            start += len(chunk)


def _is_numeric_row(fields):
    try:
        [float(field) for field in fields]
    except ValueError:
        return False
    return True


def _check_text(path, number, fields):
    """Refuses a line with bytes that are not UTF-8 (read as lone surrogates) or that holds
    a line break (a quote left open)."""
    text = ",".join(fields)
    if any("\udc80" <= character <= "\udcff" for character in text):
        raise ValueError(f"`valuations` {path} line {number}: not UTF-8 text; save the file "
                         "as UTF-8.")
    if "\n" in text or "\r" in text:
        raise ValueError(f"`valuations` {path} line {number}: a quote opened on this line is "
                         "not closed before the next; remove it.")
    return text


def _parse_csv(path, chunk, width):
    values = []
    for number, fields in chunk:
        text = _check_text(path, number, fields)
        if len(fields) != width:
            raise ValueError(f"`valuations` {path} line {number}: {len(fields)} values; every "
                             f"row must hold num_bidders x num_items = {width} (bidder-major).")
        try:
            # ASCII decimals only: Python's float also reads 1_000 and other scripts' digits.
            if not text.isascii() or "_" in text:
                raise ValueError
            values.append([float(field) for field in fields])
        except ValueError:
            raise ValueError(f"`valuations` {path} line {number}: not a number in "
                             f"{','.join(fields)!r}.") from None
        for field in fields:  # an integer beyond 2**53 would be rounded, as in an .npy
            if _INTEGER.fullmatch(field.strip()) and abs(int(field)) > MAX_EXACT_INTEGER:
                _refuse_integer(f"{path} line {number}", field.strip())
    return np.asarray(values, np.float64)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def check_values(path, block, start, lines):
    """Refuses a block with a value that is not finite, negative, or beyond float32 (the
    dtype training draws in), or a profile whose values add up beyond float32 (training
    adds them up in welfares), naming its profile (or CSV line: `lines`)."""
    flat = block.reshape(len(block), -1)
    bad = ~np.isfinite(flat) | (flat < 0) | (flat > MAX_VALUE)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.where(bad, 0.0, flat).sum(axis=1)
    rows = bad.any(axis=1) | (total > MAX_VALUE)
    if rows.any():
        row = int(np.argwhere(rows)[0, 0])
        where = f"profile {start + row}" if lines is None else f"line {lines[row]}"
        raise ValueError(f"`valuations` {path} {where}: values must be finite, >= 0 and add up "
                         f"to at most {MAX_VALUE:.4g} per profile (float32, the dtype training "
                         f"computes in); got {flat[row].tolist()}. Remove or fix the row, or "
                         "scale all values down.")


def file_sha256(path):
    """The SHA-256 of a file's bytes (read in 1 MiB pieces; once per process per version)."""
    status = os.stat(path)
    key = (path, status.st_size, status.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for piece in iter(lambda: file.read(1 << 20), b""):
                digest.update(piece)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
