r"""The affine maximizer auction (AMA): exact outcome, regret certificate, soft relaxation.

An AMA over a menu of `K` allocations `a[k]` (`[K, num_bidders, num_items]`), boosts `b[k]`
and positive bidder weights `w[i]`, given bids `v` (`[num_bidders, num_items]`):

    u[i, k]   = sum_j a[k, i, j] * v[i, j]           value of entry k to bidder i
    W[k]      = sum_i w[i] * u[i, k] + b[k]           boosted, weighted welfare
    k*        = argmax_k W[k]                          ties -> lowest index
    W_-i[k]   = b[k] + sum_{l != i} w[l] * u[l, k]     welfare of the others
    p[i]      = (max_k W_-i[k] - W_-i[k*]) / w[i]      payment, >= 0
    outcome   = allocation a[k*], payments p

Truthful bidding is a dominant strategy and `u[i, k*] - p[i] >= 0`. `exact_outcome` computes
this in float64; it is the one function that evaluation, export and the model's `test_step`
call. `W_-i` is summed from the other bidders' terms, never as `W[k] - w[i] u[i, k]` (which
loses the others' terms when `u[i, k]` is huge), so the rounding of a payment does not depend
on the payer's own bids: `tf_ama.core.exactness` states the accepted inputs (e.g. bids <= 1e38)
and the error bounds, proved in docs/design.md and tested against an exact rational oracle.

The regret certificate is exact too: by misreporting, bidder `i` can only select some
entry `k`, at price `P_i(k) = (max W_-i - W_-i[k]) / w[i]`, so the best misreport earns
`max_k (u[i, k] - P_i(k))` (with `u` from true values) and

    regret[i] = max_k (u[i, k] - P_i(k)) - (u[i, k*] - p[i])

is 0 up to rounding for every AMA. `soft_payments` is the training relaxation,
where softmax with inverse temperature `lambda` stands in for every max / argmax.
"""

from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np
import tensorflow as tf

from tf_ama.core import separable
from tf_ama.utils import checks
from tf_ama.core.exactness import (MAX_ABS_BOOST, MAX_BID, MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT,
                              real_array)

# Profiles are evaluated in blocks of exactly `micro_batch_size` profiles (the batch is
# zero-padded to whole blocks): a matmul over another number of rows may take other kernels and
# round the last bit differently, so without the padding a profile's payment would depend on
# the size of its batch (measured on 3x10 and 2x4: a batch of 1 vs the same profile in a batch
# of 64).
#
# Elements of a block's `[profile, bidder + 1, entry]` tensors, for the exact outcome here and
# the training kernel (`relaxation.default_micro_batch_size`) alike: blocks of this size stay in
# cache (benchmarks/README.md, "Training step" for the micro-batch size, "Serving latency" for
# the block size).
CACHE_BLOCK_ELEMENTS = 1 << 18
# A served request of one profile computes a whole block, so the largest block bounds the
# latency of batch 1 (benchmarks/README.md, "Serving latency").
_MIN_MICRO_BATCH, _MAX_MICRO_BATCH = 8, 1024
_FEASIBILITY_TOLERANCE = 1e-9


def _validate_menu(allocations, boosts, bidder_weights):
    """In-graph checks of the menu (one menu, or one per profile: `exact_outcome`); returns
    the float64 tensors (raises on bad values)."""
    allocations = _float64(allocations, "allocations")
    boosts = _float64(boosts, "boosts")
    bidder_weights = _float64(bidder_weights, "bidder_weights")
    if allocations.shape.rank not in (3, 4):
        raise ValueError(
            f"`allocations` must have shape [menu_size, num_bidders, num_items] (or "
            f"[batch, menu_size, num_bidders, num_items]: a menu per profile); got "
            f"{allocations.shape}.")
    batch = [allocations.shape[0]] if allocations.shape.rank == 4 else []  # menu per profile
    menu_size, num_bidders, _ = allocations.shape[-3:]
    if menu_size == 0:
        raise ValueError("`allocations` is an empty menu; give at least the empty allocation.")
    named = "batch, " if batch else ""
    if boosts.shape.rank != len(batch) + 1 or not boosts.shape.is_compatible_with(batch + [menu_size]):
        raise ValueError(f"`boosts` must have shape [{named}menu_size={menu_size}]; got "
                         f"{boosts.shape}.")
    if (bidder_weights.shape.rank != len(batch) + 1
            or not bidder_weights.shape.is_compatible_with(batch + [num_bidders])):
        raise ValueError(f"`bidder_weights` must have shape [{named}num_bidders="
                         f"{num_bidders}]; got {bidder_weights.shape}.")
    checks = [
        tf.debugging.assert_all_finite(allocations, "`allocations` must be finite"),
        tf.debugging.assert_non_negative(allocations, "`allocations` must be >= 0"),
        tf.debugging.assert_less_equal(
            tf.reduce_sum(allocations, axis=-2),
            tf.constant(1.0 + _FEASIBILITY_TOLERANCE, tf.float64),
            "`allocations` is infeasible: an item is allocated more than once "
            "(sum over bidders of allocations[k, :, j] must be <= 1)",
        ),
        tf.debugging.assert_all_finite(boosts, "`boosts` must be finite"),
        tf.debugging.assert_less_equal(
            tf.abs(boosts), tf.constant(MAX_ABS_BOOST, tf.float64),
            f"`boosts` must satisfy |boosts| <= {MAX_ABS_BOOST:g} (tf_ama.core.exactness)"),
        tf.debugging.assert_all_finite(bidder_weights, "`bidder_weights` must be finite"),
        tf.debugging.assert_greater_equal(
            bidder_weights, tf.constant(MIN_BIDDER_WEIGHT, tf.float64),
            f"`bidder_weights` must be >= {MIN_BIDDER_WEIGHT:g} (tf_ama.core.exactness; scale all "
            "weights and boosts by one positive constant to bring them into range)"),
        tf.debugging.assert_less_equal(
            bidder_weights, tf.constant(MAX_BIDDER_WEIGHT, tf.float64),
            f"`bidder_weights` must be <= {MAX_BIDDER_WEIGHT:g} (tf_ama.core.exactness; scale all "
            "weights and boosts by one positive constant to bring them into range)"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(allocations), tf.identity(boosts), tf.identity(bidder_weights)


def validate_separable_boosts(separable_boosts, menu_size, num_bidders, num_items):
    """In-graph checks of the family's boosts `c` (tf_ama.core.separable); returns them."""
    separable_boosts = _float64(separable_boosts, "separable_boosts")
    per_profile = per_profile_menu(separable_boosts, rank=2)
    if separable_boosts.shape[per_profile:] != [num_bidders + 1, num_items]:
        raise ValueError(
            f"`separable_boosts` must have shape [{'batch, ' if per_profile else ''}"
            f"num_bidders + 1={num_bidders + 1}, num_items={num_items}] (a row per bidder, "
            f"then nobody's); got {separable_boosts.shape}.")
    if (menu_size or 0) + separable.family_size(num_bidders, num_items) >= separable.MAX_FAMILY_INDEX:
        raise ValueError(
            f"`separable_boosts`: the family of {num_bidders} bidders and {num_items} items has "
            f"{num_bidders + 1}^{num_items} allocations, too many to index in int64.")
    # A family entry's boost is sum_j c[o_j, j]: bounded like an explicit boost.
    largest = tf.reduce_max(tf.reduce_sum(tf.reduce_max(tf.abs(separable_boosts), axis=-2), axis=-1))
    checked = [
        tf.debugging.assert_all_finite(separable_boosts, "`separable_boosts` must be finite"),
        tf.debugging.assert_less_equal(
            largest, tf.constant(MAX_ABS_BOOST, tf.float64),
            f"`separable_boosts` must satisfy sum_j max_o |c[o, j]| <= {MAX_ABS_BOOST:g} "
            "(tf_ama.core.exactness: a family entry's boost is sum_j c[o_j, j])"),
    ]
    with tf.control_dependencies(checked):
        return tf.identity(separable_boosts)


def validate_bids(bids, num_bidders, num_items, name="bids"):
    """Checks bids `[batch, num_bidders, num_items]` (float64, finite, >= 0), in graph or eagerly."""
    bids = _float64(bids, name)
    if bids.shape.rank is not None and bids.shape.rank != 3:
        raise ValueError(
            f"`{name}` must have shape [batch, num_bidders={num_bidders}, num_items={num_items}]; "
            f"got {bids.shape}. A single profile needs a leading batch axis: bids[None]."
        )
    static = bids.shape.as_list() if bids.shape.rank == 3 else [None, None, None]
    if static[1] not in (None, num_bidders) or static[2] not in (None, num_items):
        raise ValueError(
            f"`{name}` must have shape [batch, num_bidders={num_bidders}, num_items={num_items}]; "
            f"got {bids.shape}."
        )
    # A loaded SavedModel signature does not enforce its TensorSpec shape: assert it. The rank
    # is read from the runtime shape padded with -1s (TF folds tf.rank to the static rank).
    # Checked one after the other, so the message names the first problem (NaN is reported
    # as non-finite, not as negative).
    padded_shape = tf.concat([tf.shape(bids), tf.constant([-1, -1, -1, -1])], axis=0)
    shape_ok = tf.debugging.Assert(
        tf.reduce_all(tf.equal(padded_shape[1:4], tf.constant([num_bidders, num_items, -1]))),
        [f"`{name}` has the wrong shape: expected [batch, num_bidders={num_bidders}, "
         f"num_items={num_items}] (a single profile needs a leading batch axis); got shape",
         tf.shape(bids)], summarize=8)
    with tf.control_dependencies([shape_ok]):
        finite_ok = tf.debugging.assert_all_finite(
            bids, f"`{name}` must be finite (no NaN or inf)")
    with tf.control_dependencies([finite_ok]):
        non_negative_ok = tf.debugging.assert_non_negative(
            bids, f"`{name}` must be >= 0 (negative bid)")
    with tf.control_dependencies([non_negative_ok]):
        at_most_max_ok = tf.debugging.assert_less_equal(
            bids, tf.constant(MAX_BID, tf.float64),
            f"`{name}` must be <= {MAX_BID:g} (tf_ama.core.exactness.MAX_BID: no amount is larger; "
            "the limit keeps the exact outcome far from float64 overflow)")
    with tf.control_dependencies([at_most_max_ok]):
        return tf.identity(bids)


def per_profile_menu(tensor, rank):
    """Whether a menu tensor whose one-menu form has rank `rank` has each profile's own
    (a leading batch axis: a contextual menu); refuses any other rank."""
    if tensor.shape.rank not in (rank, rank + 1):
        raise ValueError(f"A menu tensor must have rank {rank} (one menu) or {rank + 1} (a menu "
                         f"per profile); got shape {tensor.shape}.")
    return tensor.shape.rank == rank + 1


def _float64(value, name):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        tensor = tf.convert_to_tensor(value)
    else:
        tensor = tf.convert_to_tensor(real_array(value, name))
    if tensor.dtype != tf.float64:
        raise TypeError(
            f"`{name}` must be float64 (the exact outcome is computed in float64); got "
            f"{tensor.dtype.name}. Cast it first, e.g. tf.cast({name}, tf.float64)."
        )
    return tensor


def others_welfare(weighted, boosts):
    """`W_-i[k] = b_k + sum_{l != i} w_l u_l[k]` (`[m, B, K]`) from `weighted = w_i u_i[k]`
    (`[m, B, K]`), summed from the OTHER bidders' terms only: for two bidders the other one's
    term, for more the bidders before `i` plus the bidders after `i` (running sums from both
    ends, about 3m additions of `[B, K]`).

    Never `W[k] - w_i u_i[k]`: that subtraction cancels the others' terms when `u_i` is huge
    (a bid of 1e16 made an item free). Here bidder i's own bid does not enter the rounding of
    its payment (docs/design.md, "The exactness contract"). Its cost against the subtraction,
    and the variants measured and not kept (`tf.cumsum` over the bidder axis, a matmul with
    `1 - I`), are in benchmarks/README.md, "Exact payments".
    """
    num_bidders = weighted.shape[0]
    if num_bidders == 1:  # W_-0 = b
        return tf.broadcast_to(boosts, tf.shape(weighted))
    if num_bidders == 2:  # each bidder's others are the other bidder: one op, no stack
        return tf.reverse(weighted, axis=[0]) + boosts
    terms = [weighted[i] for i in range(num_bidders)]  # [B, K] each
    before, after = [None], [None]  # before[i] = sum_{l < i}, after[i] = sum_{l > i}
    for term in terms[:-1]:
        before.append(term if before[-1] is None else before[-1] + term)
    for term in terms[:0:-1]:
        after.append(term if after[-1] is None else term + after[-1])
    after.reverse()
    others = [(first if second is None else second if first is None else first + second)
              + boosts for first, second in zip(before, after)]
    # One tensor, read by both the max and the gather at k*: under XLA, two fusions that each
    # recomputed W_-i could round it differently (FMA in one, not the other) and make a
    # payment depend on the block size.
    stacked = tf.stack(others)
    return stacked[:, 0] if stacked.shape.rank == 4 else stacked


def _outcome_block(bids, allocations, boosts, bidder_weights, with_certificate,
                   with_counterfactual=False, separable_boosts=None):
    """Exact outcome of one block of profiles; all float64, shapes as in `exact_outcome`.

    Works in the bidder-major `[m, B, K]` layout: the contraction is one batched matmul and
    no `[B, m, K]` tensor is transposed. With `separable_boosts`, the item-separable family
    (`tf_ama.core.separable`) joins the explicit menu: each max is the larger of the two parts'.
    A menu per profile (a leading batch axis on every menu tensor) broadcasts through the same
    formulas; only the contraction and the gather of the allocation differ.
    """
    num_bidders = bids.shape[1]
    per_profile = allocations.shape.rank == 4
    menu_size = tf.shape(allocations)[-3]
    bids_by_bidder = tf.transpose(bids, [1, 0, 2])  # [m, B, n]
    if per_profile:  # [m, B, 1, n] x [m, B, n, K]
        values = tf.matmul(bids_by_bidder[:, :, None, :],
                           tf.transpose(allocations, [2, 0, 3, 1]))[:, :, 0, :]
        weights = tf.transpose(bidder_weights)  # [m, B]
    else:
        values = tf.matmul(bids_by_bidder, tf.transpose(allocations, [1, 2, 0]))  # u: [m, B, K]
        weights = bidder_weights[:, None]  # [m, 1]
    weighted = weights[:, :, None] * values  # w_i u_ik
    welfare = tf.reduce_sum(weighted, axis=0) + boosts  # W: [B, K]
    best = tf.reduce_max(welfare, axis=1, keepdims=True)
    # Lowest index among the maximizers (tf.argmax does not promise it).
    indices = tf.range(menu_size, dtype=tf.int64)
    menu_index = tf.reduce_min(
        tf.where(welfare == best, indices[None, :], tf.cast(menu_size, tf.int64)), axis=1)
    # A menu per profile adds its boosts as [1, B, K], of another shape than the bidders'
    # [B, K] terms: graph optimization (grappler's AddOpsRewrite) turns a chain of additions
    # of ONE shape into an AddN that sums in its own order, so the served graph and eager
    # execution would differ in the last bit (measured from 3 bidders); with the shapes
    # apart it keeps the sums as written. (One menu's boosts [K] are apart already.)
    others = others_welfare(weighted, boosts[None] if per_profile else boosts)  # W_-i: [m, B, K]
    best_others = tf.reduce_max(others, axis=2)  # [m, B]
    # (bidder, profile, k*) for every bidder and profile: gathers of m * B elements.
    batch = tf.shape(bids, out_type=tf.int64)[0]
    at_chosen = tf.stack(tf.meshgrid(tf.range(num_bidders, dtype=tf.int64), tf.range(batch),
                                     indexing="ij") + [tf.tile(menu_index[None], [num_bidders, 1])],
                         axis=-1)  # [m, B, 3]
    chosen_values = tf.gather_nd(values, at_chosen)  # u_i[k*]: [m, B]
    chosen_others = tf.gather_nd(others, at_chosen)  # W_-i[k*]: [m, B]
    allocation = tf.gather(allocations, menu_index, batch_dims=int(per_profile))
    if separable_boosts is not None:
        family = separable.family_block(
            bids_by_bidder, bidder_weights, separable_boosts, tf.cast(menu_size, tf.int64),
            with_counterfactual)
        wins = family["best"] > best[:, 0]  # strict: ties go to the explicit menu
        explicit_others_best = best_others
        best_others = tf.maximum(best_others, family["others_best"])
        chosen_values = tf.where(wins[None], family["values"], chosen_values)
        chosen_others = tf.where(wins[None], family["chosen_others"], chosen_others)
        menu_index = tf.where(wins, family["index"], menu_index)
        allocation = tf.where(wins[:, None, None], family["allocation"], allocation)
    # The max over k includes k*, so the difference is >= 0 (the clip at 0 only matters if
    # XLA rounds the two reads of W_-i differently). The clip at the value received removes
    # the rounding of a near-tie between k* and another entry: IR holds exactly.
    unclipped = (best_others - chosen_others) / weights  # [m, B]
    payments = tf.minimum(tf.maximum(unclipped, 0.0), chosen_values)
    outcome = {
        "allocation": allocation,
        "payments": tf.transpose(payments),
        "menu_index": menu_index,
        "values": tf.transpose(chosen_values),
    }
    if with_certificate:
        # P_i(k) = (max W_-i - W_-i[k]) / w_i, with 1 / w_i multiplied rather than divided
        # per element (a division per element costs as much as the rest of the certificate).
        prices = (best_others[:, :, None] - others) * (1.0 / weights[:, :, None])  # [m, B, K]
        best_utility = tf.reduce_max(values - prices, axis=2)  # best misreport, true values
        if separable_boosts is not None:  # over the family: max_a (w_i u_i + W_-i) = its best
            best_utility = tf.maximum(
                best_utility, (family["best"][None] - best_others) * (1.0 / weights))
        outcome["regret"] = tf.transpose(best_utility - (chosen_values - payments))
        # How far the formula's payment exceeds the value before the clip: rounding (~1e-16)
        # for an AMA; anything larger would be a real IR violation.
        outcome["ir_excess"] = tf.transpose(tf.maximum(unclipped - chosen_values, 0.0))
    if with_counterfactual:
        # The lowest index attaining max_k W_-i[k]: the entry that sets bidder i's payment.
        explicit_best = explicit_others_best if separable_boosts is not None else best_others
        counterfactual = tf.reduce_min(tf.where(
            others == explicit_best[:, :, None], indices[None, None, :],
            tf.cast(menu_size, tf.int64)), axis=2)
        if separable_boosts is not None:  # strict again: ties go to the explicit menu
            counterfactual = tf.where(family["others_best"] > explicit_best,
                                      family["counterfactual_index"], counterfactual)
        outcome["counterfactual_index"] = tf.transpose(counterfactual)
    return outcome


def cache_sized_batch(num_bidders, menu_size, elements, smallest, largest):
    """Profiles per block: the power of two in [smallest, largest] nearest below
    `elements / ((num_bidders + 1) * menu_size)`, so that a block's `[profile, bidder + 1,
    entry]` tensors hold about `elements` elements."""
    target = max(1, elements // ((num_bidders + 1) * max(int(menu_size), 1)))
    return int(min(largest, max(smallest, 1 << (target.bit_length() - 1))))


def default_micro_batch_size(num_bidders, menu_size):
    """Profiles per block of `exact_outcome`: a power of two in [8, 1024], ~2^18
    `[profile, bidder + 1, entry]` elements (a ~2 MB float64 block that stays in cache).

    Not `relaxation.default_micro_batch_size` (training, up to 4096 profiles): here every
    block is computed whole, padding included, so the cap of 1024 bounds what a request of
    one profile costs the served model."""
    return cache_sized_batch(num_bidders, menu_size, CACHE_BLOCK_ELEMENTS, _MIN_MICRO_BATCH,
                             _MAX_MICRO_BATCH)


def default_chunk_size(num_bidders, menu_size):
    """Deprecated name of `default_micro_batch_size`."""
    warnings.warn("`tf_ama.core.mechanism.default_chunk_size` is deprecated; it is now called "
                  "`default_micro_batch_size` (same value).", DeprecationWarning, stacklevel=2)
    return default_micro_batch_size(num_bidders, menu_size)


def exact_outcome(bids, allocations, boosts, bidder_weights, separable_boosts=None, *,
                  micro_batch_size=None, with_certificate=False, with_counterfactual=False,
                  jit_compile=False, chunk_size=checks.RENAMED):
    """The exact AMA outcome in float64 for a batch of bid profiles.

    The menu's arguments are in the order of `tf_ama.core.allocations.Menu` (`model.menu()`), so
    `exact_outcome(bids, *model.menu(tf.float64))` serves the model's menu.

    Args:
      bids: float64 `[batch, num_bidders, num_items]`, finite and >= 0.
      allocations: float64 `[menu_size, num_bidders, num_items]`, feasible (each item's
        allocations sum to <= 1).
      boosts: float64 `[menu_size]`.
      bidder_weights: float64 `[num_bidders]`, > 0.
      separable_boosts: None, or float64 `c` `[num_bidders + 1, num_items]`: the
        item-separable family joins the menu (`tf_ama.core.separable`: every allocation of each
        item to one bidder or nobody, boost `sum_j c[o_j, j]`; its entries follow the
        explicit ones, menu index `menu_size + rank`). Additive valuations only.
      micro_batch_size: profiles per block (bounds memory to a few `[micro_batch_size,
        num_bidders + 1, menu_size]` tensors; default `default_micro_batch_size`). Every block
        has exactly this many profiles (zero-padded), so a profile's outcome does not depend
        on its batch, bit for bit.
      with_certificate: also return `regret`, the exact regret certificate `[batch, num_bidders]`,
        and `ir_excess` `[batch, num_bidders]`: how much the payment formula exceeded the value
        before the clip that removes rounding (0 up to rounding for an AMA).
      with_counterfactual: also return `counterfactual_index` int64 `[batch, num_bidders]`, the
        lowest index attaining `max_k W_-i[k]` (the entry that sets bidder i's payment; what
        the AMA would choose if bidder i bid 0).
      jit_compile: compute the blocks with XLA, which fuses the float64 passes of a block
        (faster on CPU: benchmarks/README.md, "Exact evaluation"). Same formula and the
        same menu index on every profile tested, but XLA may round the last bits of payments
        differently (it may fuse a multiply into an add): they agree to ~1e-14 in the tests. Batch
        invariance holds within each mode. The exported serving signature uses the
        default (False), which TF Serving runs without XLA, so pass False to reproduce
        served payments bit for bit.
      chunk_size: deprecated name of `micro_batch_size`.

    Returns:
      A dict: `allocation` float64 `[batch, num_bidders, num_items]`, `payments` float64
      `[batch, num_bidders]`, `menu_index` int64 `[batch]` (ties to the lowest index),
      `values` float64 `[batch, num_bidders]` (value of the allocation to each bidder at
      the bids; utility = values - payments), and `regret` if requested.

    Exactness (`tf_ama.core.exactness`): outputs are finite, `0 <= payments <= values`, the served
    entry maximizes welfare up to `welfare_error_bound` and each payment is within
    `payment_error_bound` of the exact payment of the served entry (~1e-14 at unit scale),
    a bound that does not involve the payer's own bids.

    Raises:
      TypeError / ValueError (eagerly) or InvalidArgumentError (in a graph) naming the
      bad argument: non-float64 input, NaN / inf, negative bids or bids above
      `exactness.MAX_BID`, wrong shapes, an empty or infeasible menu, boosts or weights
      outside the `tf_ama.core.exactness` limits.
    """
    allocations, boosts, bidder_weights = _validate_menu(allocations, boosts, bidder_weights)
    menu_size, num_bidders, num_items = allocations.shape[-3:]
    if separable_boosts is not None:
        separable_boosts = validate_separable_boosts(separable_boosts, menu_size, num_bidders,
                                                      num_items)
    # Static shape from here on (validate_bids has asserted it, also for an unknown rank).
    bids = tf.ensure_shape(validate_bids(bids, num_bidders, num_items),
                           [None, num_bidders, num_items])
    if allocations.shape.rank == 4:  # a menu per profile: one per bid profile
        if separable_boosts is not None and separable_boosts.shape.rank != 3:
            raise ValueError("`separable_boosts` must have a leading batch axis like the other "
                             "menu tensors (a menu per profile).")
        menu = [allocations, boosts, bidder_weights] + (
            [] if separable_boosts is None else [separable_boosts])
        same = [tf.debugging.assert_equal(
            tf.shape(t)[0], tf.shape(bids)[0], message=(
                "A menu per profile needs one menu per bid profile: the leading axis of "
                "`allocations`, `boosts`, `bidder_weights` (and `separable_boosts`) must "
                "equal the batch of `bids`.")) for t in menu]
        with tf.control_dependencies(same):
            bids = tf.identity(bids)
    jit_compile = checks.boolean("jit_compile", jit_compile)
    micro_batch_size = checks.optional(
        checks.integer, "micro_batch_size",
        checks.renamed("chunk_size", chunk_size, "micro_batch_size", micro_batch_size),
        minimum=1)
    if micro_batch_size is None:
        micro_batch_size = default_micro_batch_size(num_bidders, menu_size)

    # The checks above run as ordinary TensorFlow ops, outside the compiled part; only the
    # arithmetic is compiled.
    options = dict(micro_batch_size=micro_batch_size, with_certificate=bool(with_certificate),
                   with_counterfactual=bool(with_counterfactual))
    if jit_compile:
        return _compiled_blocks(**options)(bids, allocations, boosts, bidder_weights,
                                           separable_boosts)
    return _blocks(bids, allocations, boosts, bidder_weights, separable_boosts, **options)


def _blocks(bids, allocations, boosts, bidder_weights, separable_boosts=None, *,
            micro_batch_size, with_certificate, with_counterfactual):
    """The outcome of validated bids, block by block (see `exact_outcome`). A menu per
    profile is cut into the same blocks as the bids (padded with the empty menu, weights 1)."""
    menu = (allocations, boosts, bidder_weights, separable_boosts)
    per_profile = allocations.shape.rank == 4
    blocked = (bids, *menu) if per_profile else (bids,)

    def block(tensors):
        block_menu = tensors[1:] if per_profile else menu
        return _outcome_block(tensors[0], *block_menu[:3], with_certificate,
                              with_counterfactual, block_menu[3])

    if bids.shape[0] == micro_batch_size:
        return block(blocked)
    return _mapped(blocked, micro_batch_size, block, with_certificate, with_counterfactual)


@functools.cache
def _compiled_blocks(*, micro_batch_size, with_certificate, with_counterfactual):
    """`_blocks` compiled with XLA: one `tf.function` per option set, one executable per shape."""
    return tf.function(
        functools.partial(_blocks, micro_batch_size=micro_batch_size,
                          with_certificate=with_certificate,
                          with_counterfactual=with_counterfactual),
        jit_compile=True, autograph=False)


def _mapped(tensors, size, block, with_certificate, with_counterfactual):
    """`block` over blocks of exactly `size` profiles of `tensors` (bids first, then, if a
    menu per profile, its tensors; None stays None), zero-padded (bidder weights with 1, so
    that a padded profile divides by nothing smaller), padding dropped."""
    bids = tensors[0]
    _, num_bidders, num_items = bids.shape
    batch = tf.shape(bids)[0]
    # At least one block, also for an empty batch: XLA compiles the loop body even when it
    # never runs, and a block cannot be read from an empty list.
    num_blocks = tf.maximum((batch + size - 1) // size, 1)

    def blocks_of(tensor, padding):
        if tensor is None:
            return None
        rest = tensor.shape[1:]
        padded = tf.pad(tensor, [[0, num_blocks * size - batch]] + [[0, 0]] * len(rest),
                        constant_values=padding)
        return tf.reshape(padded, [num_blocks, size, *rest])

    paddings = (0.0, 0.0, 0.0, 1.0, 0.0)  # bids, allocations, boosts, weights, c
    blocks = tuple(blocks_of(t, p) for t, p in zip(tensors, paddings))
    if blocks[-1] is None:  # map_fn maps over tensors only
        blocks, block = blocks[:-1], _with_none(block)
    signature = {
        "allocation": tf.TensorSpec([size, num_bidders, num_items], tf.float64),
        "payments": tf.TensorSpec([size, num_bidders], tf.float64),
        "menu_index": tf.TensorSpec([size], tf.int64),
        "values": tf.TensorSpec([size, num_bidders], tf.float64),
    }
    if with_certificate:
        signature["regret"] = tf.TensorSpec([size, num_bidders], tf.float64)
        signature["ir_excess"] = tf.TensorSpec([size, num_bidders], tf.float64)
    if with_counterfactual:
        signature["counterfactual_index"] = tf.TensorSpec([size, num_bidders], tf.int64)
    mapped = tf.map_fn(block, blocks, fn_output_signature=signature, parallel_iterations=1)
    return {
        key: tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))[:batch]
        for key, value in mapped.items()
    }


def _with_none(block):
    """`block` of a tuple missing its last element (None: a menu without the family)."""
    return lambda tensors: block((*tensors, None))


def regret_certificate(bids, allocations, boosts, bidder_weights, separable_boosts=None, *,
                       micro_batch_size=None, chunk_size=checks.RENAMED):
    """The exact regret certificate `[batch, num_bidders]` (0 up to rounding for an AMA);
    `chunk_size` is the deprecated name of `micro_batch_size`."""
    micro_batch_size = checks.renamed("chunk_size", chunk_size, "micro_batch_size",
                                      micro_batch_size)
    return exact_outcome(bids, allocations, boosts, bidder_weights,
                         separable_boosts=separable_boosts, micro_batch_size=micro_batch_size,
                         with_certificate=True)["regret"]


def soft_payments(valuations, allocations, boosts, bidder_weights, temperature,
                  separable_boosts=None):
    """The softmax relaxation of the AMA payments, differentiable.

    Args:
      valuations: `[batch, num_bidders, num_items]`.
      allocations: `[menu_size, num_bidders, num_items]`.
      boosts: `[menu_size]`; bidder_weights: `[num_bidders]`. (Or a menu per profile: every
        menu tensor with a leading `batch` axis, e.g. a contextual menu.)
      temperature: `lambda`, the inverse softmax temperature (100 in the paper).
      separable_boosts: None, or `c` `[num_bidders + 1, num_items]`: the item-separable
        family joins the menu (`tf_ama.core.separable`); each softmax is then over the union, a
        two-part mixture whose family part factorizes over items (`separable.soft_family`).

    Returns:
      `[batch, num_bidders]` soft payments
      `(sum_k softmax(l W_-i)[k] W_-i[k] - sum_k softmax(l W)[k] W_-i[k]) / w_i`.
    """
    _check_soft_shapes(valuations, allocations, boosts, bidder_weights, temperature)
    if len(allocations.shape) == 4:  # a menu per profile
        values = tf.einsum("bij,bkij->bik", valuations, allocations)
        weights = bidder_weights[:, :, None]
    else:
        values = tf.einsum("bij,kij->bik", valuations, allocations)  # one contraction: [B, m, K]
        weights = bidder_weights[None, :, None]
    weighted = weights * values
    welfare = tf.reduce_sum(weighted, axis=1) + boosts  # [B, K]
    others = welfare[:, None, :] - weighted  # [B, m, K]
    chosen = tf.nn.softmax(temperature * welfare, axis=-1)  # [B, K]
    counterfactual = tf.nn.softmax(temperature * others, axis=-1)  # [B, m, K]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1)
    expected_with = tf.einsum("bk,bik->bi", chosen, others)
    if separable_boosts is not None:
        log_z, family_with, log_z_others, family_without = separable.soft_family(
            valuations, bidder_weights, separable_boosts, temperature)
        # The family's share of each partition function, Z_F / (Z_F + Z_explicit).
        share = tf.sigmoid(log_z - tf.reduce_logsumexp(temperature * welfare, axis=-1))
        share_others = tf.sigmoid(
            log_z_others - tf.reduce_logsumexp(temperature * others, axis=-1))
        expected_with += share[:, None] * (family_with - expected_with)
        expected_without += share_others * (family_without - expected_without)
    return (expected_without - expected_with) / weights[:, :, 0]


def _check_soft_shapes(valuations, allocations, boosts, bidder_weights, temperature):
    """Static (free, trace-time) checks of `soft_payments`' arguments, naming the bad one."""

    def shape(value):
        return tf.TensorShape(value.shape if hasattr(value, "shape") else np.shape(value))

    valuations_shape, allocations_shape = shape(valuations), shape(allocations)
    if valuations_shape.rank not in (None, 3):
        raise ValueError(
            f"`valuations` must have shape [batch, num_bidders, num_items]; got {valuations_shape}."
        )
    if allocations_shape.rank not in (None, 3, 4):
        raise ValueError(
            f"`allocations` must have shape [menu_size, num_bidders, num_items] (or a menu per "
            f"profile, [batch, menu_size, num_bidders, num_items]); got {allocations_shape}."
        )
    batch = []
    if allocations_shape.rank == 4:
        batch, allocations_shape = allocations_shape[:1], allocations_shape[1:]
    if valuations_shape.rank == 3 and allocations_shape.rank == 3 and not (
        valuations_shape[1:].is_compatible_with(allocations_shape[1:])
    ):
        raise ValueError(
            f"`valuations` {valuations_shape} and `allocations` {allocations_shape} disagree on "
            "[num_bidders, num_items]."
        )
    menu_size = allocations_shape[0] if allocations_shape.rank == 3 else None
    num_bidders = allocations_shape[1] if allocations_shape.rank == 3 else None
    if not shape(boosts).is_compatible_with(batch + [menu_size]):
        raise ValueError(f"`boosts` must have shape [menu_size={menu_size}]; got {shape(boosts)}.")
    if not shape(bidder_weights).is_compatible_with(batch + [num_bidders]):
        raise ValueError(
            f"`bidder_weights` must have shape [num_bidders={num_bidders}]; got "
            f"{shape(bidder_weights)}."
        )
    if isinstance(temperature, (numbers.Number, np.number)):  # not a tensor: checked here
        checks.number("temperature", temperature, above=0)
