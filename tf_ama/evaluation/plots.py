"""Figures: the learned menu (as in the paper's Fig. 3 and 4), the item-separable family's
boosts, and training curves.

    entries = tf_ama.menu_usage(model)
    tf_ama.evaluation.plots.plot_menu(entries, model.setting, "menu.png")
    tf_ama.evaluation.plots.plot_separable_boosts(model, "separable_boosts.png")
    tf_ama.evaluation.plots.plot_training_curves("runs/a22/history.csv", "curves.png",
                                      baselines=tf_ama.baselines(setting), steps_per_epoch=100)

Figures are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
display, safe in threads and on servers) and written atomically: to a temporary file beside
`path`, then renamed over it, so a reader never sees half a PNG.

`plot_menu` records the menu indices it drew in the PNG itself (text chunk
`MENU_INDICES_KEY`, comma-separated), so a figure can be matched to `format_menu_table`:
`PIL.Image.open(path).text[MENU_INDICES_KEY]`.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tf_ama.utils import checks
from tf_ama.utils.files import atomic_file

MENU_INDICES_KEY = "tf_ama menu indices"
_COLORMAP = "Blues"


def _save_atomic(figure, path, metadata=None):
    """Writes `figure` as a PNG to `path` atomically (`files.atomic_file`)."""
    path = os.fspath(path)
    with atomic_file(path, ".png") as temporary:
        FigureCanvasAgg(figure)
        figure.savefig(temporary, format="png", dpi=110, metadata=metadata)
    return path


def plot_menu(entries, setting, path, max_entries=24):
    """Draws the menu entries actually used, most used first, and writes a PNG.

    Each entry is a `num_bidders x num_items` heat map of P(bidder i gets item j) on one
    colour scale [0, 1], values written in the cells, titled with its menu index, boost and
    share of the profiles on which it was chosen.

    Args:
      entries: `tf_ama.menu_usage(...)` output (a list of `MenuEntry`, most used first).
      setting: the `tf_ama.Setting` (for labels and the title).
      path: where to write the PNG.
      max_entries: draw at most this many entries (the first ones).

    Returns:
      `path`. The drawn indices are stored in the PNG (see `MENU_INDICES_KEY`) and equal
      `[entry.index for entry in entries[:max_entries]]`.
    """
    max_entries = checks.integer("max_entries", max_entries, minimum=1)
    entries = list(entries)
    if not entries:
        raise ValueError("`entries` is empty; pass tf_ama.menu_usage(model, ...).")
    shown = entries[:max_entries]
    num_bidders, num_items = setting.num_bidders, setting.num_items
    columns = max(1, min(len(shown), 36 // (num_items + 2), 6))
    rows = math.ceil(len(shown) / columns)
    cell = 0.55 if num_items <= 4 else 0.42
    panel_width = max(2.4, cell * num_items + 0.9)
    panel_height = max(1.6, cell * num_bidders + 1.0)
    figure = Figure(figsize=(columns * panel_width + 1.0, rows * panel_height + 0.8),
                    layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    fontsize = 9 if num_items <= 4 else 6.5
    image = None
    for axis, entry in zip(grid.flat, shown):
        allocation = np.asarray(entry.allocation, np.float64)
        image = axis.imshow(allocation, vmin=0.0, vmax=1.0, cmap=_COLORMAP, aspect="equal")
        for (bidder, item), value in np.ndenumerate(allocation):
            text = "0" if value < 5e-4 else ("1" if value > 1 - 5e-4 else f"{value:.2f}")
            axis.text(item, bidder, text, ha="center", va="center", fontsize=fontsize,
                      color="white" if value > 0.6 else "black")
        axis.set_title(f"#{entry.index}  b={entry.boost:+.3f}\nshare {_percent(entry.share)}"
                       + ("  lottery" if entry.is_lottery else ""), fontsize=8.5)
        axis.set_xticks(range(num_items), [f"{j + 1}" for j in range(num_items)], fontsize=7)
        axis.set_yticks(range(num_bidders), [f"b{i + 1}" for i in range(num_bidders)],
                        fontsize=7)
        axis.tick_params(length=0)
    for axis in list(grid.flat)[len(shown):]:
        axis.set_visible(False)
    hidden = len(entries) - len(shown)
    title = (f"{setting.name}: {len(entries)} menu entries used"
             + (f" (first {len(shown)} shown)" if hidden else "")
             + "\nrows = bidders, columns = items, cell = P(bidder gets item)")
    figure.suptitle(title, fontsize=10)
    figure.colorbar(image, ax=grid, shrink=min(0.8, 3.0 / rows + 0.2), aspect=25)
    indices = ",".join(str(entry.index) for entry in shown)
    return _save_atomic(figure, path, metadata={MENU_INDICES_KEY: indices})


def plot_separable_boosts(model, path):
    """Draws the item-separable family of `model` (a menu with the family) and writes a PNG.

    Left, its boosts `c` `[m + 1, n]` (rows the bidders, then nobody; a family allocation's
    boost is `sum_j c[owner_j, j]`). Right, what they mean item by item: the bid at which
    bidder `i` outbids "nobody" for item `j`, `(c[nobody, j] - c[i, j]) / w_i`, its reserve
    when the family's allocation is served (separate Myerson: every row at the item's
    reserve). With the bundle-size family, a third panel draws `g[owner, k]`, each owner's
    boost for holding `k` items, a line per owner.

    Returns:
      `path`.
    """
    menu = model.exact_menu()
    if menu.separable_boosts is None:
        raise ValueError(f"The menu of this model ({model.menu_layer.kind!r}) has no "
                         "item-separable family to draw.")
    c, weights = menu.separable_boosts, menu.bidder_weights
    num_bidders, num_items = model.setting.num_bidders, model.setting.num_items
    reserves = (c[-1][None, :] - c[:-1]) / weights[:, None]
    cell = 0.55 if num_items <= 5 else 0.45
    panels = 2 if menu.size_boosts is None else 3
    figure = Figure(figsize=(panels * (cell * num_items + 1.6) + 0.6,
                             cell * (num_bidders + 1) + 1.6), layout="constrained")
    left, right, *sizes = figure.subplots(1, panels)
    fontsize = 8 if num_items <= 5 else 6.5
    for axis, values, labels, title, cmap in (
            (left, c, [f"b{i + 1}" for i in range(num_bidders)] + ["nobody"],
             "boosts c[owner, item]", "RdBu"),
            (right, reserves, [f"b{i + 1}" for i in range(num_bidders)],
             "reserve of bidder i for item j\n(c[nobody, j] - c[i, j]) / w_i", _COLORMAP)):
        limit = float(np.max(np.abs(values))) or 1.0
        image = axis.imshow(values, cmap=cmap, aspect="equal",
                            vmin=-limit if cmap == "RdBu" else min(0.0, float(values.min())),
                            vmax=limit)
        for (row, item), value in np.ndenumerate(values):
            axis.text(item, row, f"{value:.2f}", ha="center", va="center", fontsize=fontsize)
        axis.set_xticks(range(num_items), [f"{j + 1}" for j in range(num_items)], fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_xlabel("item", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.tick_params(length=0)
        figure.colorbar(image, ax=axis, shrink=0.8, aspect=20)
    if sizes:
        for row, label in zip(menu.size_boosts, [f"b{i + 1}" for i in range(num_bidders)]
                              + ["nobody"]):
            sizes[0].plot(range(num_items + 1), row, marker="o", markersize=3, label=label)
        sizes[0].set_xticks(range(num_items + 1))
        sizes[0].set_xlabel("bundle size k", fontsize=8)
        sizes[0].set_title("boost per bundle size g[owner, k]", fontsize=9)
        sizes[0].tick_params(labelsize=7)
        sizes[0].legend(fontsize=6.5)
    family = "item-separable" if menu.size_boosts is None else "bundle-size"
    figure.suptitle(f"{model.setting.name}: the {family} family", fontsize=10)
    return _save_atomic(figure, path)


def _percent(share):
    """0.4587 -> '45.9%', 0.00035 -> '0.035%' (small shares keep two significant digits)."""
    return f"{share:.1%}" if share >= 0.01 or share == 0 else f"{100 * share:.2g}%"


def _read_history(history):
    """`{column: np.ndarray}` from a CSVLogger file, a Keras `History` or its `.history` dict."""
    history = getattr(history, "history", history)
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="") as file:
            rows = list(csv.DictReader(file))
        if not rows:
            raise ValueError(f"`history` file {os.fspath(history)!r} has no rows.")
        columns = {key: [row[key] for row in rows] for key in rows[0]}
    elif isinstance(history, dict):
        columns = history
    else:
        raise TypeError("`history` must be a CSV path (CSVLogger), a keras History or its "
                        f"`.history` dict; got {type(history).__name__}.")
    parsed = {}
    for key, values in columns.items():
        parsed[key] = np.array([float(v) if v not in ("", None) else np.nan for v in values])
    if "loss" not in parsed:
        raise ValueError(f"`history` has no `loss` column; got columns {sorted(parsed)}.")
    return parsed


def _baseline_revenue(value):
    """A baseline's revenue as a float; NaN when it does not apply (None in JSON)."""
    if isinstance(value, dict):
        value = value["revenue"]
    value = getattr(value, "revenue", value)
    return math.nan if value is None else float(value)


def plot_training_curves(history_csv_or_dict, path, baselines=None, steps_per_epoch=None):
    """Soft training revenue (= -loss) and exact validation revenue (`val_revenue`) over
    training, with baselines as labelled horizontal lines; writes a PNG.

    Args:
      history_csv_or_dict: the CSVLogger file (columns `epoch, loss, val_revenue`), a Keras
        `History` or its `.history` dict (`loss`, optionally `val_revenue`, one per epoch).
      path: where to write the PNG.
      baselines: optional `{name: revenue}` (floats, `BaselineResult`s or their dicts).
      steps_per_epoch: if given, the x axis is in training steps, else in epochs.

    Returns:
      `path`.
    """
    steps_per_epoch = checks.optional(checks.integer, "steps_per_epoch", steps_per_epoch,
                                      minimum=1)
    history = _read_history(history_csv_or_dict)
    epochs = history.get("epoch", np.arange(len(history["loss"])))
    if steps_per_epoch is not None:
        x, label = (np.asarray(epochs) + 1) * steps_per_epoch, "training step"
    else:
        x, label = np.asarray(epochs) + 1, "epoch"
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axis = figure.subplots()
    axis.plot(x, -history["loss"], color="tab:blue", label="soft revenue (training, = -loss)")
    validation = history.get("val_revenue")
    if validation is not None and np.any(np.isfinite(validation)):
        finite = np.isfinite(validation)
        axis.plot(x[finite], validation[finite], color="tab:red", marker="o", markersize=3,
                  label="exact revenue (validation)")
    styles = ["--", ":", "-."]
    for number, (name, value) in enumerate((baselines or {}).items()):
        revenue = _baseline_revenue(value)
        if not math.isfinite(revenue):
            continue
        axis.axhline(revenue, color="0.35", linestyle=styles[number % len(styles)], linewidth=1,
                     label=f"{name} {revenue:.4f}")
    axis.set_xlabel(label)
    axis.set_ylabel("revenue per profile")
    axis.set_title("Soft training revenue and exact validation revenue", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return _save_atomic(figure, path)
