"""An independent, loop-based NumPy affine maximizer auction (docs/design.md §1).

Written from the maths, not from `tf_ama.core.mechanism`: explicit Python loops over profiles,
bidders and menu entries, so that it is obviously correct and shares no vectorization (and
no bug) with the library. Slow: use it on small batches and small menus only.

    u[i, k]   = sum_j a[k, i, j] * v[i, j]
    W[k]      = sum_i w[i] * u[i, k] + b[k]
    k*        = argmax_k W[k]                   ties -> lowest index
    W_-i[k]   = b[k] + sum_{l != i} w[l] * u[l, k]
    p[i]      = (max_k W_-i[k] - W_-i[k*]) / w[i]
    regret[i] = max_k (u[i, k] - P_i(k)) - (u[i, k*] - p[i]),  P_i(k) = (max W_-i - W_-i[k]) / w[i]

Other test modules use it: `from oracle import numpy_ama`; `fraction_ama` is the exact
rational oracle of one profile (the money oracle of the exactness tests).
"""

import itertools
import math
from fractions import Fraction

import numpy as np

from tf_ama.core.allocations import deterministic_allocations


def family_boosts(c, exact=False, g=None):
    """Boost of every entry of the item-separable family with boosts `c` `[m + 1, n]` (and
    the bundle-size family's `g` `[m + 1, n + 1]`: owner o's boost for holding k items), in
    the order of `menus.deterministic_allocations`: a plain loop (Fractions if `exact`)."""
    num_bidders, num_items = c.shape[0] - 1, c.shape[1]
    rows = []
    for codes in itertools.product(range(num_bidders + 1), repeat=num_items):
        terms = [c[code - 1 if code else num_bidders, j] for j, code in enumerate(codes)]
        if g is not None:
            for owner in range(num_bidders + 1):  # owner code: 0 nobody, i + 1 bidder i
                terms.append(g[owner - 1 if owner else num_bidders, codes.count(owner)])
        rows.append(sum((Fraction(float(t)) for t in terms), Fraction(0)) if exact
                    else float(sum(terms)))
    return np.array(rows, dtype=object if exact else np.float64)


def enumerated(allocations, boosts, c, exact=False, g=None):
    """A menu joined with the family of boosts `c` (and `g`) as an explicit one: the K
    entries, then the whole family, enumerated."""
    num_bidders, num_items = allocations.shape[1:]
    family = deterministic_allocations(num_bidders, num_items, "additive")
    all_boosts = np.concatenate([np.asarray(boosts, object if exact else np.float64),
                                 family_boosts(c, exact, g)])
    return np.concatenate([allocations, family]), all_boosts


def numpy_ama(bids, allocations, boosts, bidder_weights, separable_boosts=None,
              size_boosts=None):
    """The exact AMA outcome by loops.

    Args:
      bids: `[batch, num_bidders, num_items]`.
      allocations: `[menu_size, num_bidders, num_items]`.
      boosts: `[menu_size]`.
      bidder_weights: `[num_bidders]`.
      separable_boosts: None, or `c` `[m + 1, n]`: the item-separable family joins the menu,
        enumerated (`enumerated`).
      size_boosts: None, or `g` `[m + 1, n + 1]` (with `separable_boosts`): the family is
        the bundle-size family, enumerated.

    Returns:
      A dict of NumPy arrays: `allocation` `[batch, num_bidders, num_items]`, `payments`
      `[batch, num_bidders]`, `menu_index` int64 `[batch]`, `values` `[batch, num_bidders]`
      (value of the chosen entry to each bidder at the bids) and `regret`
      `[batch, num_bidders]` (the exact regret certificate).
    """
    if separable_boosts is not None:
        allocations, boosts = enumerated(np.asarray(allocations, np.float64), boosts,
                                         np.asarray(separable_boosts, np.float64),
                                         g=None if size_boosts is None
                                         else np.asarray(size_boosts, np.float64))
    bids = np.asarray(bids, dtype=np.float64)
    allocations = np.asarray(allocations, dtype=np.float64)
    boosts = np.asarray(boosts, dtype=np.float64)
    bidder_weights = np.asarray(bidder_weights, dtype=np.float64)
    batch, num_bidders, num_items = bids.shape
    menu_size = allocations.shape[0]
    assert allocations.shape == (menu_size, num_bidders, num_items)
    assert boosts.shape == (menu_size,) and bidder_weights.shape == (num_bidders,)

    out_allocation = np.zeros((batch, num_bidders, num_items))
    out_payments = np.zeros((batch, num_bidders))
    out_index = np.zeros(batch, dtype=np.int64)
    out_values = np.zeros((batch, num_bidders))
    out_regret = np.zeros((batch, num_bidders))

    for profile in range(batch):
        # u[i][k]: value of entry k to bidder i.
        value = [[0.0] * menu_size for _ in range(num_bidders)]
        for bidder in range(num_bidders):
            for k in range(menu_size):
                total = 0.0
                for item in range(num_items):
                    total += allocations[k, bidder, item] * bids[profile, bidder, item]
                value[bidder][k] = total
        welfare = []
        for k in range(menu_size):
            total = boosts[k]
            for bidder in range(num_bidders):
                total += bidder_weights[bidder] * value[bidder][k]
            welfare.append(total)
        chosen = 0
        for k in range(1, menu_size):
            if welfare[k] > welfare[chosen]:  # strict: ties keep the lowest index
                chosen = k
        out_index[profile] = chosen
        out_allocation[profile] = allocations[chosen]
        for bidder in range(num_bidders):
            weight = bidder_weights[bidder]
            without = [boosts[k] + sum(bidder_weights[other] * value[other][k]
                                       for other in range(num_bidders) if other != bidder)
                       for k in range(menu_size)]
            best_without = -math.inf
            for k in range(menu_size):
                best_without = max(best_without, without[k])
            payment = (best_without - without[chosen]) / weight
            out_payments[profile, bidder] = payment
            out_values[profile, bidder] = value[bidder][chosen]
            # Best utility any report can give: pick entry k at price P_i(k).
            best_utility = -math.inf
            for k in range(menu_size):
                price = (best_without - without[k]) / weight
                best_utility = max(best_utility, value[bidder][k] - price)
            out_regret[profile, bidder] = best_utility - (value[bidder][chosen] - payment)
    return {
        "allocation": out_allocation,
        "payments": out_payments,
        "menu_index": out_index,
        "values": out_values,
        "regret": out_regret,
    }


def numpy_soft_payments(valuations, allocations, boosts, bidder_weights, temperature):
    """The softmax relaxation of the payments by loops, `[batch, num_bidders]`."""

    def softmax(scores):
        top = max(scores)
        weights = [math.exp(temperature * (s - top)) for s in scores]
        total = sum(weights)
        return [w / total for w in weights]

    valuations = np.asarray(valuations, dtype=np.float64)
    allocations = np.asarray(allocations, dtype=np.float64)
    batch, num_bidders, num_items = valuations.shape
    menu_size = allocations.shape[0]
    payments = np.zeros((batch, num_bidders))
    for profile in range(batch):
        value = [[sum(allocations[k, i, j] * valuations[profile, i, j] for j in range(num_items))
                  for k in range(menu_size)] for i in range(num_bidders)]
        welfare = [boosts[k] + sum(bidder_weights[i] * value[i][k] for i in range(num_bidders))
                   for k in range(menu_size)]
        chosen = softmax(welfare)
        for i in range(num_bidders):
            without = [welfare[k] - bidder_weights[i] * value[i][k] for k in range(menu_size)]
            counterfactual = softmax(without)
            expected_without = sum(counterfactual[k] * without[k] for k in range(menu_size))
            expected_with = sum(chosen[k] * without[k] for k in range(menu_size))
            payments[profile, i] = (expected_without - expected_with) / bidder_weights[i]
    return payments


def partial_matchings(num_bidders, num_items):
    """Number of partial matchings of a complete bipartite graph, by recursion over bidders."""
    if num_bidders == 0:
        return 1
    # The last bidder gets nothing, or one of the `num_items` items (then that item is gone).
    total = partial_matchings(num_bidders - 1, num_items)
    if num_items:
        total += num_items * partial_matchings(num_bidders - 1, num_items - 1)
    return total


def fraction_ama(bids, allocations, boosts, bidder_weights):
    """The AMA in exact rational arithmetic (`fractions.Fraction`), for one profile.

    Every float64 input is converted exactly (`Fraction(float)` is exact), so this is the
    outcome a computer with infinite precision would serve for the same numbers: the money
    oracle of the exactness tests (tf_ama.core.exactness states how far float64 may be from it).

    Args:
      bids: `[num_bidders, num_items]` (one profile); allocations `[menu_size, num_bidders,
        num_items]`; boosts `[menu_size]`; bidder_weights `[num_bidders]`.

    Returns:
      A dict of exact values: `welfare` (list over k of W[k]), `values` (u[i][k]), `others`
      (W_-i[k], summed from the other bidders' terms), `menu_index` (exact argmax, ties to the
      lowest index), and `payment(i, k)`: bidder i's AMA payment if entry k is served,
      `(max W_-i - W_-i[k]) / w_i`.
    """

    def exact(array):  # float64 values exactly; Fractions (an object array) as they are
        array = np.asarray(array)
        return np.vectorize(Fraction, otypes=[object])(
            array if array.dtype == object else array.astype(np.float64))

    bids, allocations = exact(bids), exact(allocations)
    boosts, weights = exact(boosts), exact(bidder_weights)
    menu_size, num_bidders, num_items = allocations.shape
    value = [[sum((allocations[k, i, j] * bids[i, j] for j in range(num_items)), Fraction(0))
              for k in range(menu_size)] for i in range(num_bidders)]
    welfare = [boosts[k] + sum(weights[i] * value[i][k] for i in range(num_bidders))
               for k in range(menu_size)]
    others = [[boosts[k] + sum(weights[l] * value[l][k] for l in range(num_bidders) if l != i)
               for k in range(menu_size)] for i in range(num_bidders)]
    chosen = 0
    for k in range(1, menu_size):
        if welfare[k] > welfare[chosen]:  # strict: ties keep the lowest index
            chosen = k
    best_others = [max(row) for row in others]

    def payment(bidder, entry):
        return (best_others[bidder] - others[bidder][entry]) / weights[bidder]

    return {"welfare": welfare, "values": value, "others": others, "menu_index": chosen,
            "payment": payment}
