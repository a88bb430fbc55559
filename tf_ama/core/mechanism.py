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

import tensorflow as tf

from tf_ama.core import bundle_sizes, separable
from tf_ama.core.allocations import Menu
from tf_ama.core.blocks import outcome_block_size, program_block_size
from tf_ama.core.validation import (validate_bids, validate_menu, validate_separable_boosts,
                                    validate_size_boosts)
from tf_ama.utils import checks


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


class ListedEntries:
    """The part of a menu whose entries are listed (`allocations [K, m, n]`, `boosts [K]`,
    or a menu per profile: `[B, K, m, n]`, `[B, K]`) in one block of profiles: its best
    entry, and the others' best welfare over it. Each part of a menu (this one, the
    item-separable family: `tf_ama.core.separable.FamilyEntries`) has these fields, over
    its own entries:

        best [B], index [B] (menu index of the best entry), allocation [B, m, n],
        chosen_values [m, B] (values of the best entry), chosen_others [m, B] (`W_-i` of
        the best entry), others_best [m, B] (`max W_-i`),

    and `best_utility(best_others, weights)` (the best misreport's utility over its entries,
    for the certificate) and `counterfactual()` (the lowest index attaining its
    `others_best`). `_outcome_block` combines the parts; a new kind of entries is a new part.

    Works in the bidder-major `[m, B, K]` layout: the contraction is one batched matmul and
    no `[B, m, K]` tensor is transposed. A menu per profile broadcasts through the same
    formulas; only the contraction and the gather of the allocation differ.
    """

    def __init__(self, bids_by_bidder, allocations, boosts, weights):
        per_profile = allocations.shape.rank == 4
        num_bidders = bids_by_bidder.shape[0]
        self.size = tf.shape(allocations)[-3]
        if per_profile:  # [m, B, 1, n] x [m, B, n, K]
            values = tf.matmul(bids_by_bidder[:, :, None, :],
                               tf.transpose(allocations, [2, 0, 3, 1]))[:, :, 0, :]
        else:
            values = tf.matmul(bids_by_bidder, tf.transpose(allocations, [1, 2, 0]))  # u: [m, B, K]
        weighted = weights[:, :, None] * values  # w_i u_ik
        welfare = tf.reduce_sum(weighted, axis=0) + boosts  # W: [B, K]
        best = tf.reduce_max(welfare, axis=1, keepdims=True)
        # Lowest index among the maximizers (tf.argmax does not promise it).
        self.indices = tf.range(self.size, dtype=tf.int64)
        self.index = tf.reduce_min(
            tf.where(welfare == best, self.indices[None, :], tf.cast(self.size, tf.int64)),
            axis=1)
        # A menu per profile adds its boosts as [1, B, K], of another shape than the
        # bidders' [B, K] terms: graph optimization (grappler's AddOpsRewrite) turns a chain
        # of additions of ONE shape into an AddN that sums in its own order, so the served
        # graph and eager execution would differ in the last bit (measured from 3 bidders);
        # with the shapes apart it keeps the sums as written. (One menu's boosts [K] are
        # apart already.)
        self.others = others_welfare(weighted, boosts[None] if per_profile else boosts)
        self.others_best = tf.reduce_max(self.others, axis=2)  # [m, B]
        # (bidder, profile, k*) for every bidder and profile: gathers of m * B elements.
        batch = tf.shape(bids_by_bidder, out_type=tf.int64)[1]
        at_chosen = tf.stack(tf.meshgrid(tf.range(num_bidders, dtype=tf.int64), tf.range(batch),
                                         indexing="ij")
                             + [tf.tile(self.index[None], [num_bidders, 1])], axis=-1)  # [m, B, 3]
        self.values = values
        self.best = best[:, 0]
        self.chosen_values = tf.gather_nd(values, at_chosen)  # u_i[k*]: [m, B]
        self.chosen_others = tf.gather_nd(self.others, at_chosen)  # W_-i[k*]: [m, B]
        self.allocation = tf.gather(allocations, self.index, batch_dims=int(per_profile))

    def best_utility(self, best_others, weights):
        """`max_k (u_i[k] - P_i(k))` `[m, B]`, with `P_i(k) = (best_others - W_-i[k]) / w_i`
        (1 / w_i multiplied rather than divided per element: a division per element costs as
        much as the rest of the certificate)."""
        prices = (best_others[:, :, None] - self.others) * (1.0 / weights[:, :, None])
        return tf.reduce_max(self.values - prices, axis=2)  # best misreport, true values

    def counterfactual(self):
        """The lowest index attaining `others_best` `[m, B]`: the entry that sets bidder i's
        payment (if no later part beats it)."""
        return tf.reduce_min(tf.where(
            self.others == self.others_best[:, :, None], self.indices[None, None, :],
            tf.cast(self.size, tf.int64)), axis=2)


def _outcome_block(bids, allocations, boosts, bidder_weights, with_certificate,
                   with_counterfactual=False, separable_boosts=None, size_boosts=None):
    """Exact outcome of one block of profiles; all float64, shapes as in `exact_outcome`.

    The menu is the union of its parts (`ListedEntries`, then the item-separable family's
    `tf_ama.core.separable.FamilyEntries` if it joins, or the bundle-size family's
    `tf_ama.core.bundle_sizes.SizeFamilyEntries` with `size_boosts`), in the order of their
    menu indices:
    each max is the largest of the parts', ties going to the earlier part (the lower index).
    """
    bids_by_bidder = tf.transpose(bids, [1, 0, 2])  # [m, B, n]
    per_profile = allocations.shape.rank == 4
    weights = tf.transpose(bidder_weights) if per_profile else bidder_weights[:, None]  # [m, B|1]
    parts = [ListedEntries(bids_by_bidder, allocations, boosts, weights)]
    if size_boosts is not None:
        parts.append(bundle_sizes.SizeFamilyEntries(
            bids_by_bidder, bidder_weights, separable_boosts, size_boosts,
            tf.cast(parts[0].size, tf.int64), with_counterfactual))
    elif separable_boosts is not None:
        parts.append(separable.FamilyEntries(
            bids_by_bidder, bidder_weights, separable_boosts,
            tf.cast(parts[0].size, tf.int64), with_counterfactual))
    first = parts[0]
    best, best_others, menu_index = first.best, first.others_best, first.index
    chosen_values, chosen_others, allocation = (first.chosen_values, first.chosen_others,
                                                first.allocation)
    for part in parts[1:]:
        wins = part.best > best  # strict: ties go to the earlier part
        best = tf.maximum(best, part.best)
        best_others = tf.maximum(best_others, part.others_best)
        chosen_values = tf.where(wins[None], part.chosen_values, chosen_values)
        chosen_others = tf.where(wins[None], part.chosen_others, chosen_others)
        menu_index = tf.where(wins, part.index, menu_index)
        allocation = tf.where(wins[:, None, None], part.allocation, allocation)
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
        best_utility = first.best_utility(best_others, weights)
        for part in parts[1:]:
            best_utility = tf.maximum(best_utility, part.best_utility(best_others, weights))
        outcome["regret"] = tf.transpose(best_utility - (chosen_values - payments))
        # How far the formula's payment exceeds the value before the clip: rounding (~1e-16)
        # for an AMA; anything larger would be a real IR violation.
        outcome["ir_excess"] = tf.transpose(tf.maximum(unclipped - chosen_values, 0.0))
    if with_counterfactual:
        counterfactual, reached = first.counterfactual(), first.others_best
        for part in parts[1:]:  # strict again: ties go to the earlier part
            counterfactual = tf.where(part.others_best > reached, part.counterfactual(),
                                      counterfactual)
            reached = tf.maximum(reached, part.others_best)
        outcome["counterfactual_index"] = tf.transpose(counterfactual)
    return outcome


def exact_outcome(bids, allocations, boosts, bidder_weights, separable_boosts=None,
                  size_boosts=None, *,
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
      size_boosts: None, or float64 `g` `[num_bidders + 1, num_items + 1]` (with
        `separable_boosts`): the family becomes the bundle-size family
        (`tf_ama.core.bundle_sizes`: each entry's boost adds `sum_o g[o, k_o]`, owner `o`
        holding `k_o` items), same entries and menu indices. One menu only.
      micro_batch_size: profiles per block (bounds memory to a few `[micro_batch_size,
        num_bidders + 1, menu_size]` tensors; default `menu_block_size`). Every block
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
    allocations, boosts, bidder_weights = validate_menu(allocations, boosts, bidder_weights)
    menu_size, num_bidders, num_items = allocations.shape[-3:]
    if separable_boosts is not None:
        separable_boosts = validate_separable_boosts(separable_boosts, menu_size, num_bidders,
                                                      num_items)
    if size_boosts is not None:
        size_boosts = validate_size_boosts(size_boosts, separable_boosts, num_bidders,
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
        micro_batch_size = menu_block_size(Menu(allocations, boosts, bidder_weights,
                                                separable_boosts, size_boosts))

    # The checks above run as ordinary TensorFlow ops, outside the compiled part; only the
    # arithmetic is compiled.
    options = dict(micro_batch_size=micro_batch_size, with_certificate=bool(with_certificate),
                   with_counterfactual=bool(with_counterfactual))
    if jit_compile:
        return _compiled_blocks(**options)(bids, allocations, boosts, bidder_weights,
                                           separable_boosts, size_boosts)
    return _blocks(bids, allocations, boosts, bidder_weights, separable_boosts, size_boosts,
                   **options)


def menu_block_size(menu):
    """The exact outcome's default block of profiles for `menu` (a `Menu`): a listed
    menu's `outcome_block_size`, at most `program_block_size` with the bundle-size family."""
    menu_size, num_bidders, num_items = menu.allocations.shape[-3:]
    size = outcome_block_size(num_bidders, menu_size)
    if menu.size_boosts is None:
        return size
    return min(size, program_block_size(
        num_bidders, bundle_sizes.count_state_number(num_bidders, num_items)))


def _blocks(bids, allocations, boosts, bidder_weights, separable_boosts=None, size_boosts=None,
            *, micro_batch_size, with_certificate, with_counterfactual):
    """The outcome of validated bids, block by block (see `exact_outcome`). A menu per
    profile is cut into the same blocks as the bids (padded with the empty menu, weights 1)."""
    menu = (allocations, boosts, bidder_weights, separable_boosts)
    per_profile = allocations.shape.rank == 4
    blocked = (bids, *menu) if per_profile else (bids,)

    def block(tensors):
        block_menu = tensors[1:] if per_profile else menu
        return _outcome_block(tensors[0], *block_menu[:3], with_certificate,
                              with_counterfactual, block_menu[3], size_boosts)

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


def regret_certificate(bids, allocations, boosts, bidder_weights, separable_boosts=None,
                       size_boosts=None, *, micro_batch_size=None, chunk_size=checks.RENAMED):
    """The exact regret certificate `[batch, num_bidders]` (0 up to rounding for an AMA);
    `chunk_size` is the deprecated name of `micro_batch_size`."""
    micro_batch_size = checks.renamed("chunk_size", chunk_size, "micro_batch_size",
                                      micro_batch_size)
    return exact_outcome(bids, allocations, boosts, bidder_weights,
                         separable_boosts=separable_boosts, size_boosts=size_boosts,
                         micro_batch_size=micro_batch_size, with_certificate=True)["regret"]


