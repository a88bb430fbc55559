"""The polish: an exact coordinate search on a trained menu's boosts and bidder weights.

Training maximizes the soft revenue; what is served is the exact one, a piecewise linear
function of each boost. `polish(model, valuations)` raises the exact revenue on a fixed
sample by coordinate search, one parameter at a time, every other held fixed:

* the boost `b_k` of each entry in play (one that wins a profile of the sample or is a
  counterfactual maximizer of one; every entry of a small menu on a small sample): for
  fixed other entries, every profile's payments are
  a function of `b_k` alone (below), evaluated on a grid of candidate values at once;
* each learned bidder weight (`w_i`, on a grid of factors), the revenue recomputed in full.

For one entry `k`, with `s = W_k - b_k` its welfare without boost and `s^-i = s - w_i u_ki`
without bidder `i`, and over the other entries `M` the best welfare, `G^-i` the welfare
without `i` of its maximizer and `C^-i` the best welfare without `i`:

    k wins (s + b > M):   p_i = max(C^-i - s^-i - b, 0) / w_i
    k loses:              p_i = (max(C^-i, s^-i + b) - G^-i) / w_i

(payments of the AMA, docs/design.md §1). The search works in float64 NumPy; only the
result counts: `train_run` keeps the polished menu when its exact revenue
(`tf_ama.exact_outcome`) on a held-out sample is higher than the trained one's
(`polish.json` in the run directory records both). The item-separable family takes part
with its `c` fixed: its best entry and counterfactuals are part of the other entries'.
"""

from __future__ import annotations

import numpy as np

# Boost steps tried around the current boost, in units of the welfare scale of the sample.
STEPS = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3])
WEIGHT_FACTORS = np.array([0.9, 0.97, 0.99, 0.997, 1.003, 1.01, 1.03, 1.1])
CHUNK = 4096  # profiles per block of the [profiles, entries] passes
ALL_ENTRIES = 1 << 18  # profiles x entries up to which every entry is searched
BREAKPOINT_MARGIN = 1e-5  # candidates beside a breakpoint, in units of the welfare scale
PERTURBATIONS = np.array([0.01, 0.03, 0.1, 0.3])  # their scales, in the same units


def polish(model, valuations, sample_weight=None, rounds=3, perturbations=0, seed=0,
           verbose=False):
    """Polishes `model`'s boosts (and learned bidder weights) in place on `valuations`
    `[P, m, n]`, weighted by `sample_weight` `[P]` (default uniform); returns
    `(revenue before, revenue after)` on that sample as this search computes it.

    Args:
      rounds: passes of the coordinate search (it stops earlier when a pass gains nothing).
      perturbations: then, that many times (an iterated local search, seeded by `seed`):
        perturb a random third of the searched boosts by a random scale, search again from
        there, and keep the result if it earns more. For a sample that is the whole
        distribution (a discrete prior's exact expectation), where it cannot overfit.
    """
    valuations = np.asarray(valuations, np.float64)
    weights_p = (np.full(len(valuations), 1.0 / len(valuations)) if sample_weight is None
                 else np.asarray(sample_weight, np.float64) / np.sum(sample_weight))
    allocations, boosts, bidder_weights, family, size_boosts = model.exact_menu()
    if size_boosts is not None:
        raise ValueError("The polish searches the boosts beside the item-separable family; "
                         "it does not cover the bundle-size family (menu 'bundle-sizes'): "
                         "train it with polish=False (--no-polish).")
    problem = (valuations, weights_p, allocations, family, model.learn_bidder_weights)

    def stored(boosts, bidder_weights):
        """The parameters as the model stores them, and their revenue: every search result
        is judged as it will be served."""
        boosts, bidder_weights = _as_stored(boosts, bidder_weights, model.learn_bidder_weights)
        return boosts, bidder_weights, revenue(valuations, weights_p, allocations, boosts,
                                               bidder_weights, family)

    before = revenue(valuations, weights_p, allocations, boosts, bidder_weights, family)
    best_boosts, best_weights, best = boosts, bidder_weights, before
    found = _local_search(problem, boosts.copy(), bidder_weights.copy(), before, rounds, verbose)
    rng = np.random.default_rng(seed)
    scale = _welfare_scale(valuations, allocations, bidder_weights)
    for attempt in range(perturbations + 1):
        if attempt:  # perturb the best so far and search again from there
            trial = best_boosts + (rng.uniform(size=len(boosts)) < 1 / 3) * rng.normal(
                scale=scale * rng.choice(PERTURBATIONS), size=len(boosts))
            trial[0] = 0.0
            found = _local_search(
                problem, trial, best_weights.copy(),
                revenue(valuations, weights_p, allocations, trial, best_weights, family),
                max(rounds, 20), False)
        trial_boosts, trial_weights, value = stored(*found[:2])
        if value > best + 1e-12:
            best_boosts, best_weights, best = trial_boosts, trial_weights, value
            if verbose and attempt:
                print(f"polish perturbation {attempt}: {best:.6f}")
    if len(best_boosts) > 1:  # the empty entry's boost is not a variable
        model.menu_layer.boosts.assign(best_boosts[1:].astype(np.float32))
    if model.learn_bidder_weights:
        model.bidder_weights_layer.log_weights.assign(np.log(best_weights).astype(np.float32))
    return before, best


def _as_stored(boosts, bidder_weights, learned):
    """`(boosts, bidder_weights)` as the model stores and serves them: float32 boosts and,
    if learned, weights as float32 logarithms, clipped to the weights' range, after
    scaling both so that the weights' geometric mean is 1 (scaling every weight and boost
    by one factor leaves the AMA as it is)."""
    from tf_ama.core.exactness import MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT

    if learned:
        norm = np.exp(np.mean(np.log(bidder_weights)))
        boosts, bidder_weights = boosts / norm, bidder_weights / norm
        bidder_weights = np.clip(np.exp(np.log(bidder_weights).astype(np.float32).astype(
            np.float64)), MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT)
    boosts = boosts.astype(np.float32).astype(np.float64)
    boosts[0] = 0.0
    return boosts, bidder_weights


def _local_search(problem, boosts, bidder_weights, current, rounds, verbose):
    """Coordinate search from `boosts` and `bidder_weights` (revenue `current`)."""
    valuations, weights_p, allocations, family, learn_weights = problem
    for round_ in range(rounds):
        start = current
        if learn_weights:
            bidder_weights, current = _weight_round(valuations, weights_p, allocations, boosts,
                                                    bidder_weights, family, current)
        boosts, current = _boost_round(valuations, weights_p, allocations, boosts,
                                       bidder_weights, family)
        if verbose:
            print(f"polish round {round_ + 1}: {start:.6f} -> {current:.6f}")
        if current <= start + 1e-12:
            break
    return boosts, bidder_weights, current


def _welfare_scale(valuations, allocations, bidder_weights):
    """The largest weighted value of an allocation on the sample (its first block)."""
    u = np.einsum("pij,kij->pki", valuations[:CHUNK], allocations)
    return max(float(np.max(np.abs(u @ bidder_weights))), 1e-12)


def revenue(valuations, weights_p, allocations, boosts, bidder_weights, family=None):
    """The weighted mean revenue of the AMA on `valuations` (float64 NumPy, ties to the
    lowest index and to the explicit menu, like `tf_ama.exact_outcome`)."""
    fixed = _block_statistics(valuations, allocations, boosts, bidder_weights, family,
                              np.ones(len(boosts), bool))
    best, without, counterfactual = fixed
    payments = (counterfactual - without) / bidder_weights
    return float(weights_p @ payments.sum(axis=1))


def _boost_round(valuations, weights_p, allocations, boosts, bidder_weights, family):
    """One pass of the line search over the entries in play; returns (boosts, revenue)."""
    num_bidders = len(bidder_weights)
    in_play = _entries_in_play(valuations, allocations, boosts, bidder_weights)
    fixed = _block_statistics(valuations, allocations, boosts, bidder_weights, family,
                              ~np.isin(np.arange(len(boosts)), in_play))
    # The entries in play: values u [P, U, m], welfare without boost and without each bidder.
    u = np.einsum("pij,kij->pki", valuations, allocations[in_play])
    plain = u @ bidder_weights  # [P, U]
    plain_without = plain[:, :, None] - u * bidder_weights  # [P, U, m]
    scale = max(float(np.max(np.abs(plain))), 1e-12)
    margin = BREAKPOINT_MARGIN * scale  # beyond float32's rounding of the stored boosts
    current = None
    for position, k in enumerate(in_play):
        if k == 0:
            continue  # the empty entry's boost is 0 by definition
        others = np.ones(len(in_play), bool)
        others[position] = False
        welfare = plain[:, others] + boosts[in_play[others]]
        welfare_without = plain_without[:, others] + boosts[in_play[others]][:, None]
        best, without, counterfactual = _combine(fixed, welfare, welfare_without)
        s, s_without = plain[:, position], plain_without[:, position]
        steps = np.concatenate([[0.0], STEPS * scale, -STEPS * scale])
        if len(valuations) * (num_bidders + 1) <= 4096:  # few profiles: every breakpoint too
            points = np.concatenate([best - s, (counterfactual - s_without).ravel()])
            points = np.concatenate([points + margin, points - margin])
            steps = np.concatenate([steps, points - boosts[k]])
        candidates = boosts[k] + steps  # [T]
        values = _revenue_of_boost(candidates, s, s_without, best, without, counterfactual,
                                   bidder_weights, weights_p)
        choice = int(np.argmax(values))
        if values[choice] > values[0] + 1e-12:
            boosts[k] = candidates[choice]
        current = float(values[choice] if values[choice] > values[0] + 1e-12 else values[0])
    if current is None:
        current = revenue(valuations, weights_p, allocations, boosts, bidder_weights, family)
    return boosts, current


def _revenue_of_boost(candidates, s, s_without, best, without, counterfactual,
                      bidder_weights, weights_p):
    """The weighted mean revenue for each candidate boost of one entry `[T]`."""
    b = candidates[:, None, None]
    own_without = s_without[None] + b  # [T, P, m]
    wins = (s[None] + candidates[:, None] > best[None])[..., None]
    paid_if_wins = np.maximum(counterfactual[None] - own_without, 0.0)
    paid_if_loses = np.maximum(counterfactual[None], own_without) - without[None]
    payments = np.where(wins, paid_if_wins, paid_if_loses) / bidder_weights
    return payments.sum(axis=2) @ weights_p


def _weight_round(valuations, weights_p, allocations, boosts, bidder_weights, family, current):
    """Each bidder weight on a grid of factors, the revenue recomputed in full."""
    for i in range(len(bidder_weights)):
        for factor in WEIGHT_FACTORS:
            trial = bidder_weights.copy()
            trial[i] *= factor
            value = revenue(valuations, weights_p, allocations, boosts, trial, family)
            if value > current + 1e-12:
                bidder_weights, current = trial, value
    return bidder_weights, current


def _entries_in_play(valuations, allocations, boosts, bidder_weights):
    """The explicit entries that win a profile or maximize a counterfactual (sorted); every
    entry when the menu and the sample are small (`ALL_ENTRIES`): an entry out of play can
    then be brought in."""
    if len(valuations) * len(boosts) <= ALL_ENTRIES:
        return np.arange(len(boosts))
    used = set()
    for block in range(0, len(valuations), CHUNK):
        u = np.einsum("pij,kij->pki", valuations[block:block + CHUNK], allocations)
        welfare = u @ bidder_weights + boosts
        used.update(np.argmax(welfare, axis=1).tolist())
        welfare_without = welfare[:, :, None] - u * bidder_weights
        used.update(np.argmax(welfare_without, axis=1).ravel().tolist())
    return np.array(sorted(used))


def _block_statistics(valuations, allocations, boosts, bidder_weights, family, mask):
    """Over the explicit entries `mask` and the family: per profile the best welfare
    `[P]`, the welfare without each bidder of its maximizer `[P, m]` and the best welfare
    without each bidder `[P, m]` (-inf where the block is empty)."""
    num_profiles, num_bidders = len(valuations), len(bidder_weights)
    best = np.full(num_profiles, -np.inf)
    without = np.full((num_profiles, num_bidders), -np.inf)
    counterfactual = np.full((num_profiles, num_bidders), -np.inf)
    if np.any(mask):
        for block in range(0, num_profiles, CHUNK):
            rows = slice(block, block + CHUNK)
            u = np.einsum("pij,kij->pki", valuations[rows], allocations[mask])
            welfare = u @ bidder_weights + boosts[mask]
            welfare_without = welfare[:, :, None] - u * bidder_weights
            winner = np.argmax(welfare, axis=1)
            best[rows] = welfare[np.arange(len(winner)), winner]
            without[rows] = welfare_without[np.arange(len(winner)), winner]
            counterfactual[rows] = welfare_without.max(axis=1)
    if family is not None:
        best, without, counterfactual = _with_family(
            valuations, bidder_weights, family, best, without, counterfactual)
    return best, without, counterfactual


def _with_family(valuations, bidder_weights, family, best, without, counterfactual):
    """The block statistics with the item-separable family (`c` `[m + 1, n]`) joined."""
    num_bidders = len(bidder_weights)
    # Item j's welfare for each owner (bidders, then nobody): [P, m + 1, n].
    item = np.concatenate([valuations * bidder_weights[:, None], np.zeros_like(
        valuations[:, :1])], axis=1) + family
    owner = np.argmax(item, axis=1)  # [P, n]
    family_best = item.max(axis=1).sum(axis=1)
    own = np.stack([np.sum(np.where(owner == i, valuations[:, i] * bidder_weights[i], 0.0),
                           axis=1) for i in range(num_bidders)], axis=1)
    family_without = family_best[:, None] - own
    family_counterfactual = np.stack([
        np.maximum(np.delete(item, i, axis=1).max(axis=1), family[i]).sum(axis=1)
        for i in range(num_bidders)], axis=1)
    wins = family_best > best  # strict: ties go to the explicit menu
    return (np.where(wins, family_best, best),
            np.where(wins[:, None], family_without, without),
            np.maximum(counterfactual, family_counterfactual))


def _combine(fixed, welfare, welfare_without):
    """The block statistics of `fixed` joined with entries `welfare` `[P, E]` (and their
    welfare without each bidder `[P, E, m]`)."""
    best, without, counterfactual = fixed
    if welfare.shape[1] == 0:
        return fixed
    winner = np.argmax(welfare, axis=1)
    rows = np.arange(len(winner))
    top = welfare[rows, winner]
    wins = top > best
    return (np.where(wins, top, best),
            np.where(wins[:, None], welfare_without[rows, winner], without),
            np.maximum(counterfactual, welfare_without.max(axis=1)))
