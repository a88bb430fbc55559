r"""The bundle-size family: the item-separable family plus a boost for each bundle's size.

For additive bidders, the family holds every allocation `a` that gives each item `j` to one
owner `o_j` (a bidder, or nobody), owner `o` getting `k_o` items, with the boost

    lambda(a) = sum_j c[o_j, j] + sum_o g[o, k_o]     c: `separable_boosts` [m + 1, n]
                                                      g: `size_boosts` [m + 1, n + 1]

(rows 0..m-1 the bidders, row m "nobody"; `g[o, k]` is the boost of owner `o` holding `k`
items). With `g = 0` it is the item-separable family (`tf_ama.core.separable`); with `g` it
can price a bundle by its size, which the item-separable family cannot (docs/design.md §7).
Joined with an explicit menu it is an AMA over the union, so strategyproof and IR for every
`c` and `g`. Its entries, their order and their menu indices are the item-separable
family's: owner codes 0 = nobody and i + 1 = bidder i, item 0 most significant.

The (m + 1)^n entries are never enumerated. The welfare is a sum over items plus a function of
the bidders' item counts, so its maximum is a dynamic program over count vectors
(`count_tables`: every `k` of the bidders with `sum k <= n`, `C(n + m, m)` of them: 286 for
3x10, 3003 for 5x10). Backwards over the items:

    V_n(k) = G(k) = sum_i g[i, k_i] + g[m, n - sum_i k_i]
    V_j(k) = max_o  s[o, j] + V_{j+1}(k + e_o)          (e_nobody = 0)

with the owner scores `s` of `tf_ama.core.separable` (`s[o, j] = w_o v[o, j] + c[o, j]`).
`V_0(0)` is the best welfare. Rounding is monotone, so `V_0(0)` is exactly the largest of
the entries' welfares each computed as `s[o_0, 0] + (s[o_1, 1] + (... + G(k)))`, and the
entry served is the lexicographically first one attaining it (each step takes the lowest
owner code whose continuation attains `V_j`): ties go to the lowest menu index, as in a
listed menu. The welfare of the others of bidder i is the same program on `s_-i` (bidder i's
bid left out). `W_-i` of the served entry is summed along its path in the same order, so
where that entry is also best for the others (e.g. bidder i wins nothing) the two agree bit
for bit and the payment is exactly 0.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tf_ama.core import separable

# The dynamic program keeps `m (m + 1)` values per count vector and profile, in blocks of
# at least 8 profiles: refuse sizes whose count vectors are too many to hold that way
# (C(n + m, m); 5x10 has 3003, 7x10 19 448, 10x10 184 756).
MAX_COUNT_STATES = 20_000


def count_state_number(num_bidders, num_items):
    """`C(n + m, m)`: how many count vectors of the bidders have `sum <= n`."""
    return math.comb(num_items + num_bidders, num_bidders)


def _count_vectors(num_bidders, budget):
    """Every vector of `num_bidders` item counts with sum <= `budget` (a recursion: never
    the (n + 1)^m candidates)."""
    if num_bidders == 0:
        yield ()
        return
    for first in range(budget + 1):
        for rest in _count_vectors(num_bidders - 1, budget - first):
            yield (first, *rest)


def check_count_states(num_bidders, num_items, name="`size_boosts`",
                       fix="use the item-separable family (no `size_boosts`) at this size"):
    """Raises ValueError naming `name`, with `fix`, if the program's count vectors are too
    many."""
    states = count_state_number(num_bidders, num_items)
    if states > MAX_COUNT_STATES:
        raise ValueError(
            f"{name}: {num_bidders} bidders and {num_items} items have {states} count "
            f"vectors, more than the {MAX_COUNT_STATES} the exact dynamic program holds; "
            f"{fix}.")


class CountTables(NamedTuple):
    """`states [S, m]` int64 (state 0 is all zeros), `successor [S, m + 1]` int64 (owner-code
    order: the state after one more item goes to nobody (the same state) or to bidder i;
    `S` where the counts would exceed n)."""

    states: np.ndarray
    successor: np.ndarray


@functools.cache
def count_tables(num_bidders, num_items):
    """The count vectors and their successors (`CountTables`), built once per shape."""
    states = list(_count_vectors(num_bidders, num_items))
    states.sort(key=lambda s: (sum(s), s))  # state 0: nobody holds anything yet
    index = {s: t for t, s in enumerate(states)}
    successor = np.full((len(states), num_bidders + 1), len(states), np.int64)
    for t, s in enumerate(states):
        successor[t, 0] = t
        for i in range(num_bidders):
            index_after = index.get(s[:i] + (s[i] + 1,) + s[i + 1:])
            if index_after is not None:
                successor[t, i + 1] = index_after
    return CountTables(np.array(states, np.int64).reshape(len(states), num_bidders), successor)


def _sum_in_order(terms, last):
    """`terms[0] + (terms[1] + (... + (terms[-1] + last)))` for `terms` `[T, ...]`, in that
    order, bit for bit: a loop, not a chain of additions, which graph optimization
    (grappler's AddOpsRewrite) may turn into one AddN that sums in its own order, so that a
    served graph would round otherwise than eager execution and than the program."""
    _, total = tf.while_loop(
        lambda t, _: t >= 0, lambda t, total: (t - 1, terms[t] + total),
        (tf.shape(terms)[0] - 1, tf.broadcast_to(last, tf.shape(terms)[1:])),
        maximum_iterations=terms.shape[0])  # static: XLA and gradients need it
    return total


def state_boosts(size_boosts, num_items):
    """`G(k)` `[S]` for every count vector: the bidders' `g[i, k_i]` summed in bidder order,
    then nobody's `g[m, n - sum k]`; one fixed order, the same for every profile."""
    num_bidders = size_boosts.shape[0] - 1
    states = count_tables(num_bidders, num_items).states
    terms = tf.stack([tf.gather(size_boosts[i], states[:, i]) for i in range(num_bidders)])
    return _sum_in_order(terms, tf.gather(size_boosts[num_bidders],
                                          num_items - states.sum(axis=1)))


def _backward(scores, boosts_by_state, tables, with_choices=True):
    """The program's values from the last item back. `scores` `[..., n, m + 1]` (owner-code
    order). Returns `(V_0 [..., S], choices)`: `choices[j]` `[..., S]` int64 is the lowest owner
    code whose continuation attains `V_j` (None unless `with_choices`).

    Works state-major (`[S, ...]`): each successor's values are then a whole row, copied
    contiguously, rather than one element per profile (benchmarks/README.md, "Revenue
    frontier", "The program's cost")."""
    rank = scores.shape.rank
    num_items, num_owners = scores.shape[-2], scores.shape[-1]
    batch_axes = list(range(rank - 2))
    by_item = tf.transpose(scores, [rank - 2, rank - 1, *batch_axes])  # [n, m + 1, ...]
    batch_shape = tf.shape(scores)[:-2]
    successor = tf.constant(tables.successor)
    value = tf.broadcast_to(tf.reshape(boosts_by_state, [-1] + [1] * (rank - 2)),
                            tf.concat([tf.shape(boosts_by_state), batch_shape], 0))  # [S, ...]
    unreachable = tf.fill(tf.concat([[1], batch_shape], 0), tf.constant(-np.inf, scores.dtype))
    codes = tf.reshape(tf.range(num_owners, dtype=tf.int64), [1, -1] + [1] * (rank - 2))
    to_profile_major = [*range(1, rank - 1), 0]
    choices = [None] * num_items
    for j in reversed(range(num_items)):
        ahead = tf.gather(tf.concat([value, unreachable], 0), successor)  # [S, m + 1, ...]
        options = by_item[j][None] + ahead
        value = tf.reduce_max(options, axis=1)
        if with_choices:
            choice = tf.reduce_min(tf.where(options == value[:, None], codes, tf.int64.max),
                                   axis=1)
            choices[j] = tf.transpose(choice, to_profile_major)
    return tf.transpose(value, to_profile_major), choices if with_choices else None


def _follow(choices, tables):
    """The owner codes `[..., n]` and final count state `[...]` of the path from state 0."""
    successor = tf.constant(tables.successor)
    state = tf.zeros(tf.shape(choices[0])[:-1], tf.int64)
    codes = []
    for choice in choices:
        code = tf.gather(choice, state[..., None], batch_dims=state.shape.rank)[..., 0]
        codes.append(code)
        state = tf.gather_nd(successor, tf.stack([state, code], -1))
    return tf.stack(codes, -1), state


def _along(scores, codes, final_boost):
    """`s[o_0, 0] + (s[o_1, 1] + (... + G))` of the path `codes` `[..., n]`: `scores`
    `[..., n, m + 1]`, `final_boost` `[...]`."""
    picked = tf.gather(scores, codes[..., None], batch_dims=codes.shape.rank)[..., 0]
    return _sum_in_order(tf.transpose(picked, [codes.shape.rank - 1,
                                               *range(codes.shape.rank - 1)]), final_boost)


class SizeFamilyEntries:
    """The bundle-size family as a part of a menu's exact outcome (the fields of
    `tf_ama.core.mechanism.ListedEntries`), from the dynamic program: its best entry and the
    others' best welfare over it, never enumerated."""

    def __init__(self, bids_by_bidder, bidder_weights, separable_boosts, size_boosts,
                 explicit_size, with_counterfactual=False):
        num_bidders, _, num_items = bids_by_bidder.shape
        tables = count_tables(num_bidders, num_items)
        scores, others_scores = separable.owner_scores(bids_by_bidder, bidder_weights,
                                                       separable_boosts)
        scores = tf.transpose(scores, [1, 2, 0])  # [B, n, m + 1]
        others_scores = tf.transpose(others_scores, [0, 2, 3, 1])  # [m, B, n, m + 1]
        by_state = state_boosts(size_boosts, num_items)
        best, choices = _backward(scores, by_state, tables)
        owners, final_state = _follow(choices, tables)  # [B, n], [B]
        others_best, others_choices = _backward(others_scores, by_state, tables,
                                                with_counterfactual)
        self.best, self.others_best = best[..., 0], others_best[..., 0]
        self.index = explicit_size + separable.owner_rank(owners, num_bidders, num_items)
        bidder_chosen = tf.equal(tf.range(1, num_bidders + 1, dtype=tf.int64)[:, None, None],
                                 owners[None])  # [m, B, n]
        self.allocation = tf.cast(tf.transpose(bidder_chosen, [1, 0, 2]), tf.float64)
        self.chosen_values = tf.reduce_sum(tf.where(bidder_chosen, bids_by_bidder, 0.0), axis=2)
        self.chosen_others = _along(others_scores, tf.tile(owners[None], [num_bidders, 1, 1]),
                                    tf.gather(by_state, final_state)[None])
        self._counterfactual = None
        if with_counterfactual:
            others_owners, _ = _follow(others_choices, tables)  # [m, B, n]
            self._counterfactual = explicit_size + separable.owner_rank(
                others_owners, num_bidders, num_items)

    def best_utility(self, best_others, weights):
        """`max_a (w_i u_i(a) + W_-i(a))` over the family is its best welfare, as for the
        item-separable family."""
        return (self.best[None] - best_others) * (1.0 / weights)

    def counterfactual(self):
        return self._counterfactual


# Stands in for log 0 in the soft program: finite, so that a count vector not yet reachable
# gives weights 0 (not a softmax of -inf's, NaN) and gradients 0.
_LOG_ZERO = -1e30


@functools.cache
def _predecessors(num_bidders, num_items):
    """`[S, m + 1]` int64: the state before one more item went to each owner (owner-code
    order; `S` where there is none: a bidder holding no item)."""
    tables = count_tables(num_bidders, num_items)
    size = len(tables.states)
    before = np.full((size, num_bidders + 1), size, np.int64)
    for state, after in enumerate(tables.successor):
        for code, target in enumerate(after):
            if target < size:
                before[target, code] = state
    return before


def _soft_program(measure, values, boosts_by_state, temperature):
    """`(log sum_a exp(l M(a)), E_{softmax(l M)} V(a))` by the forward algorithm over count
    states, for `M(a) = sum_j measure[o_j, j] + G(k)` and `V(a) = sum_j values[o_j, j] + G(k)`:
    `measure` `[..., n, m + 1]`, `values` broadcastable to it with more leading axes (each
    carried expectation has its own), `boosts_by_state` `G` `[S]`. Returns `[...]` and the
    expectations' shape without the last two axes. State-major inside, as `_backward`."""
    num_items, num_owners = values.shape[-2], values.shape[-1]
    before = tf.constant(_predecessors(num_owners - 1, num_items))
    size = before.shape[0]

    def owner_major(tensor):  # [..., n, m + 1] -> [n, m + 1, ...]
        rank = tensor.shape.rank
        return tf.transpose(tensor, [rank - 2, rank - 1, *range(rank - 2)])

    extra = values.shape.rank - measure.shape.rank  # leading axes of the expectations only

    def spread(tensor, axis):  # ones for those axes after `axis`, to broadcast like `values`
        shape = tf.shape(tensor)
        return tf.reshape(tensor, tf.concat([shape[:axis], tf.ones([extra], tf.int32),
                                             shape[axis:]], 0))

    measure, values = owner_major(measure), owner_major(values)
    measure_shape, values_shape = tf.shape(measure)[2:], tf.shape(values)[2:]
    log_alpha = tf.concat([tf.zeros(tf.concat([[1], measure_shape], 0), measure.dtype),
                           tf.fill(tf.concat([[size], measure_shape], 0),
                                   tf.constant(_LOG_ZERO, measure.dtype))], 0)  # [S + 1, ...]
    expected = tf.zeros(tf.concat([[size + 1], values_shape], 0), values.dtype)
    for j in range(num_items):
        logits = tf.gather(log_alpha, before) + temperature * measure[j][None]  # [S, m + 1, ...]
        weights = spread(tf.nn.softmax(logits, axis=1), 2)
        step = tf.reduce_sum(weights * (tf.gather(expected, before) + values[j][None]), axis=1)
        # Row S stays log 0 (expectation 0): the predecessor of a count that has none.
        log_alpha = tf.concat([tf.reduce_logsumexp(logits, axis=1), log_alpha[-1:]], 0)
        expected = tf.concat([step, expected[-1:]], 0)
    boosts = tf.reshape(boosts_by_state, [-1] + [1] * (log_alpha.shape.rank - 1))
    final = log_alpha[:-1] + temperature * boosts
    share = spread(tf.nn.softmax(final, axis=0), 1)
    expected_boosted = expected[:-1] + tf.reshape(boosts_by_state,
                                                  [-1] + [1] * (expected.shape.rank - 1))
    return (tf.reduce_logsumexp(final, axis=0),
            tf.reduce_sum(share * expected_boosted, axis=0))


def soft_family(valuations, bidder_weights, separable_boosts, size_boosts, temperature):
    """The bundle-size family's part of the softmax relaxation, exactly (the statistics of
    `tf_ama.core.separable.soft_family`): the softmax over its entries is a chain over the
    items whose state is the count vector, so its log-partition and the expectations of the
    others' welfare come from the forward algorithm (`_soft_program`), `O(n C(n + m, m)
    (m + 1))` per profile and statistic. Returns `(log_z [B], expected_with [B, m],
    log_z_others [B, m], expected_without [B, m])`."""
    num_items = valuations.shape[-1]
    scores, others_scores = separable.owner_scores(tf.transpose(valuations, [1, 0, 2]),
                                                   bidder_weights, separable_boosts)
    scores = tf.transpose(scores, [1, 2, 0])  # [B, n, m + 1]
    others_scores = tf.transpose(others_scores, [0, 2, 3, 1])  # [m, B, n, m + 1]
    by_state = state_boosts(size_boosts, num_items)
    log_z, expected_with = _soft_program(scores, others_scores, by_state, temperature)
    log_z_others, expected_without = _soft_program(others_scores, others_scores, by_state,
                                                   temperature)
    return (log_z, tf.transpose(expected_with), tf.transpose(log_z_others),
            tf.transpose(expected_without))
