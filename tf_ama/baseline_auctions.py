r"""Revenue baselines for any setting: VCG, separate Myerson and the grand bundle.

Every learned auction is judged against three strategyproof mechanisms (docs/design.md §5):

* **VCG**: the AMA with bidder weights 1, boosts 0 and the full deterministic menu. For
  additive bidders welfare is a sum over items, so VCG is exactly a second-price auction per
  item without reserve (closed form; it also covers settings such as 3x10, whose full menu of
  `4**10` allocations is too large to enumerate). For unit-demand bidders it is computed with
  `tf_ama.mechanism.exact_outcome` over every partial matching.
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

Reserves are never taken from a formula: each is found numerically for the setting's own
distribution, by maximizing the empirical revenue on an *independent* sample (seed
`seed + RESERVE_SEED_OFFSET`), so the reported revenue, measured on the evaluation sample
(seed `seed`), is an unbiased estimate for that reserve. The empirical revenue is
piecewise linear in `r`, so it is evaluated exactly on many reserves at once from sorted
top values (`revenue_curve`): a coarse grid (101 evenly spaced points on `[0, max]` and 101
quantiles of the highest value), a 201-point grid between the neighbours of the best coarse
point, then a snap up to the next sampled highest value (between two sampled highest values
the empirical revenue only rises, so this can only gain; it lands exactly on an atom of a
discrete distribution). The reserve's own error is statistical, of order `N**(-1/3)` (an
argmax of a noisy, flat curve), not the grid's.

    from tf_ama.baseline_auctions import baseline_details, format_table

    details = baseline_details("additive_2x2_uniform")
    print(format_table(details))
    tf_ama.baselines("additive_2x2_uniform")   # {"vcg": 0.667, ...}

All arithmetic is float64 NumPy on valuations drawn block by block by
`tf_ama.settings.sample_blocks` (stateless seeds; the profiles `tf_ama.evaluate` uses), in
bounded memory: a few `[num_samples]` float64 arrays (per-profile revenues, the tops of the
reserve search), never `[num_samples, m, n]`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from tf_ama import checks, mechanism, menus
from tf_ama.progress import Progress
from tf_ama.settings import Setting, evaluation_sample, get_setting, sample_blocks

BASELINES = ("vcg", "separate_myerson", "grand_bundle")
# The reserve-search sample is drawn with seed `seed + RESERVE_SEED_OFFSET`.
RESERVE_SEED_OFFSET = 1_000_003
# Item tops kept at once by the reserve search (top and second, float64: 2 x 128 MB): with
# more profiles x items than this, the reserve sample is drawn again for each group of items.
_RESERVE_TOPS_ELEMENTS = 1 << 24
# The most values a reserve search draws (its sample, drawn again per group of items):
# about an hour at the ~1e7 values per second drawn on a 2-core CPU; 5x10 at 100 000
# profiles draws 5e6.
MAX_RESERVE_DRAWS = 1 << 35
_COARSE_POINTS = 101
_FINE_POINTS = 201


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


def top_two(values):
    """Highest and second-highest of `values` `[batch, num_bidders]` (second = 0 for one bidder)."""
    values = np.asarray(values, np.float64)
    if values.shape[1] == 1:
        return values[:, 0], np.zeros(values.shape[0])
    ordered = np.partition(values, values.shape[1] - 2, axis=1)
    return ordered[:, -1], ordered[:, -2]


def second_price_revenues(values, reserve=0.0):
    """Revenue `[batch]` of a second-price auction with `reserve` on `values` `[batch, m]`."""
    top, second = top_two(values)
    return np.where(top >= reserve, np.maximum(second, reserve), 0.0)


def bundle_values(valuations, demand):
    """Each bidder's value `[batch, num_bidders]` for the grand bundle.

    The sum of the item values (additive) or the best item value (unit demand).
    """
    valuations = np.asarray(valuations, np.float64)
    return valuations.max(axis=2) if demand == "unit_demand" else valuations.sum(axis=2)


def vcg_revenues(valuations, demand, max_menu_size=menus.MAX_DETERMINISTIC_MENU):
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
    allocations = menus.deterministic_allocations(num_bidders, num_items, demand, max_menu_size)
    outcome = mechanism.exact_outcome(
        valuations, allocations, np.zeros(len(allocations)), np.ones(num_bidders)
    )
    return outcome["payments"].numpy().sum(axis=1)


# ----------------------------------------------------------------------------------------
# Reserve search.


class _RevenueCurve:
    """Exact empirical mean revenue of a second-price auction as a function of the reserve.

    With `top >= second` per profile, `N * revenue(r) = sum_{second >= r} second
    + r * (#{top >= r} - #{second >= r})`: profiles whose second value clears `r` pay it,
    those where only the top value clears `r` pay `r`. Sorting once makes each reserve an
    `O(log N)` lookup. `in_place`: sort `top` and `second` (float64 arrays the caller no
    longer needs) instead of copies, two `[N]` arrays less at 10^7 profiles.
    """

    def __init__(self, top, second, in_place=False):
        if in_place:
            top.sort()
            second.sort()
            self.top, self.second = top, second
        else:
            self.top = np.sort(np.asarray(top, np.float64))
            self.second = np.sort(np.asarray(second, np.float64))
        # suffix[k] = sum of second[k:], with suffix[N] = 0 (the running sum from the end,
        # written in place: the same additions in the same order as a reversed cumsum).
        count = len(self.second)
        self.suffix = np.empty(count + 1)
        self.suffix[count] = 0.0
        np.cumsum(self.second[::-1], out=self.suffix[count - 1::-1])

    def __call__(self, reserves):
        reserves = np.asarray(reserves, np.float64)
        count = len(self.top)
        top_clear = count - np.searchsorted(self.top, reserves, side="left")
        index = np.searchsorted(self.second, reserves, side="left")
        second_clear = count - index
        return (self.suffix[index] + reserves * (top_clear - second_clear)) / count


def revenue_curve(values, reserves):
    """Mean second-price revenue on `values` `[N, num_bidders]` at each of `reserves` (exact)."""
    return _RevenueCurve(*top_two(values))(reserves)


def _search_reserve(top, second, in_place=False):
    """The reserve maximizing empirical revenue: coarse grid, finer grid, snap (module doc)."""
    curve = _RevenueCurve(top, second, in_place)
    highest = float(curve.top[-1])
    if highest <= 0.0:
        return 0.0
    coarse = np.unique(np.concatenate([
        np.linspace(0.0, highest, _COARSE_POINTS),
        np.quantile(curve.top, np.linspace(0.0, 1.0, _COARSE_POINTS)),
    ]))
    best = int(np.argmax(curve(coarse)))
    low, high = coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)]
    fine = np.linspace(low, high, _FINE_POINTS)
    reserve = fine[int(np.argmax(curve(fine)))]
    # Between two sampled top values the empirical revenue only rises: move up to the next.
    snapped = curve.top[min(np.searchsorted(curve.top, reserve, side="left"), len(curve.top) - 1)]
    return float(snapped if curve(snapped) >= curve(reserve) else reserve)


def optimal_reserve(values):
    """The reserve maximizing empirical second-price revenue on `values` `[N, num_bidders]`."""
    return _search_reserve(*top_two(values))


# ----------------------------------------------------------------------------------------
# Sampling and the baselines.


def _resolve_setting(setting):
    if isinstance(setting, Setting):
        return setting
    if not isinstance(setting, str):
        raise TypeError(
            f"`setting` must be a tf_ama.Setting or a setting name (see tf_ama.list_settings()); "
            f"got {type(setting).__name__}."
        )
    try:
        return get_setting(setting)
    except ValueError as error:
        raise ValueError(f"`setting`: {error}") from None


def _check_arguments(num_samples, seed):
    num_samples = checks.optional(checks.integer, "num_samples", num_samples, minimum=1)
    seed = checks.seed("seed", seed)
    if seed + RESERVE_SEED_OFFSET >= checks.SEED_LIMIT:
        raise ValueError(
            f"`seed` must be < {checks.SEED_LIMIT - RESERVE_SEED_OFFSET} (the reserve sample uses "
            f"the stateless seed + {RESERVE_SEED_OFFSET}, also below 2**31); got {seed}.")
    return num_samples, seed


def _reserve_tops(setting, num_samples, seed, items, bundle, progress):
    """The top two values, on `sample_blocks(setting, num_samples, seed)`, of each item `j`
    of `items` (`[len(items), N]` x2, one contiguous row per item) and, if `bundle`, of the
    grand bundle (`[N]` x2, else None)."""
    item_top, item_second = (np.empty((len(items), num_samples)) for _ in range(2))
    bundle_top, bundle_second = (np.empty(num_samples) if bundle else None for _ in range(2))
    start = 0
    for valuations in sample_blocks(setting, num_samples, seed):
        end = start + len(valuations)
        if len(items):
            chosen = valuations[:, :, list(items)]
            top, second = top_two(np.moveaxis(chosen, 2, 1).reshape(-1, setting.num_bidders))
            item_top[:, start:end] = top.reshape(-1, len(items)).T
            item_second[:, start:end] = second.reshape(-1, len(items)).T
        if bundle:
            bundle_top[start:end], bundle_second[start:end] = top_two(
                bundle_values(valuations, setting.demand))
        start = end
        progress.add(len(valuations))
    return (item_top, item_second), (bundle_top, bundle_second) if bundle else None


def _item_groups(setting, num_samples, items):
    """The items whose tops `_reserves` keeps together, one group per pass over the sample."""
    if not items:
        return [range(0)]
    per_pass = max(1, _RESERVE_TOPS_ELEMENTS // num_samples)
    return [range(j, min(j + per_pass, setting.num_items))
            for j in range(0, setting.num_items, per_pass)]


def check_reserve_work(setting, num_samples, items=True):
    """Refuses a reserve search on `num_samples` profiles that would draw more than
    `MAX_RESERVE_DRAWS` values (its sample is drawn again per group of items)."""
    groups = _item_groups(setting, num_samples, items)
    drawn = len(groups) * num_samples * setting.num_bidders * setting.num_items
    if drawn > MAX_RESERVE_DRAWS:
        raise ValueError(
            f"setting {setting.name!r} ({setting.shape_name}): separate Myerson's reserve "
            f"search would draw {drawn:.3g} values ({len(groups):,} passes over {num_samples:,} "
            f"profiles, keeping {len(groups[0]):,} items' top bids at a time), more than the "
            f"{MAX_RESERVE_DRAWS:.3g} it draws at most (hours on a CPU); give fewer samples "
            "(tf-ama baselines --samples) or a setting with fewer items.")


def _reserves(setting, num_samples, seed, items=True, progress=None):
    """`(item reserves or None, grand-bundle reserve)`, searched on the reserve sample `seed`.

    The item tops are kept for a group of items at a time (`_RESERVE_TOPS_ELEMENTS`), the
    sample drawn again for each group: memory stays a few `[num_samples]` float64 arrays
    however many items, and the reserves are the same as from all tops at once (each item's
    search sees exactly its own tops).
    """
    progress = Progress(None, "", enabled=False) if progress is None else progress
    check_reserve_work(setting, num_samples, items)
    item_reserves, bundle_reserve = [], None
    for group in _item_groups(setting, num_samples, items):
        (top, second), bundle = _reserve_tops(setting, num_samples, seed, group,
                                              bundle_reserve is None, progress)
        item_reserves += [_search_reserve(top[j], second[j], in_place=True)
                          for j in range(len(group))]
        if bundle is not None:
            bundle_reserve = _search_reserve(*bundle, in_place=True)
        del top, second, bundle
    return (item_reserves if items else None), bundle_reserve


def separate_reserves(setting, num_samples=100_000, seed=1) -> list[float]:
    """The reserve of each item of separate Myerson (additive settings), found as for
    `baseline_details(setting, num_samples, seed)`: on `num_samples` profiles drawn with seed
    `seed + RESERVE_SEED_OFFSET`."""
    setting = _resolve_setting(setting)
    num_samples, seed = _check_arguments(num_samples, seed)
    if setting.demand != "additive":
        raise ValueError(f"Separate Myerson reserves are for additive settings; "
                         f"{setting.name!r} is {setting.demand}.")
    return _reserves(setting, num_samples, seed + RESERVE_SEED_OFFSET)[0]


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
        reserves on); default 100 000. A setting made from data (`tf_ama.empirical`) is
        evaluated on every row of its test split (`settings.evaluation_sample`; leave
        `num_samples` out), its reserves searched on as many profiles resampled from its
        train rows.
      seed: int; evaluation profiles are `tf_ama.settings.sample_blocks(setting,
        num_samples, seed)` (the profiles `tf_ama.evaluate` uses; up to 279 620 3x10
        profiles exactly `setting.sample(num_samples, seed)`), reserve-search profiles use
        `seed + RESERVE_SEED_OFFSET`.
      progress: show a progress bar on standard error (`tf_ama.progress`), counting the
        profiles drawn by every pass (the reserve search draws its sample again for each
        group of items when `num_samples` is large).

    Returns:
      `{"vcg": BaselineResult, "separate_myerson": ..., "grand_bundle": ...}`. A baseline that
      does not apply (separate Myerson for unit demand; VCG whose matching menu is too large)
      has revenue NaN and says why in `method`.
    """
    setting = _resolve_setting(setting)
    num_samples, seed = _check_arguments(num_samples, seed)
    num_samples, profiles = evaluation_sample(setting, num_samples, seed)
    additive = setting.demand == "additive"
    reserve_seed = seed + RESERVE_SEED_OFFSET

    passes = len(_item_groups(setting, num_samples, additive)) + 1
    progress = Progress(num_samples * passes, "profile", checks.boolean("progress", progress),
                        f"Baselines of {setting.name}: {passes} passes over {num_samples:,} "
                        "profiles (reserve search, then revenue)")
    item_reserves, bundle_reserve = _reserves(setting, num_samples, reserve_seed, additive,
                                              progress)

    vcg_menu_size = menus.deterministic_menu_size(
        setting.num_bidders, setting.num_items, setting.demand)
    vcg_applies = additive or vcg_menu_size <= menus.MAX_DETERMINISTIC_MENU
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
        grand[start:end] = second_price_revenues(bundle_values(valuations, setting.demand),
                                                 bundle_reserve)
        start = end
        progress.add(len(valuations))

    on = f"on {num_samples:,} profiles (seed {seed})"
    search = (
        f"maximizing the exact empirical revenue on {num_samples:,} independent profiles "
        f"(seed {reserve_seed}): a grid of {_COARSE_POINTS} points on [0, max] and "
        f"{_COARSE_POINTS} quantiles of the highest value, a {_FINE_POINTS}-point grid around "
        "the best, then a snap up to the next sampled highest value"
    )
    results = {}
    if not vcg_applies:
        results["vcg"] = BaselineResult(
            "vcg", float("nan"), float("nan"), None,
            f"Not computed: VCG for unit demand runs exact_outcome over every partial matching, "
            f"and this setting has {vcg_menu_size:,} of them "
            f"(more than {menus.MAX_DETERMINISTIC_MENU:,}).",
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
            f"VCG through tf_ama.mechanism.exact_outcome with all {vcg_menu_size} partial "
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
