"""Menus of allocations: parameterizations that are feasible for every parameter value.

Every menu is a tensor `allocations[k, i, j]` (`[menu_size, num_bidders, num_items]`): the
probability that bidder `i` receives item `j` under entry `k`. Feasible means `a >= 0` and
`sum_i a[k, i, j] <= 1` (each item is sold at most once); unit demand also requires
`sum_j a[k, i, j] <= 1`. Entry 0 is always the empty allocation, with boost fixed at 0.

* `additive_lottery(logits)`: free logits `[K - 1, m + 1, n]`, softmax over the bidder axis
  (the extra row is a dummy bidder, "unallocated"), dummy row dropped (Duetting et al. 2019).
* `unit_demand_lottery(item_logits, bidder_logits)`: softplus of two `[K - 1, m, n]` tensors,
  one normalized over items and the other over bidders (each sum capped at 1), then the
  elementwise minimum (Ravindranath et al. 2021).
* `deterministic_allocations(...)`: every feasible 0/1 allocation (not learned).
* `validate_fixed_menu(...)`: checks a user-given menu, e.g. a published AMA.
* `Menu`: the tensors of a whole menu, as `AffineMaximizerAuction.menu()` returns them.

Cast the logits to float64 *before* calling these to build the exact, served menu.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tf_ama.core.bundle_sizes import check_count_states
from tf_ama.core.exactness import DEMANDS, check_menu_limits, real_array
from tf_ama.utils import checks

MAX_DETERMINISTIC_MENU = 1 << 16


class Menu(NamedTuple):
    """A whole menu: `allocations [K, m, n]`, `boosts [K]`, `bidder_weights [m]`, and the
    item-separable family's `separable_boosts` `[m + 1, n]` (`tf_ama.core.separable`) or None when
    the menu has no family, and the bundle-size family's `size_boosts` `[m + 1, n + 1]`
    (`tf_ama.core.bundle_sizes`) or None. In the order `tf_ama.exact_outcome` takes them:
    `exact_outcome(bids, *menu)`."""

    allocations: Any
    boosts: Any
    bidder_weights: Any
    separable_boosts: Any = None
    size_boosts: Any = None
_TOLERANCE = 1e-9


def _with_empty_entry(learned):
    empty = tf.zeros_like(learned[:1])
    return tf.concat([empty, learned], axis=0)


def additive_lottery(logits):
    """Allocations `[K, m, n]` from logits `[K - 1, m + 1, n]`; entry 0 is empty."""
    shares = tf.nn.softmax(logits, axis=1)  # over bidders + the dummy "unallocated" row
    return _with_empty_entry(shares[:, :-1, :])


def unit_demand_lottery(item_logits, bidder_logits):
    """Allocations `[K, m, n]` from two `[K - 1, m, n]` tensors; entry 0 is empty."""
    over_items = tf.nn.softplus(item_logits)
    over_items /= tf.maximum(tf.reduce_sum(over_items, axis=2, keepdims=True), 1.0)
    over_bidders = tf.nn.softplus(bidder_logits)
    over_bidders /= tf.maximum(tf.reduce_sum(over_bidders, axis=1, keepdims=True), 1.0)
    return _with_empty_entry(tf.minimum(over_items, over_bidders))


def _check_setting_shape(num_bidders, num_items, demand):
    checks.integer("num_bidders", num_bidders, minimum=1)
    checks.integer("num_items", num_items, minimum=1)
    checks.choice("demand", demand, DEMANDS)


def deterministic_menu_size(num_bidders, num_items, demand):
    """Number of feasible 0/1 allocations, the empty one included."""
    _check_setting_shape(num_bidders, num_items, demand)
    if demand == "additive":
        return (num_bidders + 1) ** num_items
    # Partial matchings: choose r bidders and r items and match them.
    return sum(
        math.comb(num_bidders, r) * math.comb(num_items, r) * math.factorial(r)
        for r in range(min(num_bidders, num_items) + 1)
    )


def deterministic_allocations(num_bidders, num_items, demand, max_size=MAX_DETERMINISTIC_MENU):
    """Every feasible 0/1 allocation as float64 `[K, m, n]`, the empty one first.

    Additive: each item goes to one bidder or to nobody, `(m + 1)**n` entries. Unit demand:
    every partial matching of bidders to items.
    """
    size = deterministic_menu_size(num_bidders, num_items, demand)
    if size > max_size:
        raise ValueError(
            f"The deterministic menu of {num_bidders} {demand} bidders and {num_items} items "
            f"has {size:,} allocations, more than max_size={max_size:,} can enumerate. Use "
            "menu='lottery', or raise max_size if you have the memory."
        )
    entries = []
    if demand == "additive":
        # owner[j] in 0..m: 0 = unallocated, i + 1 = bidder i. Product order puts all-0 first.
        for owners in itertools.product(range(num_bidders + 1), repeat=num_items):
            entry = np.zeros((num_bidders, num_items))
            for item, owner in enumerate(owners):
                if owner:
                    entry[owner - 1, item] = 1.0
            entries.append(entry)
    else:
        # choice[i] in 0..n: 0 = nothing, j + 1 = item j; items taken at most once.
        for choices in itertools.product(range(num_items + 1), repeat=num_bidders):
            taken = [c for c in choices if c]
            if len(taken) != len(set(taken)):
                continue
            entry = np.zeros((num_bidders, num_items))
            for bidder, choice in enumerate(choices):
                if choice:
                    entry[bidder, choice - 1] = 1.0
            entries.append(entry)
    allocations = np.stack(entries)
    assert len(allocations) == size and not allocations[0].any()
    return allocations


def validate_fixed_menu(allocations, boosts, bidder_weights, num_bidders, num_items, demand,
                        separable_boosts=None, size_boosts=None):
    """Checks a user-given menu and returns it as a `Menu` of float64 numpy arrays.

    Raises ValueError naming the argument for wrong shapes, non-finite values, infeasible
    allocations, a first entry that is not the empty allocation with boost 0, or boosts,
    bidder weights and the item-separable family's `separable_boosts` (`[m + 1, n]`, None:
    no family; additive only) and `size_boosts` (`[m + 1, n + 1]`, with `separable_boosts`)
    outside the limits of `tf_ama.core.exactness` (e.g. a weight of
    5e-324, which would make every payment inexact).
    """
    _check_setting_shape(num_bidders, num_items, demand)
    arrays = {}
    given = [("allocations", allocations), ("boosts", boosts), ("bidder_weights", bidder_weights)]
    if separable_boosts is not None:
        given.append(("separable_boosts", separable_boosts))
    if size_boosts is not None:
        if separable_boosts is None:
            raise ValueError("`size_boosts` extends the item-separable family: give "
                             "`separable_boosts` too (zeros for none).")
        given.append(("size_boosts", size_boosts))
    for name, value in given:
        try:  # no silent coercion: a complex boost would lose its imaginary part
            array = real_array(value, name).astype(np.float64)
        except TypeError as error:
            raise ValueError(str(error)) from None
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` must be finite (no NaN or inf).")
        arrays[name] = array
    allocations, boosts, bidder_weights = (
        arrays["allocations"], arrays["boosts"], arrays["bidder_weights"])
    separable_boosts = arrays.get("separable_boosts")
    if separable_boosts is not None:
        if demand != "additive":
            raise ValueError("`separable_boosts`: the item-separable family is for additive "
                             f"bidders; this setting is {demand}.")
        if separable_boosts.shape != (num_bidders + 1, num_items):
            raise ValueError(
                f"`separable_boosts` must have shape [num_bidders + 1={num_bidders + 1}, "
                f"num_items={num_items}] (a row per bidder, then nobody's); got "
                f"{list(separable_boosts.shape)}.")
        if allocations.shape[0] + (num_bidders + 1) ** num_items >= 2**62:
            raise ValueError(f"`separable_boosts`: the family of {num_bidders} bidders and "
                             f"{num_items} items is too large to index in int64.")
    if allocations.ndim != 3 or allocations.shape[1:] != (num_bidders, num_items):
        raise ValueError(
            f"`allocations` must have shape [menu_size, num_bidders={num_bidders}, "
            f"num_items={num_items}]; got {list(allocations.shape)}."
        )
    if allocations.shape[0] == 0:
        raise ValueError("`allocations` is an empty menu; entry 0 must be the empty allocation.")
    if boosts.shape != (allocations.shape[0],):
        raise ValueError(
            f"`boosts` must have shape [menu_size={allocations.shape[0]}]; got {list(boosts.shape)}."
        )
    if bidder_weights.shape != (num_bidders,):
        raise ValueError(
            f"`bidder_weights` must have shape [num_bidders={num_bidders}]; got "
            f"{list(bidder_weights.shape)}."
        )
    if np.any(bidder_weights <= 0):
        raise ValueError(f"`bidder_weights` must be > 0; got {bidder_weights.tolist()}.")
    # the exactness contract (tf_ama.core.exactness)
    size_boosts = arrays.get("size_boosts")
    if size_boosts is not None:
        if size_boosts.shape != (num_bidders + 1, num_items + 1):
            raise ValueError(
                f"`size_boosts` must have shape [num_bidders + 1={num_bidders + 1}, num_items + "
                f"1={num_items + 1}] (a row per bidder, then nobody's); got "
                f"{list(size_boosts.shape)}.")
        check_count_states(num_bidders, num_items)
    check_menu_limits(boosts, bidder_weights, separable_boosts, size_boosts)
    if np.any(allocations < 0):
        raise ValueError("`allocations` must be >= 0.")
    over = allocations.sum(axis=1).max()
    if over > 1 + _TOLERANCE:
        raise ValueError(
            f"`allocations` is infeasible: an item is allocated {over:.6g} > 1 times in total "
            "(sum over bidders must be <= 1)."
        )
    if demand == "unit_demand":
        over = allocations.sum(axis=2).max()
        if over > 1 + _TOLERANCE:
            raise ValueError(
                f"`allocations` is infeasible for unit demand: a bidder receives {over:.6g} > 1 "
                "items in expectation (sum over items must be <= 1)."
            )
    if allocations[0].any() or boosts[0] != 0:
        raise ValueError(
            "Entry 0 of `allocations` must be the empty allocation with `boosts[0] == 0`. "
            "Prepend it (np.concatenate([np.zeros((1, m, n)), allocations])) and shift all "
            "boosts by the same constant so that boosts[0] == 0; the mechanism is unchanged."
        )
    return Menu(allocations, boosts, bidder_weights, separable_boosts, size_boosts)
