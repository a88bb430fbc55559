r"""The exactness contract of the served auction: what is accepted, and how exact it is.

`tf_ama.exact_outcome` (and so evaluation, `model(bids)` and the exported SavedModel) computes
the AMA outcome in float64. This module states, in one place, for which inputs that outcome is
computed and how far it can be from the outcome in exact (rational) arithmetic; the proof is
in `docs/design.md` ("The exactness contract") and the tests check it against a
`fractions.Fraction` oracle. It imports only NumPy, so that clients can use it without
TensorFlow.

Accepted (anything else is refused with an error that names the argument):

* menus: allocations finite, in [0, 1], feasible; `|boosts| <= MAX_ABS_BOOST`;
  `MIN_BIDDER_WEIGHT <= bidder_weights <= MAX_BIDDER_WEIGHT`; the item-separable family's
  boosts `c` (`tf_ama.core.separable`) finite with `separable_scale(c) <= MAX_ABS_BOOST`,
  and the bundle-size family's `g` (`tf_ama.core.bundle_sizes`) finite with
  `separable_scale(c, g) <= MAX_ABS_BOOST`;
* bids: float64, finite, `0 <= bid <= MAX_BID`.

Guaranteed for every accepted input, with `u = 2**-53`, `n` items, `m` bidders,
`B = max_k |b_k|` (with the family, the larger of that and `separable_scale(c) =
sum_j max_o |c[o, j]|`, plus `sum_o max_k |g[o, k]|` for the bundle-size family: its
welfare is summed item by item, so the rounding scales with the table's entries even where
a family entry's boost cancels them) and, for bidder `i`, the
scale of the OTHER bidders' bids

    T_i = B + sum_{l != i} w_l sum_j v[l, j]          (no term of bidder i's own bids)
    T   = B + sum_l w_l sum_j v[l, j]

1. Every output is finite; `0 <= payments[i] <= values[i]` (individually rational, exactly).
2. The served entry `k*` is a welfare maximizer up to `welfare_error_bound = 2 (n + m + 1) u T`
   (every bound also adds ~1e-300 for subnormal results, which TensorFlow flushes to 0):
   `W[k*] >= max_k W[k] - welfare_error_bound`. Ties of the computed welfare go to the lowest
   index; when every operation is exact (e.g. dyadic bids, allocations and boosts, weights
   powers of two, no nonzero product below 2**-1022) the outcome IS the exact one, ties
   included.
3. Every payment is within `payment_error_bound = 12 (n + m + 2) u T_i / w_i` of the exact
   AMA payment of the served entry, `(max_k W_-i[k] - W_-i[k*]) / w_i`, where
   `W_-i[k] = b_k + sum_{l != i} w_l <a[k, l], v[l]>` is computed from the other bidders'
   terms directly. So a bidder's own bid, however large, does not enter the error of its
   own payment: a huge bid cannot buy an item cheaper than the exact price.
4. No report gains bidder `i` more than `regret_error_bound = 2 payment_error_bound +
   welfare_error_bound / w_i` (with `T` taken at the bidder's TRUE values), whatever the
   report, huge ones included.

On a 2x2 profile with unit weights, bids and boosts of order 1, the bounds are ~1e-14.
"""

from __future__ import annotations

import numpy as np

# What a bidder wants: any bundle of items (values add up), or at most one item.
DEMANDS = ("additive", "unit_demand")

# A bid above this is refused: no currency amount is this large, and the bound keeps every
# intermediate sum of the exact outcome far from float64 overflow (see docs/design.md).
MAX_BID = 1e38
# Integers up to this are float64 numbers; 2**53 + 1 would be rounded to 2**53.
MAX_EXACT_INTEGER = 2**53
MAX_ABS_BOOST = 1e38
# Bidder weights divide payments: a weight far from the others would multiply the rounding
# of the others' welfare into a payment (e.g. 5e-324 gives inf), so menus are refused
# unless every weight lies in this range (the AMA is unchanged by scaling all weights and
# boosts by the same positive constant: rescale such a menu instead).
MIN_BIDDER_WEIGHT = 1e-6
MAX_BIDDER_WEIGHT = 1e6
UNIT_ROUNDOFF = 2.0**-53
# TensorFlow's CPU kernels flush subnormal results (below 2**-1022) to zero: each operation
# may lose up to 2**-1022 absolutely, which no relative bound covers. The bounds add
# `(2n + 1) m 2**-1000` for it (docs/design.md §2); about 1e-300, economically nothing.
UNDERFLOW = 2.0**-1000


def real_array(value, name):
    """`value` as a NumPy array of real numbers, or a TypeError naming `name`.

    Refuses what NumPy would silently coerce into numbers: booleans, strings and bytes inside
    nested lists, complex numbers (whose imaginary part a cast drops), and Python integers
    beyond 2**53 (which float64 rounds). Arrays keep their dtype; bool, complex and object
    arrays are refused.
    """
    array = np.asarray(value) if isinstance(value, np.ndarray) else None
    if array is None:
        try:
            elements = np.asarray(value, dtype=object).ravel()
        except ValueError as error:  # ragged nesting
            raise TypeError(f"`{name}` must be a (nested) list of numbers: {error}") from None
        for element in elements:
            if isinstance(element, (bool, np.bool_)) or not isinstance(
                    element, (int, float, np.integer, np.floating)):
                raise TypeError(f"`{name}` must hold real numbers only; got {element!r} "
                                f"({type(element).__name__}).")
            if isinstance(element, (int, np.integer)) and abs(int(element)) > MAX_EXACT_INTEGER:
                raise TypeError(f"`{name}`: the integer {element} is not exactly a float64; "
                                "give it as a float.")
        array = np.asarray(value)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"`{name}` must be a numeric array of real numbers; got dtype "
                        f"{array.dtype}.")
    return array


def separable_scale(separable_boosts, size_boosts=None):
    """`sum_j max_o |c[o, j]|` of the family's boosts `c` `[m + 1, n]` (0 for None), plus
    `sum_o max_k |g[o, k]|` of the bundle-size family's `g` `[m + 1, n + 1]`
    (`tf_ama.core.bundle_sizes`) if given: bounds every family entry's boost, and is the
    family's `B` in the error bounds."""
    total = 0.0
    for table, axis in ((separable_boosts, 0), (size_boosts, 1)):
        if table is not None:
            table = np.abs(np.asarray(table, np.float64))
            total += float(np.sum(np.max(table, axis=axis))) if table.size else 0.0
    return total


def check_menu_limits(boosts, bidder_weights, separable_boosts=None, size_boosts=None):
    """Raises ValueError naming the argument if boosts, bidder weights or the family's boosts
    are outside the contract (finite, `|boosts| <= MAX_ABS_BOOST`, weights in
    [MIN, MAX_BIDDER_WEIGHT], `separable_scale(separable_boosts, size_boosts) <=
    MAX_ABS_BOOST`)."""
    scale = separable_scale(separable_boosts)
    if not scale <= MAX_ABS_BOOST:  # NaN and inf too
        raise ValueError(
            f"`separable_boosts` must be finite with sum_j max_o |c[o, j]| <= "
            f"{MAX_ABS_BOOST:g}; got {scale:g}.")
    scale = separable_scale(separable_boosts, size_boosts)
    if not scale <= MAX_ABS_BOOST:
        raise ValueError(
            f"`size_boosts` must be finite with sum_j max_o |c[o, j]| + sum_o max_k |g[o, k]| "
            f"<= {MAX_ABS_BOOST:g}; got {scale:g}.")
    boosts = np.asarray(boosts, np.float64)
    bidder_weights = np.asarray(bidder_weights, np.float64)
    if not np.all(np.isfinite(boosts)) or np.any(np.abs(boosts) > MAX_ABS_BOOST):
        raise ValueError(
            f"`boosts` must be finite with |boosts| <= {MAX_ABS_BOOST:g}; got values up to "
            f"{np.max(np.abs(boosts)):g}.")
    if not np.all(np.isfinite(bidder_weights)) or np.any(bidder_weights < MIN_BIDDER_WEIGHT) \
            or np.any(bidder_weights > MAX_BIDDER_WEIGHT):
        raise ValueError(
            f"`bidder_weights` must lie in [{MIN_BIDDER_WEIGHT:g}, {MAX_BIDDER_WEIGHT:g}]; got "
            f"{bidder_weights.tolist()}. Payments divide by the weights, so a weight outside "
            "this range makes them inexact; scale all weights and boosts by one positive "
            "constant (the auction is unchanged) to bring them into the range.")


def contract() -> dict:
    """The accepted inputs and the error bounds as JSON-ready data (written beside every
    exported model, in `assets.extra/tf_ama_config.json`, for whoever serves it)."""
    return {
        "max_bid": MAX_BID,
        "max_abs_boost": MAX_ABS_BOOST,
        "bidder_weight_range": [MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT],
        "welfare_error_bound": "2 (n + m + 1) 2^-53 T + (2n + 1) m 2^-1000",
        "payment_error_bound": "(12 (n + m + 2) 2^-53 T_i + 4 (2n + 1) m 2^-1000) / w_i",
        "regret_error_bound": "2 payment_error_bound + welfare_error_bound / w_i",
        "scales": "T_i = B + sum_{l != i} w_l sum_j v[l, j]; T = the same over all l; "
                  "B = max_k |b_k|, with the item-separable family max(B, sum_j max_o "
                  "|c[o, j]|), with the bundle-size family max(B, sum_j max_o |c[o, j]| + "
                  "sum_o max_k |g[o, k]|)",
        "guarantees": "outputs finite; 0 <= payment <= value; the served entry maximizes "
                      "welfare and each payment equals the exact AMA payment of the served "
                      "entry, up to the bounds; bids outside [0, max_bid] are refused",
        "reference": "docs/design.md section 2 of the tf_ama repository",
    }


def _scales(bids, boosts, bidder_weights, separable_boosts=None, size_boosts=None):
    """`(T_i [batch, m], T [batch])` of the module docstring, in float64."""
    bids = np.asarray(bids, np.float64)
    bidder_weights = np.asarray(bidder_weights, np.float64)
    largest_boost = max(float(np.max(np.abs(np.asarray(boosts, np.float64)))),
                        separable_scale(separable_boosts, size_boosts))
    weighted_totals = bidder_weights * bids.sum(axis=2)  # [batch, m]
    zeros = np.zeros_like(weighted_totals[:, :1])
    # The others' sum from their own terms (bidders before i plus bidders after i), not as
    # total - own, which would lose them beside a huge own bid.
    before = np.concatenate([zeros, np.cumsum(weighted_totals[:, :-1], axis=1)], axis=1)
    after = np.concatenate([np.cumsum(weighted_totals[:, :0:-1], axis=1)[:, ::-1], zeros], axis=1)
    # A relative 2**-40 margin covers the rounding of these sums of nonnegative terms.
    margin = 1 + 2.0**-40
    return (largest_boost + (before + after) * margin,
            largest_boost + weighted_totals.sum(axis=1) * margin)


def _underflow(num_bidders, num_items):
    """The absolute error that flushing subnormal results to zero can add to one sum."""
    return (2 * num_items + 1) * num_bidders * UNDERFLOW


def welfare_error_bound(bids, boosts, bidder_weights, separable_boosts=None, size_boosts=None):
    """`[batch]`: how far below the maximum the served entry's exact welfare can be."""
    _, num_bidders, num_items = np.shape(bids)
    return 2 * (num_items + num_bidders + 1) * UNIT_ROUNDOFF * _scales(
        bids, boosts, bidder_weights, separable_boosts, size_boosts)[1] + _underflow(
            num_bidders, num_items)


def payment_error_bound(bids, boosts, bidder_weights, separable_boosts=None, size_boosts=None):
    """`[batch, num_bidders]`: how far a served payment can be from the exact AMA payment of
    the served entry. Independent of bidder i's own bids."""
    _, num_bidders, num_items = np.shape(bids)
    others, _ = _scales(bids, boosts, bidder_weights, separable_boosts, size_boosts)
    return (12 * (num_items + num_bidders + 2) * UNIT_ROUNDOFF * others
            + 4 * _underflow(num_bidders, num_items)) / np.asarray(bidder_weights, np.float64)


def regret_error_bound(valuations, boosts, bidder_weights, separable_boosts=None,
                       size_boosts=None):
    """`[batch, num_bidders]`: the most any report can gain bidder i over truthful bidding,
    at true `valuations`, through rounding (0 in exact arithmetic: the AMA is strategyproof)."""
    family = (separable_boosts, size_boosts)
    return 2 * payment_error_bound(valuations, boosts, bidder_weights, *family) + (
        welfare_error_bound(valuations, boosts, bidder_weights, *family)[:, None]
        / np.asarray(bidder_weights, np.float64))
