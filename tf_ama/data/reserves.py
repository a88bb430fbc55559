"""Separate Myerson's reserves, found numerically for any setting.

A second-price auction with reserve `r` over values `v_1..v_m` earns, per profile,

    revenue(r) = max(second highest, r)   if highest >= r      (one bidder: r if v >= r)
                 0                        otherwise

Reserves are never taken from a formula: each is found numerically for the setting's own
distribution, by maximizing the empirical revenue on an *independent* sample (seed
`seeds.reserve_seed(seed)`), so a revenue measured on the evaluation sample (seed `seed`)
is an unbiased estimate for that reserve. The empirical revenue is piecewise linear in `r`,
so it is evaluated exactly on many reserves at once from sorted top values
(`revenue_curve`): a coarse grid (101 evenly spaced points on `[0, max]` and 101 quantiles
of the highest value), a 201-point grid between the neighbours of the best coarse point,
then a snap up to the next sampled highest value (between two sampled highest values the
empirical revenue only rises, so this can only gain; it lands exactly on an atom of a
discrete distribution). The reserve's own error is statistical, of order `N**(-1/3)` (an
argmax of a noisy, flat curve), not the grid's.

The menus that start at separate Myerson (`tf_ama.menus.layers`) and the baselines
(`tf_ama.evaluation.baselines`) use them. All arithmetic is float64 NumPy on valuations
drawn block by block (`tf_ama.data.settings.sample_blocks`), in bounded memory.
"""

from __future__ import annotations

import numpy as np

from tf_ama.data.settings import Setting, get_setting, sample_blocks
from tf_ama.utils import checks, seeds
from tf_ama.utils.progress import Progress

# The reserve-search sample is drawn with seed `seeds.reserve_seed(seed)`.


# Item tops kept at once by the reserve search (top and second, float64: 2 x 128 MB): with
# more profiles x items than this, the reserve sample is drawn again for each group of items.
_RESERVE_TOPS_ELEMENTS = 1 << 24


# The most values a reserve search draws (its sample, drawn again per group of items):
# about an hour at the ~1e7 values per second drawn on a 2-core CPU; 5x10 at 100 000
# profiles draws 5e6.
MAX_RESERVE_DRAWS = 1 << 35


COARSE_POINTS = 101


FINE_POINTS = 201


def top_two(values):
    """Highest and second-highest of `values` `[batch, num_bidders]` (second = 0 for one bidder)."""
    values = np.asarray(values, np.float64)
    if values.shape[1] == 1:
        return values[:, 0], np.zeros(values.shape[0])
    ordered = np.partition(values, values.shape[1] - 2, axis=1)
    return ordered[:, -1], ordered[:, -2]


def bundle_values(valuations, demand):
    """Each bidder's value `[batch, num_bidders]` for the grand bundle.

    The sum of the item values (additive) or the best item value (unit demand).
    """
    valuations = np.asarray(valuations, np.float64)
    return valuations.max(axis=2) if demand == "unit_demand" else valuations.sum(axis=2)


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
        np.linspace(0.0, highest, COARSE_POINTS),
        np.quantile(curve.top, np.linspace(0.0, 1.0, COARSE_POINTS)),
    ]))
    best = int(np.argmax(curve(coarse)))
    low, high = coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)]
    fine = np.linspace(low, high, FINE_POINTS)
    reserve = fine[int(np.argmax(curve(fine)))]
    # Between two sampled top values the empirical revenue only rises: move up to the next.
    snapped = curve.top[min(np.searchsorted(curve.top, reserve, side="left"), len(curve.top) - 1)]
    return float(snapped if curve(snapped) >= curve(reserve) else reserve)


def optimal_reserve(values):
    """The reserve maximizing empirical second-price revenue on `values` `[N, num_bidders]`."""
    return _search_reserve(*top_two(values))


def resolve_setting(setting):
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


def check_arguments(num_samples, seed):
    num_samples = checks.optional(checks.integer, "num_samples", num_samples, minimum=1)
    seed = checks.seed("seed", seed)
    if seeds.reserve_seed(seed) >= checks.SEED_LIMIT:
        raise ValueError(
            f"`seed` must be < {checks.SEED_LIMIT - seeds.RESERVE_OFFSET} (the reserve sample uses "
            f"the stateless seed + {seeds.RESERVE_OFFSET}, also below 2**31); got {seed}.")
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


def item_groups(setting, num_samples, items):
    """The items whose tops `search_reserves` keeps together, one group per pass over the sample."""
    if not items:
        return [range(0)]
    per_pass = max(1, _RESERVE_TOPS_ELEMENTS // num_samples)
    return [range(j, min(j + per_pass, setting.num_items))
            for j in range(0, setting.num_items, per_pass)]


def check_reserve_work(setting, num_samples, items=True):
    """Refuses a reserve search on `num_samples` profiles that would draw more than
    `MAX_RESERVE_DRAWS` values (its sample is drawn again per group of items)."""
    groups = item_groups(setting, num_samples, items)
    drawn = len(groups) * num_samples * setting.num_bidders * setting.num_items
    if drawn > MAX_RESERVE_DRAWS:
        raise ValueError(
            f"setting {setting.name!r} ({setting.shape_name}): separate Myerson's reserve "
            f"search would draw {drawn:.3g} values ({len(groups):,} passes over {num_samples:,} "
            f"profiles, keeping {len(groups[0]):,} items' top bids at a time), more than the "
            f"{MAX_RESERVE_DRAWS:.3g} it draws at most (hours on a CPU); give fewer samples "
            "(tf-ama baselines --samples) or a setting with fewer items.")


def search_reserves(setting, num_samples, seed, items=True, progress=None):
    """`(item reserves or None, grand-bundle reserve)`, searched on the reserve sample `seed`.

    The item tops are kept for a group of items at a time (`_RESERVE_TOPS_ELEMENTS`), the
    sample drawn again for each group: memory stays a few `[num_samples]` float64 arrays
    however many items, and the reserves are the same as from all tops at once (each item's
    search sees exactly its own tops).
    """
    progress = Progress(None, "", enabled=False) if progress is None else progress
    check_reserve_work(setting, num_samples, items)
    item_reserves, bundle_reserve = [], None
    for group in item_groups(setting, num_samples, items):
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
    `seeds.reserve_seed(seed)`."""
    setting = resolve_setting(setting)
    num_samples, seed = check_arguments(num_samples, seed)
    if setting.demand != "additive":
        raise ValueError(f"Separate Myerson reserves are for additive settings; "
                         f"{setting.name!r} is {setting.demand}.")
    return search_reserves(setting, num_samples, seeds.reserve_seed(seed))[0]
