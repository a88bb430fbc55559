"""Valuations from data: a file of valuation profiles as a setting's prior.

    setting = tf_ama.empirical_setting("additive_3x10_uniform", "bids.csv")
    model = tf_ama.train_run(setting, "runs/bids")       # or: tf-ama train ... --valuations

How the file is read, checked and split into train, validation and test rows:
`tf_ama.data.data_files`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from tf_ama.data import data_files
from tf_ama.data.settings import get_setting
from tf_ama.utils import checks
from tf_ama.utils.files import atomic_file


def empirical_setting(setting, source, validation_fraction=0.1, test_fraction=0.1,
                      split_seed=0, name=None, save_as=None):
    """`setting` (bidders, items, demand; a name or a `Setting`) with the valuation profiles
    of `source` as its prior (module docstring).

    Args:
      source: a file path (`FORMATS`), or any `tf.data.Dataset` of profiles `[m, n]` (or of
        batches `[b, m, n]`) or array `[N, m, n]`, which is first written to `save_as` (an
        `.npy` path), so that the provenance names a file holding the very rows used.
      validation_fraction, test_fraction: the expected shares of the rows held out for
        validation and for the final evaluation (each > 0, together < 1).
      split_seed: seeds the partition into splits.
      name: the new setting's name (default: the file's name without extension).
    """
    setting = get_setting(setting)
    if not isinstance(source, (str, os.PathLike)):
        if save_as is None:
            raise ValueError("`save_as`: give an .npy path to write the rows of a dataset or "
                             "array to (the setting records that file as its data).")
        source = save_valuations(source, save_as, setting.num_bidders, setting.num_items)
    elif save_as is not None:
        raise ValueError("`save_as` is for a dataset or array `source`; a file is read in place.")
    path = data_files.checked_path(source)
    validation_fraction, test_fraction = data_files.checked_fractions(validation_fraction, test_fraction)
    split_seed = checks.seed("split_seed", split_seed)
    rows = {split: 0 for split in data_files.SPLITS}
    for block, codes in data_files.assign_splits(path, setting.num_bidders, setting.num_items,
                                      split_seed, validation_fraction, test_fraction):
        for code, split in enumerate(data_files.SPLITS):
            rows[split] += int(np.count_nonzero(codes == code))
    empty = [split for split in data_files.SPLITS if rows[split] == 0]
    if empty:
        raise ValueError(f"`valuations` {path}: {sum(rows.values())} rows leave the "
                         f"{' and '.join(empty)} split(s) empty; give more rows or larger "
                         "fractions.")
    params = {"path": path, "sha256": data_files.file_sha256(path),
              "format": os.path.splitext(path)[1].lower(),
              "rows": rows, "split_seed": split_seed,
              "validation_fraction": validation_fraction, "test_fraction": test_fraction}
    name = os.path.splitext(os.path.basename(path))[0] if name is None else name
    return dataclasses.replace(setting, name=checks.string("name", name),
                               distribution="empirical", distribution_params=params)


def save_valuations(source, path, num_bidders, num_items):
    """Writes the profiles of `source` (a `tf.data.Dataset` of `[m, n]` profiles or `[b, m,
    n]` batches, or an array) to the `.npy` file `path` as float64, block by block (bounded
    memory) and atomically; returns `path`."""
    if os.path.splitext(os.fspath(path))[1] != ".npy":
        raise ValueError(f"`save_as` must end in .npy; got {path!r}.")
    if os.path.exists(path):  # a run may have recorded its hash: never replaced
        raise ValueError(f"`save_as` {os.fspath(path)!r} exists; give a new path (or read it "
                         "as the source).")
    shape = [num_bidders, num_items]
    blocks = source.as_numpy_iterator() if hasattr(source, "as_numpy_iterator") else [source]
    count = 0
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # The rows go to an anonymous file first: the .npy header needs their count.
    with atomic_file(path, ".npy") as temporary, tempfile.TemporaryFile(dir=directory) as data:
        for block in blocks:
            block = np.asarray(block)
            if list(block.shape[-2:]) != shape or block.ndim not in (2, 3):
                raise ValueError(f"`source`: elements must be profiles {shape} or batches "
                                 f"[b, {num_bidders}, {num_items}]; got shape "
                                 f"{list(block.shape)}.")
            data_files.check_dtype("(the source)", block.dtype)
            data_files.check_exact_integers("(the source)", block, count)
            block = block.reshape(-1, *shape).astype(np.float64)
            data_files.check_values("(the source)", block, count, None)
            data.write(block.tobytes())
            count += len(block)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)),
                  "fortran_order": False, "shape": (count, *shape)}
        data.seek(0)
        with open(temporary, "wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
            for piece in iter(lambda: data.read(1 << 20), b""):
                file.write(piece)
    return os.fspath(path)
