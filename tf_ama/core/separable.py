r"""The item-separable family: every deterministic allocation, with item-separable boosts.

For additive bidders, the family holds every allocation `a` that gives each item `j` to one
owner `o_j` (a bidder, or nobody), with the boost

    lambda(a) = sum_j c[o_j, j]        c: `separable_boosts` [m + 1, n]
                                       (rows 0..m-1 the bidders, row m "nobody")

Joined with an explicit menu (allocations, boosts), the mechanism is an AMA over the union, so
it is strategyproof and IR for every `c`. Its (m + 1)^n entries are never enumerated: the
boosted welfare is a sum over items of the owner's score

    s[o, j] = w_o v[o, j] + c[o, j]   (a bidder o)        s[nobody, j] = c[m, j]

so the family's best welfare is `sum_j max_o s[o, j]`, and the welfare of the others of
bidder i, `W_-i(a) = sum_j s_-i[o_j, j]` with `s_-i` = `s` except `s_-i[i, j] = c[i, j]`
(bidder i's own bid left out), is maximized item by item as well.

Order and ties (docs/design.md §7): the family's entries follow the K explicit ones, in the
order of `menus.deterministic_allocations`: owner codes 0 = nobody and i + 1 = bidder i, item
0 most significant, so the family entry with owner codes `q` has menu index
`K + sum_j q_j (m + 1)^(n - 1 - j)`. Ties go to the lowest index: to the explicit menu
between the two parts, and within the family to the lowest owner code of each item (the
lexicographically first maximizer is made of each item's first one).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MAX_FAMILY_INDEX = 2**62  # K + (m + 1)^n must stay below it (int64 menu indices)


def family_size(num_bidders, num_items):
    """`(m + 1)^n`, the number of allocations in the family."""
    return (num_bidders + 1) ** num_items


def _by_code(per_bidder, nobody):
    """`[m + 1, ...]` in owner-code order: `nobody` first, then the bidders' rows."""
    return tf.concat([nobody[None], per_bidder], axis=0)


def _lowest_maximizer(scores):
    """The lowest code attaining the max over axis 0 of `scores` `[m + 1, ...]`, int64."""
    codes = tf.range(tf.shape(scores, out_type=tf.int64)[0], dtype=tf.int64)
    codes = tf.reshape(codes, tf.concat([[-1], tf.ones([tf.rank(scores) - 1], tf.int32)], 0))
    best = tf.reduce_max(scores, axis=0, keepdims=True)
    return tf.reduce_min(tf.where(scores == best, codes, tf.int64.max), axis=0)


def _powers(num_bidders, num_items):
    """`(m + 1)^(n - 1 - j)` for every item `j`, int64: the place value of item j's code."""
    return tf.constant([(num_bidders + 1) ** (num_items - 1 - j) for j in range(num_items)],
                       tf.int64)


def owner_rank(codes, num_bidders, num_items):
    """Index within the family of owner codes `[..., n]`: item 0 most significant."""
    return tf.reduce_sum(codes * _powers(num_bidders, num_items), axis=-1)


def bidder_major(bidder_weights, separable_boosts):
    """`(w [m, 1 or B, 1], c [m + 1, 1 or B, n])`: one menu's weights `[m]` and `c`
    `[m + 1, n]`, or every profile's own (`[B, m]`, `[B, m + 1, n]`: a contextual menu),
    laid out to broadcast against bidder-major `[m, B, n]` bids. Broadcasting changes no
    bit of an elementwise result, so both cases share one formula."""
    bidder_weights = tf.convert_to_tensor(bidder_weights)
    separable_boosts = tf.convert_to_tensor(separable_boosts)
    if separable_boosts.shape.rank == 3:
        return (tf.transpose(bidder_weights)[:, :, None],
                tf.transpose(separable_boosts, [1, 0, 2]))
    return bidder_weights[:, None, None], separable_boosts[:, None, :]


def owner_scores(bids_by_bidder, bidder_weights, separable_boosts):
    """`(s [m + 1, B, n], s_-i [m, m + 1, B, n])` in owner-code order, from bids `[m, B, n]`
    and one menu's or each profile's weights and `c` (`bidder_major`)."""
    num_bidders = bids_by_bidder.shape[0]
    weights, boosts = bidder_major(bidder_weights, separable_boosts)
    bidder_rows, nobody_row = boosts[:-1], boosts[-1]
    bidder_scores = weights * bids_by_bidder + bidder_rows
    nobody_scores = tf.broadcast_to(nobody_row, tf.shape(bidder_scores)[1:])
    scores = _by_code(bidder_scores, nobody_scores)
    # s_-i: bidder i's row without its bid, for every i at once.
    own_row = tf.equal(tf.range(num_bidders)[:, None], tf.range(num_bidders + 1)[None, :] - 1)
    others_scores = tf.where(own_row[:, :, None, None], bidder_rows[:, None],
                             scores[None])
    return scores, others_scores


def soft_family(valuations, bidder_weights, separable_boosts, temperature):
    """The family's part of the softmax relaxation (`relaxation.soft_payments`), exactly.

    Over the family, `exp(l W(a)) = prod_j exp(l s[o_j, j])`: the softmax is a product of
    per-item softmaxes over owners, its log-partition a sum of per-item logsumexps, and the
    expectation of the separable `W_-i(a) = sum_j s_-i[o_j, j]` a sum of per-item
    expectations. Returns `(log_z [B], expected_with [B, m], log_z_others [B, m],
    expected_without [B, m])`: `log sum_a exp(l W(a))`, `E_{softmax(l W)} W_-i`,
    `log sum_a exp(l W_-i(a))` and `E_{softmax(l W_-i)} W_-i`.
    """
    scores, others_scores = owner_scores(tf.transpose(valuations, [1, 0, 2]), bidder_weights,
                                    separable_boosts)
    log_z = tf.reduce_sum(tf.reduce_logsumexp(temperature * scores, axis=0), axis=-1)
    chosen = tf.nn.softmax(temperature * scores, axis=0)  # per item, over owners
    expected_with = tf.reduce_sum(chosen[None] * others_scores, axis=[1, 3])  # [m, B]
    log_z_others = tf.reduce_sum(tf.reduce_logsumexp(temperature * others_scores, axis=1),
                                 axis=-1)
    counterfactual = tf.nn.softmax(temperature * others_scores, axis=1)
    expected_without = tf.reduce_sum(counterfactual * others_scores, axis=[1, 3])
    return (log_z, tf.transpose(expected_with), tf.transpose(log_z_others),
            tf.transpose(expected_without))


def family_block(bids_by_bidder, bidder_weights, separable_boosts, explicit_size,
                 with_counterfactual=False):
    """The family's part of the exact outcome for one block of profiles (float64).

    Args:
      bids_by_bidder: `[m, B, n]`. bidder_weights: `[m]`. separable_boosts: `c` `[m + 1, n]`
        (or each profile's own: `[B, m]` and `[B, m + 1, n]`).
      explicit_size: `K`, the number of explicit entries before the family (int64 scalar).

    Returns a dict:
      `best` [B]: the family's best welfare, `sum_j max_o s[o, j]`;
      `owners` [B, n] int64: owner codes of that allocation (0 nobody, i + 1 bidder i);
      `index` [B] int64: its menu index, `K + rank`;
      `allocation` [B, m, n]: that allocation (0/1);
      `values` [m, B]: its value to each bidder at the bids;
      `others_best` [m, B]: `max_a W_-i(a)` over the family;
      `chosen_others` [m, B]: `W_-i` of the family's best allocation, summed item by item
        like `others_best`, so that the two agree bit for bit where that allocation is also
        best for the others (a bidder who wins nothing then pays exactly 0);
      `counterfactual_index` [m, B] int64 (if requested): menu index of the maximizer of
        `W_-i` over the family.
    """
    num_bidders, _, num_items = bids_by_bidder.shape
    scores, others_scores = owner_scores(bids_by_bidder, bidder_weights, separable_boosts)
    owners = _lowest_maximizer(scores)  # [B, n]
    best = tf.reduce_sum(tf.reduce_max(scores, axis=0), axis=1)  # [B]
    codes = tf.range(num_bidders + 1, dtype=tf.int64)[:, None, None]  # [m + 1, 1, 1]
    chosen = tf.equal(codes, owners[None])  # one-hot over owners: [m + 1, B, n]
    others_best = tf.reduce_sum(tf.reduce_max(others_scores, axis=1), axis=2)  # [m, B]
    chosen_others = tf.reduce_sum(  # one term per item is non-zero: the sum is exact
        tf.reduce_sum(tf.where(chosen[None], others_scores, 0.0), axis=1), axis=2)
    bidder_chosen = chosen[1:]  # [m, B, n]: bidder i owns item j
    values = tf.reduce_sum(tf.where(bidder_chosen, bids_by_bidder, 0.0), axis=2)  # [m, B]
    result = {
        "best": best,
        "owners": owners,
        "index": explicit_size + owner_rank(owners, num_bidders, num_items),
        "allocation": tf.cast(tf.transpose(bidder_chosen, [1, 0, 2]), tf.float64),
        "values": values,
        "others_best": others_best,
        "chosen_others": chosen_others,
    }
    if with_counterfactual:
        others_owners = _lowest_maximizer(tf.transpose(others_scores, [1, 0, 2, 3]))  # [m, B, n]
        result["counterfactual_index"] = explicit_size + owner_rank(others_owners, num_bidders,
                                                               num_items)
    return result


class FamilyEntries:
    """The item-separable family as a part of a menu's exact outcome
    (`tf_ama.core.mechanism.ListedEntries` lists the fields), from `family_block`: its best
    allocation and the others' best welfare over the family, never enumerated."""

    def __init__(self, bids_by_bidder, bidder_weights, separable_boosts, explicit_size,
                 with_counterfactual=False):
        block = family_block(bids_by_bidder, bidder_weights, separable_boosts, explicit_size,
                             with_counterfactual)
        self.best, self.index, self.allocation = block["best"], block["index"], block["allocation"]
        self.chosen_values, self.chosen_others = block["values"], block["chosen_others"]
        self.others_best = block["others_best"]
        self._counterfactual = block.get("counterfactual_index")

    def best_utility(self, best_others, weights):
        """Over the family, `max_a (w_i u_i(a) + W_-i(a))` is its best welfare: the best
        misreport's utility is `(best - best_others) / w_i`."""
        return (self.best[None] - best_others) * (1.0 / weights)

    def counterfactual(self):
        return self._counterfactual


def owner_codes(menu_index, explicit_size, num_bidders, num_items):
    """The owner code of every item `[..., n]` int64 of the entries `menu_index` `[...]`
    (int64): 0 nobody, i + 1 bidder i for a family entry (index `>= explicit_size`, decoded
    from its rank), -1 for an explicit entry."""
    menu_index = tf.convert_to_tensor(menu_index, tf.int64)
    rank = menu_index - explicit_size
    codes = (rank[..., None] // _powers(num_bidders, num_items)) % (num_bidders + 1)
    return tf.where(rank[..., None] >= 0, codes, tf.constant(-1, tf.int64))


def family_entries(ranks, separable_boosts, size_boosts=None):
    """`(allocations [R, m, n], boosts [R])` of the family entries `ranks` `[R]` as NumPy
    arrays (float64 `c`; with the bundle-size family's `g` `[m + 1, n + 1]`
    (`tf_ama.core.bundle_sizes`), each boost adds `sum_o g[o, k_o]`), decoded all at once."""
    num_bidders, num_items = separable_boosts.shape[0] - 1, separable_boosts.shape[1]
    codes = owner_codes(np.asarray(ranks, np.int64), 0, num_bidders, num_items).numpy()
    allocations = (codes[:, None, :] == np.arange(1, num_bidders + 1)[None, :, None])
    rows = np.where(codes == 0, num_bidders, codes - 1)  # c's row of each item's owner
    boosts = np.sum(separable_boosts[rows, np.arange(num_items)], axis=1)
    if size_boosts is not None:
        counts = allocations.sum(axis=2)  # [R, m]
        boosts = (boosts + np.sum(size_boosts[np.arange(num_bidders), counts], axis=1)
                  + size_boosts[num_bidders, num_items - counts.sum(axis=1)])
    return allocations.astype(np.float64), boosts
