r"""The active set: a training step whose softmaxes run over the menu entries in play.

A trained menu wins with a few percent of its entries; the others sit far below the best
boosted welfare of every profile, where the relaxation's softmaxes give them weight
`exp(-lambda * gap)`: nothing measurable, yet the full step pays two exponentials for each of
them, for every profile and every counterfactual (`tf_ama.core.relaxation`).

`ActiveSet` keeps the entries that matter. Every `refresh_steps` steps (and at the first
step) a cheap pass over the whole menu on the step's own batch (one matmul and a max per
softmax, no exponentials: `entry_gaps`) finds, for each entry `k`, its smallest gap

    g[k] = min over profiles b and over the m + 1 maximizations c (the welfare W, each O_i)
           of  max_k' value[b, c, k'] - value[b, c, k]

and the step's softmaxes then run over the entries with the smallest gaps: all those with
`g[k] <= margin / lambda`, rounded up to a capacity of the ladder `capacities(K)` (powers of
two from 64 to K / 4: static shapes, so that XLA compiles a handful of kernels), or the whole
menu when more are needed (early training, a low lambda).

The neglected mass is bounded. For every profile and softmax of the refresh batch, the
probability the full softmax gives to the neglected entries N is at most

    sum_{k in N} exp(-lambda * g[k])   <=   |N| exp(-margin)

(each term's numerator is at most its bound and the denominator, the best entry's term, is
1). Every refresh records this bound twice as `neglected_mass`: for the set it picks, and for
the set the steps since the last refresh used, on the new batch and the moved menu (what
those steps actually neglected, measured at their end). The value and the gradient of the
step differ from the full step's by terms proportional to that mass
(`tests/active_set_test.py` checks both against the full step).
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tf_ama.core import relaxation
from tf_ama.core.blocks import refresh_block_size
from tf_ama.utils import checks, defaults

SMALLEST_CAPACITY = 64


def capacities(menu_size):
    """The active set's sizes for a menu of `menu_size` entries: 64, 128, ... up to
    `menu_size / 4` (empty for a menu below 256: the whole menu is then always used)."""
    sizes, size = [], SMALLEST_CAPACITY
    while 4 * size <= menu_size:
        sizes.append(size)
        size *= 2
    return sizes


def _gaps_kernel(valuations, allocations, boosts, bidder_weights):
    """`[K]`: for each entry, its smallest gap to the best over these profiles and the
    `m + 1` maximizations (welfare and each bidder's counterfactual); one menu, or a menu
    per profile (its entry `k` the same head of the menu network for every profile)."""
    w = relaxation.weights_by_bidder(bidder_weights)
    _, _, others, welfare = relaxation.welfare_terms(valuations, allocations, boosts, w)
    welfare_gap = tf.reduce_max(welfare, axis=-1, keepdims=True) - welfare  # [B, K]
    others_gap = tf.reduce_max(others, axis=-1, keepdims=True) - others  # [m, B, K]
    return tf.minimum(tf.reduce_min(welfare_gap, axis=0), tf.reduce_min(others_gap, axis=[0, 1]))


_GAP_KERNELS = {False: tf.function(_gaps_kernel, autograph=False),
                True: tf.function(_gaps_kernel, autograph=False, jit_compile=True)}


def entry_gaps(valuations, allocations, boosts, bidder_weights, micro_batch_size=None,
               jit_compile=False):
    """`g` `[K]`, each entry's smallest gap (module docstring) over the profiles
    `valuations` `[B, m, n]`, computed over micro-batches of `micro_batch_size` profiles
    (None: all at once). No exponentials: `tests/active_set_test.py` checks it against a
    NumPy loop."""
    kernel = _GAP_KERNELS[bool(jit_compile)]
    if micro_batch_size is None:
        return kernel(valuations, allocations, boosts, bidder_weights)
    largest = tf.fill(tf.shape(boosts)[-1:], tf.constant(float("inf"), boosts.dtype))
    if allocations.shape.rank == 4:  # a menu per profile: cut with its profiles
        return relaxation.over_micro_batches(
            kernel, (valuations, allocations, boosts, bidder_weights), micro_batch_size,
            tf.minimum, largest)
    return relaxation.over_micro_batches(
        lambda block: kernel(block, allocations, boosts, bidder_weights), (valuations,),
        micro_batch_size, tf.minimum, largest)


def neglected_bound(gaps, temperature, in_set):
    """`sum_{k not in set} exp(-lambda g[k])`: the bound on the mass a set neglects (module
    docstring), for `in_set` a boolean `[K]`."""
    return tf.reduce_sum(tf.where(in_set, tf.zeros_like(gaps), tf.exp(-temperature * gaps)))


@keras.saving.register_keras_serializable(package="tf_ama")
class ActiveSet(keras.layers.Layer):
    """The entries a training step's softmaxes run over, and when to refresh them.

    Args:
      menu_size: `K`, the explicit menu's entries.
      margin: `t`: entries within `t / lambda` of the best on some profile and softmax of the
        refresh batch are kept; each neglected one weighs at most `exp(-t)`.
      refresh_steps: refresh every this many steps (and at step 0).

    Its state (the chosen entries, the capacity in use) is two non-trainable weights, saved
    with the model and restored on resume, so a resumed run takes the same steps.
    """

    def __init__(self, menu_size, margin=25.0, refresh_steps=defaults.ACTIVE_REFRESH_STEPS,
                 **kwargs):
        super().__init__(**kwargs)
        self.menu_size = checks.integer("menu_size", menu_size, minimum=1)
        self.margin = checks.number("margin", margin, above=0)
        self.refresh_steps = checks.integer("refresh_steps", refresh_steps, minimum=1)
        self.capacities = capacities(self.menu_size)
        # The same on every replica: each one computes it from the gaps of the whole batch.
        self.entries = self.add_weight(
            name="entries", shape=[self.menu_size], dtype="int32", trainable=False,
            initializer=lambda shape, dtype: tf.range(shape[0], dtype=dtype),
            aggregation="only_first_replica")
        # An index into `capacities`; len(capacities) is the whole menu.
        self.level = self.add_weight(
            name="level", shape=[], dtype="int32", trainable=False,
            initializer=keras.initializers.Constant(len(self.capacities)),
            aggregation="only_first_replica")
        self.built = True

    def size(self):
        """The entries the steps use now (`K` for the whole menu)."""
        return self._size(tf.convert_to_tensor(self.level))

    def _size(self, level):
        return tf.gather(tf.constant(self.capacities + [self.menu_size]), level)

    def refresh(self, valuations, allocations, boosts, bidder_weights, temperature,
                micro_batch_size, jit_compile, step=0):
        """At a refresh step (`step`, the optimizer's iterations, a multiple of
        `refresh_steps`), chooses the entries from this batch's gaps (their minimum over
        every replica's batch) and returns the neglected-mass bound of the previous and of
        the new set on this batch; at another step, changes nothing and returns `[-1, -1]`.
        With the item-separable family joined, the gaps are to the explicit entries' best,
        never above the gaps to the union's: the set is then larger than needed, not
        smaller.

        Only the pass over the menu is conditional: the replicas' gaps are gathered and
        the variables assigned at every step (`[K]`-sized work), since a synchronization
        cannot sit in a branch (tf.distribute)."""
        def pass_over_menu():
            return entry_gaps(valuations, allocations, boosts, bidder_weights,
                              refresh_block_size(valuations.shape[1], self.menu_size)
                              if micro_batch_size == "auto" else micro_batch_size, jit_compile)

        refreshing = tf.equal(tf.cast(step, tf.int64) % self.refresh_steps, 0)
        gaps = tf.cond(refreshing, pass_over_menu,
                       lambda: tf.zeros([self.menu_size], boosts.dtype))
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gaps = tf.reduce_min(tf.reshape(context.all_gather(gaps[None], axis=0),
                                            [-1, self.menu_size]), axis=0)
        temperature = tf.cast(temperature, gaps.dtype)
        previous = neglected_bound(gaps, temperature, self._in_set(self.entries.value,
                                                                   self.size()))
        needed = tf.reduce_sum(tf.cast(gaps <= self.margin / temperature, tf.int32))
        level = tf.reduce_sum(tf.cast(tf.constant(self.capacities, tf.int32) < needed,
                                      tf.int32))  # the first capacity >= needed
        entries = tf.cast(tf.argsort(gaps, stable=True), tf.int32)
        chosen = neglected_bound(gaps, temperature, self._in_set(entries, self._size(level)))
        self.entries.assign(tf.where(refreshing, entries, self.entries.value))
        self.level.assign(tf.where(refreshing, level, tf.convert_to_tensor(self.level)))
        return tf.where(refreshing, tf.stack([previous, chosen]), -tf.ones([2], gaps.dtype))

    def _in_set(self, entries, size):
        kept = tf.range(self.menu_size) < size
        return tf.scatter_nd(entries[:, None], kept, [self.menu_size])

    def revenue_and_gradients(self, valuations, menu, temperature, micro_batch_size,
                              jit_compile, sample_weight):
        """`relaxation.batched_revenue_and_gradients` over the chosen entries: the same
        results, with the gradients of the entries left out 0. `micro_batch_size` "auto" is
        sized for the set in use (`tf_ama.core.blocks.training_block_size`)."""
        def step(capacity):
            options = dict(micro_batch_size=micro_batch_size, jit_compile=jit_compile,
                           sample_weight=sample_weight, separable_boosts=menu.separable_boosts,
                           size_boosts=menu.size_boosts)
            if capacity == self.menu_size:
                return relaxation.batched_revenue_and_gradients(
                    valuations, *menu[:3], temperature, **options)
            entries = self.entries.value[:capacity]
            axis = menu.allocations.shape.rank - 3  # 1 for a menu per profile
            revenue, gradients = relaxation.batched_revenue_and_gradients(
                valuations, tf.gather(menu.allocations, entries, axis=axis),
                tf.gather(menu.boosts, entries, axis=axis), menu.bidder_weights, temperature,
                **options)
            scattered = tuple(_scattered(entries, g, full, axis)
                              for g, full in zip(gradients[:2], menu[:2]))
            return revenue, scattered + tuple(gradients[2:])

        branches = [functools.partial(step, c) for c in self.capacities + [self.menu_size]]
        if len(branches) == 1:
            return branches[0]()
        return tf.switch_case(tf.convert_to_tensor(self.level), branches)

    def get_config(self):
        return {**super().get_config(), "menu_size": self.menu_size, "margin": self.margin,
                "refresh_steps": self.refresh_steps}


def _scattered(entries, gradient, full, axis):
    """The gradient of the chosen `entries` (along `axis`) put back in a zero tensor shaped
    like `full`."""
    if axis == 0:
        return tf.scatter_nd(entries[:, None], gradient, tf.shape(full))
    order = [1, 0, *range(2, len(full.shape))]  # the entries first, then back
    shape = tf.gather(tf.shape(full), order)
    return tf.transpose(tf.scatter_nd(entries[:, None], tf.transpose(gradient, order), shape),
                        order)


@keras.saving.register_keras_serializable(package="tf_ama")
class Largest(keras.metrics.Metric):
    """The largest value recorded since the last reset (`neglected_mass`: the worst bound of
    an epoch's refreshes); values below 0 mark "nothing to record" and are skipped; 0 if
    nothing was recorded."""

    def __init__(self, name="largest", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.largest = self.add_variable(shape=[], initializer="zeros", name="largest",
                                         aggregation="only_first_replica")

    def update_state(self, values, sample_weight=None):
        self.largest.assign(tf.maximum(self.largest, tf.reduce_max(
            tf.cast(values, self.dtype))))

    def result(self):
        return tf.identity(self.largest)
