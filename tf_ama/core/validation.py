"""The checks of the exact outcome's arguments, in the graph: a menu (feasible allocations,
bounded boosts, bidder weights in range), the item-separable family's boosts, and bids
(float64, the menu's shape, finite, >= 0, at most `tf_ama.core.exactness.MAX_BID`). Each
failure names the argument and the fix; nothing is coerced.
"""

from __future__ import annotations

import tensorflow as tf

from tf_ama.core import bundle_sizes, separable
from tf_ama.core.exactness import (MAX_ABS_BOOST, MAX_BID, MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT,
                                   real_array)

# Profiles are evaluated in blocks of exactly `micro_batch_size` profiles (the batch is
# zero-padded to whole blocks; `tf_ama.core.blocks.outcome_block_size` by default): a matmul
# over another number of rows may take other kernels and round the last bit differently, so
# without the padding a profile's payment would depend on the size of its batch (measured on
# 3x10 and 2x4: a batch of 1 vs the same profile in a batch of 64).
_FEASIBILITY_TOLERANCE = 1e-9


def validate_menu(allocations, boosts, bidder_weights):
    """In-graph checks of the menu (one menu, or one per profile: `exact_outcome`); returns
    the float64 tensors (raises on bad values)."""
    allocations = float64_tensor(allocations, "allocations")
    boosts = float64_tensor(boosts, "boosts")
    bidder_weights = float64_tensor(bidder_weights, "bidder_weights")
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
    separable_boosts = float64_tensor(separable_boosts, "separable_boosts")
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


def validate_size_boosts(size_boosts, separable_boosts, num_bidders, num_items):
    """In-graph checks of the bundle-size family's `g` (tf_ama.core.bundle_sizes); returns it."""
    size_boosts = float64_tensor(size_boosts, "size_boosts")
    if separable_boosts is None:
        raise ValueError("`size_boosts` extends the item-separable family: give "
                         "`separable_boosts` too (zeros for none).")
    if separable_boosts.shape.rank != 2 or size_boosts.shape.rank != 2:
        raise ValueError("`size_boosts` is for one menu: a menu per profile (a leading batch "
                         f"axis) is not supported; got shape {size_boosts.shape}.")
    if size_boosts.shape != [num_bidders + 1, num_items + 1]:
        raise ValueError(
            f"`size_boosts` must have shape [num_bidders + 1={num_bidders + 1}, num_items + "
            f"1={num_items + 1}] (g[o, k]: a row per bidder, then nobody's; a column per "
            f"bundle size 0..{num_items}); got {size_boosts.shape}.")
    bundle_sizes.check_count_states(num_bidders, num_items)
    # An entry's boost is sum_j c[o_j, j] + sum_o g[o, k_o]: bounded like an explicit boost.
    largest = (tf.reduce_sum(tf.reduce_max(tf.abs(separable_boosts), axis=0))
               + tf.reduce_sum(tf.reduce_max(tf.abs(size_boosts), axis=1)))
    checked = [
        tf.debugging.assert_all_finite(size_boosts, "`size_boosts` must be finite"),
        tf.debugging.assert_less_equal(
            largest, tf.constant(MAX_ABS_BOOST, tf.float64),
            f"`size_boosts` must satisfy sum_j max_o |c[o, j]| + sum_o max_k |g[o, k]| <= "
            f"{MAX_ABS_BOOST:g} (tf_ama.core.exactness: it bounds every entry's boost)"),
    ]
    with tf.control_dependencies(checked):
        return tf.identity(size_boosts)


def validate_bids(bids, num_bidders, num_items, name="bids"):
    """Checks bids `[batch, num_bidders, num_items]` (float64, finite, >= 0), in graph or eagerly."""
    bids = float64_tensor(bids, name)
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


def float64_tensor(value, name):
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
