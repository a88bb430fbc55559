"""A run's `history.csv` (Keras' CSVLogger), kept consistent with its checkpoints: rows of
epochs a resumed run trains again are dropped (`trim_history`), and a run that continues a
restart starts from that restart's rows (`copy_history`)."""

from __future__ import annotations

import csv
import os

from tf_ama.utils import files


def trim_history(path, epoch):
    """Keeps the rows of `history.csv` for the epochs before `epoch`, where training resumes.

    CSVLogger appends a row at each epoch end, before the checkpoint that makes the epoch
    final; a run killed in between wrote a row that the resumed run writes again. Rows of
    later epochs and a row cut by a kill are dropped (atomically); a fresh start removes it.
    """
    if not os.path.exists(path):
        return
    if epoch == 0:
        os.remove(path)
        return
    with open(path, newline="") as file:
        lines = file.read().splitlines(keepends=True)
    if not lines or not lines[0].endswith("\n"):
        os.remove(path)  # not even a complete header
        return
    header = next(csv.reader([lines[0]]))
    column = header.index("epoch") if "epoch" in header else 0
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if (line.endswith("\n") and len(row) == len(header) and row[column].isdigit()
                and int(row[column]) < epoch):
            kept.append(line)
    if kept != lines:
        with files.atomic_file(path, ".csv") as temporary, open(temporary, "w", newline="") as file:
            file.writelines(kept)


def copy_history(source, target, added):
    """Writes the rows of `source` (a history.csv) to `target` with the columns `added`
    (name: value) where they lack them, in the order of CSVLogger's columns (epoch, then the logs' keys sorted),
    which then appends the next epochs' rows under the same header."""
    with open(source, newline="") as file:
        rows = [{**added, **row} for row in csv.DictReader(file)]
    columns = ["epoch", *sorted({key for row in rows for key in row} - {"epoch"})]
    with files.atomic_file(target, ".csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
