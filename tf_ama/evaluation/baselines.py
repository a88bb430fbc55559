r"""Revenue baselines for any setting: VCG, separate Myerson and the grand bundle.

Every learned auction is judged against three strategyproof mechanisms (docs/design.md §5):

* **VCG**: the AMA with bidder weights 1, boosts 0 and the full deterministic menu. For
  additive bidders welfare is a sum over items, so VCG is exactly a second-price auction per
  item without reserve (closed form; it also covers settings such as 3x10, whose full menu of
  `4**10` allocations is too large to enumerate). For unit-demand bidders it is computed with
  `tf_ama.core.mechanism.exact_outcome` over every partial matching.
* **Separate Myerson** (additive only): a second-price auction per item with an anonymous
  reserve. When bidders are i.i.d. and regular (every built-in additive setting) this is
  Myerson's optimal auction, item by item. Unit-demand bidders could win two items in
  separate auctions, so there it does not apply (revenue NaN, with the reason).
* **Grand bundle**: a second-price auction on the bundle of all items, with a reserve. A
  bidder's bundle value is the sum of its item values (additive) or its best item value
  (unit demand).

A second-price auction with reserve `r` over values `v_1..v_m` earns, per profile,

    revenue(r) = max(second highest, r)   if highest >= r      (one bidder: r if v >= r)
                 0                        otherwise

Reserves are searched numerically on an independent sample (`tf_ama.data.reserves`).

    from tf_ama.evaluation.baselines import baseline_details, format_table

    details = baseline_details("additive_2x2_uniform")
    print(format_table(details))
    tf_ama.baselines("additive_2x2_uniform")   # {"vcg": 0.667, ...}

All arithmetic is float64 NumPy on valuations drawn block by block by
`tf_ama.data.settings.sample_blocks` (stateless seeds; the profiles `tf_ama.evaluate` uses), in
bounded memory: a few `[num_samples]` float64 arrays (per-profile revenues, the tops of the
reserve search), never `[num_samples, m, n]`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from tf_ama.core import mechanism
from tf_ama.core.allocations import (MAX_DETERMINISTIC_MENU, deterministic_allocations,
                                     deterministic_menu_size)
from tf_ama.data import reserves
from tf_ama.data.settings import evaluation_sample
from tf_ama.utils import checks, seeds
from tf_ama.utils.progress import Progress

BASELINES = ("vcg", "separate_myerson", "grand_bundle")


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """The revenue of one baseline mechanism in one setting.

    Attributes:
      name: `"vcg"`, `"separate_myerson"` or `"grand_bundle"`.
      revenue: mean revenue per valuation profile; NaN when the baseline does not apply.
      stderr: standard error of `revenue` (std of per-profile revenue / sqrt(N)).
      reserve: the reserve used: a float (grand bundle), one float per item (separate
        Myerson), or None (VCG, or not applicable).
      method: one sentence on how the number was computed (and the reserve found), or why
        the baseline does not apply.
    """

    name: str
    revenue: float
    stderr: float
    reserve: float | list | None
    method: str

    def __post_init__(self):
        checks.string("name", self.name)
        checks.string("method", self.method)
        for field in ("revenue", "stderr"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise ValueError(f"`{field}` must be a float (NaN if not applicable); got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values; NaN becomes None so the dict is strict JSON."""
        def clean(value):
            return None if value is None or math.isnan(value) else float(value)

        reserve = self.reserve
        if isinstance(reserve, (list, tuple, np.ndarray)):
            reserve = [clean(r) for r in reserve]
        elif reserve is not None:
            reserve = clean(reserve)
        return {
            "name": self.name,
            "revenue": clean(self.revenue),
            "stderr": clean(self.stderr),
            "reserve": reserve,
            "method": self.method,
        }


# ----------------------------------------------------------------------------------------
# Per-profile revenues (float64 NumPy; `values` is [batch, num_bidders] for one good).


def second_price_revenues(values, reserve=0.0):
    """Revenue `[batch]` of a second-price auction with `reserve` on `values` `[batch, m]`."""
    top, second = reserves.top_two(values)
    return np.where(top >= reserve, np.maximum(second, reserve), 0.0)


def vcg_revenues(valuations, demand, max_menu_size=MAX_DETERMINISTIC_MENU):
    """VCG revenue `[batch]` for valuations `[batch, num_bidders, num_items]`.

    Additive: sum over items of the second-highest value (a second-price auction per item,
    exactly VCG with the full deterministic menu). Unit demand: `exact_outcome` with every
    partial matching, weights 1, boosts 0 (raises ValueError if that menu is too large).
    """
    valuations = np.asarray(valuations, np.float64)
    _, num_bidders, num_items = valuations.shape
    if demand == "additive":
        if num_bidders == 1:
            return np.zeros(valuations.shape[0])
        second = np.partition(valuations, num_bidders - 2, axis=1)[:, -2, :]
        return second.sum(axis=1)
    allocations = deterministic_allocations(num_bidders, num_items, demand, max_menu_size)
    outcome = mechanism.exact_outcome(
        valuations, allocations, np.zeros(len(allocations)), np.ones(num_bidders)
    )
    return outcome["payments"].numpy().sum(axis=1)


# ----------------------------------------------------------------------------------------
# Reserve search.


# ----------------------------------------------------------------------------------------
# Sampling and the baselines.


def _mean_and_stderr(revenues):
    """Mean and standard error of per-profile `revenues` `[N]`."""
    if len(revenues) < 2:
        return float(revenues.mean()), float("nan")
    return float(revenues.mean()), float(revenues.std(ddof=1) / math.sqrt(len(revenues)))


def baseline_details(setting, num_samples=None, seed=1, *,
                     progress=False) -> dict[str, BaselineResult]:
    """VCG, separate Myerson and grand-bundle revenue in `setting`, with how each was found.

    Args:
      setting: a `tf_ama.Setting` or the name of a built-in one.
      num_samples: valuation profiles to evaluate on (and, independently, to search the
        reserves on); default 100 000. A setting made from data (`tf_ama.data.empirical`) is
        evaluated on every row of its test split (`settings.evaluation_sample`; leave
        `num_samples` out), its reserves searched on as many profiles resampled from its
        train rows.
      seed: int; evaluation profiles are `tf_ama.data.settings.sample_blocks(setting,
        num_samples, seed)` (the profiles `tf_ama.evaluate` uses; up to 279 620 3x10
        profiles exactly `setting.sample(num_samples, seed)`), reserve-search profiles use
        `tf_ama.utils.seeds.reserve_seed(seed)`.
      progress: show a progress bar on standard error (`tf_ama.utils.progress`), counting the
        profiles drawn by every pass (the reserve search draws its sample again for each
        group of items when `num_samples` is large).

    Returns:
      `{"vcg": BaselineResult, "separate_myerson": ..., "grand_bundle": ...}`. A baseline that
      does not apply (separate Myerson for unit demand; VCG whose matching menu is too large)
      has revenue NaN and says why in `method`.
    """
    setting = reserves.resolve_setting(setting)
    num_samples, seed = reserves.check_arguments(num_samples, seed)
    num_samples, profiles = evaluation_sample(setting, num_samples, seed)
    additive = setting.demand == "additive"
    reserve_seed = seeds.reserve_seed(seed)

    passes = len(reserves.item_groups(setting, num_samples, additive)) + 1
    progress = Progress(num_samples * passes, "profile", checks.boolean("progress", progress),
                        f"Baselines of {setting.name}: {passes} passes over {num_samples:,} "
                        "profiles (reserve search, then revenue)")
    item_reserves, bundle_reserve = reserves.search_reserves(setting, num_samples, reserve_seed, additive,
                                              progress)

    vcg_menu_size = deterministic_menu_size(
        setting.num_bidders, setting.num_items, setting.demand)
    vcg_applies = additive or vcg_menu_size <= MAX_DETERMINISTIC_MENU
    # Per-profile revenues, [N] float64 each (80 MB at 10^7 profiles), filled block by block.
    vcg = np.empty(num_samples if vcg_applies else 0)
    myerson = np.empty(num_samples if additive else 0)
    grand = np.empty(num_samples)
    start = 0
    for valuations in profiles:
        end = start + len(valuations)
        if vcg_applies:
            vcg[start:end] = vcg_revenues(valuations, setting.demand)
        if additive:
            per_item = [
                second_price_revenues(valuations[:, :, j], reserve)
                for j, reserve in enumerate(item_reserves)
            ]
            myerson[start:end] = np.sum(per_item, axis=0)
        grand[start:end] = second_price_revenues(reserves.bundle_values(valuations, setting.demand),
                                                 bundle_reserve)
        start = end
        progress.add(len(valuations))

    on = f"on {num_samples:,} profiles (seed {seed})"
    search = (
        f"maximizing the exact empirical revenue on {num_samples:,} independent profiles "
        f"(seed {reserve_seed}): a grid of {reserves.COARSE_POINTS} points on [0, max] and "
        f"{reserves.COARSE_POINTS} quantiles of the highest value, a {reserves.FINE_POINTS}-point grid around "
        "the best, then a snap up to the next sampled highest value"
    )
    results = {}
    if not vcg_applies:
        results["vcg"] = BaselineResult(
            "vcg", float("nan"), float("nan"), None,
            f"Not computed: VCG for unit demand runs exact_outcome over every partial matching, "
            f"and this setting has {vcg_menu_size:,} of them "
            f"(more than {MAX_DETERMINISTIC_MENU:,}).",
        )
    elif additive:
        results["vcg"] = BaselineResult(
            "vcg", *_mean_and_stderr(vcg), None,
            "VCG (weights 1, boosts 0, full deterministic menu), which for additive bidders is "
            f"exactly a second-price auction per item without reserve, in closed form {on}.",
        )
    else:
        results["vcg"] = BaselineResult(
            "vcg", *_mean_and_stderr(vcg), None,
            f"VCG through tf_ama.core.mechanism.exact_outcome with all {vcg_menu_size} partial "
            f"matchings as the menu, weights 1 and boosts 0, {on}.",
        )
    if additive:
        caveat = "" if setting.symmetric else (
            " Bidders are not declared i.i.d. here (symmetric=False), so this is the best "
            "anonymous-reserve auction, not necessarily Myerson's optimum.")
        results["separate_myerson"] = BaselineResult(
            "separate_myerson", *_mean_and_stderr(myerson), item_reserves,
            "Second-price auction per item with an anonymous reserve per item (Myerson's "
            f"optimal auction for i.i.d. regular bidders), each reserve found by {search}; "
            f"revenue {on}.{caveat}",
        )
    else:
        results["separate_myerson"] = BaselineResult(
            "separate_myerson", float("nan"), float("nan"), None,
            "Not applicable to unit demand: separate per-item auctions could give one bidder "
            "two items, which a unit-demand allocation forbids.",
        )
    bundle_value = "the sum of its item values" if additive else "its best item value, unit demand"
    results["grand_bundle"] = BaselineResult(
        "grand_bundle", *_mean_and_stderr(grand), bundle_reserve,
        f"Second-price auction on the grand bundle (a bidder's value is {bundle_value}) with "
        f"a reserve found by {search}; revenue {on}.",
    )
    return results


def baselines(setting, num_samples=None, seed=1) -> dict[str, float]:
    """Baseline revenues `{"vcg": .., "separate_myerson": .., "grand_bundle": ..}`.

    See `baseline_details` for the arguments and how each number is computed.
    """
    return {
        name: result.revenue
        for name, result in baseline_details(setting, num_samples, seed).items()
    }


def _format_reserve(reserve):
    if reserve is None:
        return "-"
    if isinstance(reserve, (list, tuple, np.ndarray)):
        if len(reserve) <= 4:
            return "[" + ", ".join(f"{r:.4g}" for r in reserve) + "]"
        return f"{min(reserve):.4g}..{max(reserve):.4g} ({len(reserve)} items)"
    return f"{reserve:.4g}"


def format_table(details: dict[str, BaselineResult]) -> str:
    """A plain-text table of `baseline_details` output: name, revenue ± stderr, reserve, method."""
    rows = [("baseline", "revenue", "reserve", "method")]
    for name, result in details.items():
        if math.isnan(result.revenue):
            revenue = "n/a"
        else:
            revenue = f"{result.revenue:.4f} ± {result.stderr:.4f}"
        rows.append((name, revenue, _format_reserve(result.reserve), result.method))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[column].ljust(widths[column]) for column in range(3)] + [row[3]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 6)
    return "\n".join(lines)
