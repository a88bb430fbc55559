"""`ContextualAuction`: an AMA whose menu is computed from public contexts, trained with `fit`.

    setting = tf_ama.get_contextual_setting("contextual_a")
    model = tf_ama.ContextualAuction(setting, sizes=["2x5", "3x10"], menu_size=64, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tf_ama.fresh_valuations(1024), epochs=20, steps_per_epoch=100,
              validation_data=tf_ama.contextual_dataset(setting, "2x5", 10_000, seed=1))
    outcome = model((bids, bidder_context, item_context))     # exact, float64

Each training step draws fresh auctions of one size (the sizes in turn, `step % len(sizes)`;
contexts and values from the setting, seeded by `data_seed`, the step and the replica), and
minimizes minus their soft revenue (`relaxation.soft_payments` with a menu per auction; or its
log, `relative_loss`) by automatic differentiation through the menu network
(`ContextualMenu`). `test_step` and
calling the model give the EXACT outcome (`tf_ama.exact_outcome` on the float64 menu the
network computes for each auction's contexts). The menu never sees a bid: the mechanism is
strategyproof and IR for every context (docs/design.md §10).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_ama.core.allocations import Menu
from tf_ama.core.blocks import outcome_block_size
from tf_ama.core.mechanism import exact_outcome, validate_bids
from tf_ama.data.contexts import (get_contextual_setting, parse_size, size_name,
                                varying_dimensions)
from tf_ama.menus.contextual import ContextualMenu
from tf_ama.models.active_set import ActiveSet
from tf_ama.models.auction import AffineMaximizerAuction
from tf_ama.utils import checks, defaults, distributed, seeds


def contextual_dataset(setting, size, num_samples, seed, batch_size=4096, dtype=tf.float64):
    """A fixed `tf.data.Dataset` of `num_samples` auctions of `size`: batches of `(bids,
    bidder_context, item_context)` (e.g. for validation; concatenate several sizes' datasets
    to validate on several)."""
    setting = get_contextual_setting(setting)
    sample = setting.sample(num_samples, seed, size, dtype)
    return tf.data.Dataset.from_tensor_slices(sample).batch(batch_size).map(lambda *t: (t,))


def validate_contexts(bids, bidder_context, item_context, bidder_features, item_features):
    """Checks contexts like bids (`mechanism.validate_bids`): float64, finite, shapes
    `[batch, m, d_x]` and `[batch, n, d_y]` matching `bids` `[batch, m, n]`."""
    checked = []
    for name, context, axis, features in (("bidder_context", bidder_context, 1, bidder_features),
                                          ("item_context", item_context, 2, item_features)):
        context = tf.convert_to_tensor(context)
        if context.dtype != tf.float64:
            raise TypeError(f"`{name}` must be float64 like the bids; got {context.dtype.name}. "
                            f"Cast it first, e.g. tf.cast({name}, tf.float64).")
        if context.shape.rank is not None and context.shape.rank != 3:
            raise ValueError(f"`{name}` must have shape [batch, {'m' if axis == 1 else 'n'}, "
                             f"{features}]; got {context.shape}.")
        padded = tf.concat([tf.shape(context), [-1, -1, -1]], axis=0)
        expected = tf.stack([tf.shape(bids)[0], tf.shape(bids)[axis], features])
        shape_ok = tf.debugging.Assert(tf.reduce_all(tf.equal(padded[:3], expected)) & tf.equal(
            padded[3], -1), [f"`{name}` has the wrong shape: expected [batch, "
                             f"{'num_bidders' if axis == 1 else 'num_items'} (as in bids), "
                             f"{features}]; got shape", tf.shape(context), "with bids of shape",
                             tf.shape(bids)], summarize=8)
        with tf.control_dependencies([shape_ok]):
            finite_ok = tf.debugging.assert_all_finite(
                context, f"`{name}` must be finite (no NaN or inf)")
        with tf.control_dependencies([finite_ok]):
            checked.append(tf.ensure_shape(tf.identity(context), [None, None, features]))
    return tuple(checked)


@keras.saving.register_keras_serializable(package="tf_ama")
class ContextualAuction(AffineMaximizerAuction):
    """A contextual AMA: an `AffineMaximizerAuction` whose menu layer is a `ContextualMenu`,
    trained on a `ContextualSetting`. Training is the auction model's (the fused kernel, the
    active set with `active_margin`); what differs is where a step's auctions come from
    (contexts and values drawn per size) and that the menu is computed per auction.

    Args:
      setting: a `tf_ama.ContextualSetting`, its dict, or a built-in name.
      sizes: the sizes `(m, n)` (or `"3x10"`) trained on; default: the setting's.
      menu: a `ContextualMenu` (or its config); default: built from the options below.
      menu_size, separable, learn_bidder_weights, hidden, heads, blocks,
        linear_family_boosts, bundles, bundle_discount, size_features: the menu's options
        (`ContextualMenu`). `size_features` defaults to the dimensions in which `sizes`
        differ (`varying_dimensions`: none for one size), so that the network tells the
        trained sizes apart and never sees a dimension that did not vary in training
        (docs/design.md §10).
      temperature: `lambda` of the softmax relaxation.
      seed: seeds the initial parameters (and, unless `data_seed` is given, the auctions drawn
        in training).
      data_seed: seeds the auctions drawn in training; default `seed`.
      micro_batch_size: profiles per block of the exact outcome (`exact_outcome`) and of the
        served menus (`served_menu`); default `tf_ama.core.blocks.outcome_block_size`.
      jit_objective: compile the fused kernel with XLA.
      active_margin, active_refresh_steps: the active set (`AffineMaximizerAuction`), one per
        trained size (its number of entries depends on the bidders).
      relative_loss: each step descends minus the log of its soft revenue (the gradient of
        the soft revenue divided by it), so that every size counts by its relative gain,
        whatever its revenue's scale (a 3x10 auction earns about 7 times a 2x2 one). Off by
        default: it lifts the small sizes and lowers the large ones (docs/design.md §10).
        The loss logged is minus the soft revenue either way.
      myerson_sizes: sizes at which the model serves per-context Myerson (the family at its
        start, no lotteries) instead of its menu: where the menu did not beat it
        (`tf_ama.evaluation.contextual.choose_sizes`; a run and an export choose them).
        Training is unchanged; `served_menu`, calling the model and an export serve them.
      chosen_sizes: the sizes at which that choice was made (a run's trained sizes): an
        export makes it at every other size it serves.
    """

    def __init__(self, setting, sizes=None, *, menu=None, menu_size=64, separable=True,
                 learn_bidder_weights=True, hidden=32, heads=2, blocks=2,
                 linear_family_boosts=None, bundles=None, bundle_discount=None,
                 size_features=None, temperature=defaults.TEMPERATURE,
                 seed=0, data_seed=None, micro_batch_size=None, jit_objective=True,
                 active_margin=None, active_refresh_steps=defaults.ACTIVE_REFRESH_STEPS,
                 relative_loss=False, myerson_sizes=(), chosen_sizes=(), **kwargs):
        setting = get_contextual_setting(setting)
        self.sizes = size_list("sizes", setting.sizes if sizes is None else sizes)
        if not self.sizes:
            raise ValueError("`sizes` must name at least one size, e.g. ['2x5'].")
        self.myerson_sizes = ()
        self.relative_loss = checks.boolean("relative_loss", relative_loss)
        self.chosen_sizes = tuple(sorted(set(size_list("chosen_sizes", chosen_sizes))))
        if size_features is None:  # a dimension that never varied in training tells nothing
            size_features = varying_dimensions(self.sizes)
        if menu is None:
            menu = ContextualMenu(
                setting.bidder_features, setting.item_features, menu_size=menu_size,
                separable=separable, learn_bidder_weights=learn_bidder_weights, hidden=hidden,
                heads=heads, blocks=blocks, linear_family_boosts=linear_family_boosts,
                bundles=bundles, bundle_discount=bundle_discount,
                size_features=size_features, seed=checks.seed("seed", seed))
        micro_batch_size = checks.optional(checks.integer, "micro_batch_size",
                                           micro_batch_size, minimum=1)
        super().__init__(setting, menu, temperature=temperature, seed=seed, data_seed=data_seed,
                         micro_batch_size=micro_batch_size, jit_objective=jit_objective,
                         active_margin=active_margin,
                         active_refresh_steps=active_refresh_steps, **kwargs)
        self.serve_myerson_at(myerson_sizes)

    def _checked_setting(self, setting):
        return get_contextual_setting(setting)

    def _checked_menu(self, menu, options):
        if isinstance(menu, dict):
            menu = keras.saving.deserialize_keras_object(menu)
        if not isinstance(menu, ContextualMenu):
            raise ValueError(f"`menu` must be a tf_ama.ContextualMenu or its config; got {menu!r}.")
        if (menu.bidder_features, menu.item_features) != (
                self.setting.bidder_features, self.setting.item_features):
            raise ValueError("`menu` is for other context dimensions than the setting's.")
        # Every variable now, so that the model can be saved, loaded and distributed before
        # it has seen data.
        if not menu.built:
            menu.build()
        return menu

    def _bidder_weights(self, learn_bidder_weights):
        del learn_bidder_weights  # the menu network's (`ContextualMenu.learn_bidder_weights`)
        return None

    def _add_active_sets(self):
        self.active_sets = [] if self.active_margin is None else [
            ActiveSet(self.menu_layer.entries(m), self.active_margin, self.active_refresh_steps,
                      name=f"active_set_{size_name((m, n))}") for m, n in self.sizes]

    def menu(self, bidder_context, item_context, dtype=tf.float32):
        """Each auction's menu, a `tf_ama.core.allocations.Menu` whose tensors have a leading
        batch axis (`allocations [B, K, m, n]`, `boosts [B, K]`, `bidder_weights [B, m]`,
        `separable_boosts [B, m + 1, n]` or None), in `dtype`."""
        myerson = None
        if self.knows_myerson:
            myerson = self.setting.separate_myerson_boosts(tf.cast(bidder_context, dtype),
                                                           tf.cast(item_context, dtype))
        return Menu(*self.menu_layer(bidder_context, item_context, myerson=myerson,
                                     dtype=dtype))

    def exact_menu(self):
        raise ValueError("A contextual model has a menu per auction: model.served_menu("
                         "bidder_context, item_context) gives the float64 menus it serves.")

    def call(self, inputs, with_certificate=False):
        """The exact outcome (dict of float64 `allocation`, `payments`, `menu_index`,
        `values`, and `regret` if `with_certificate`) of `(bids, bidder_context,
        item_context)`, all float64. Bids of any size `[batch, m, n]`; in a graph whose bids
        have no static size (e.g. validation data of several sizes), one of the model's
        `sizes` (`by_size`)."""
        bids, bidder_context, item_context = _unpack(inputs)
        shape = tf.TensorShape(getattr(bids, "shape", None))
        if shape.rank == 3 and 0 in shape[1:]:
            raise ValueError(f"`bids` must have at least one bidder and one item: shape "
                             f"[batch, num_bidders, num_items]; got {shape}.")
        bidder_context, item_context = validate_contexts(
            bids, bidder_context, item_context, self.setting.bidder_features,
            self.setting.item_features)
        if bids.shape.rank == 3 and None not in bids.shape[1:]:
            return self._outcome(bids, bidder_context, item_context, with_certificate)
        return by_size((bids, bidder_context, item_context), self.sizes,
                       lambda *sized: self._outcome(*sized, with_certificate))

    def _outcome(self, bids, bidder_context, item_context, with_certificate):
        bids = validate_bids(bids, bids.shape[1], bids.shape[2])
        return exact_outcome(bids, *self.served_menu(bidder_context, item_context),
                             micro_batch_size=self.block_size(*bids.shape[1:]),
                             with_certificate=with_certificate)

    def block_size(self, num_bidders, num_items):
        """Auctions per block of the served menu and outcome at a size: `micro_batch_size`,
        else `tf_ama.core.blocks.outcome_block_size` of its bidders and served entries."""
        return self.micro_batch_size or outcome_block_size(
            num_bidders, self.served_entries(num_bidders, num_items))

    def served_entries(self, num_bidders, num_items):
        """The entries of the menus served at a size: 1 at `myerson_sizes`, else the menu
        layer's `entries`."""
        if (num_bidders, num_items) in self.myerson_sizes:
            return 1
        return self.menu_layer.entries(num_bidders)

    @property
    def knows_myerson(self):
        """Whether per-context Myerson is an AMA of this model's menu: the item-separable
        family, on a value model with `uniform_bounds` (docs/design.md §10)."""
        return self.menu_layer.separable and self.setting.has_uniform_bounds

    def serve_myerson_at(self, sizes):
        """Serves per-context Myerson at `sizes` too (`myerson_sizes`, a list of sizes or
        one string of them); forgets the traced functions, which served the menu there."""
        sizes = size_list("myerson_sizes", sizes)
        if sizes and not self.knows_myerson:
            raise ValueError("`myerson_sizes` serve per-context Myerson through the "
                             "item-separable family: they need separable=True and a value "
                             "model with `uniform_bounds`.")
        self.myerson_sizes = tuple(sorted({*self.myerson_sizes, *sizes}))
        self.train_function = self.test_function = self.predict_function = None
        return self

    def chose_at(self, sizes):
        """Records that the choice between the menu and per-context Myerson was made at
        `sizes` (`chosen_sizes`)."""
        self.chosen_sizes = tuple(sorted({*self.chosen_sizes,
                                          *size_list("chosen_sizes", sizes)}))
        return self

    def myerson_menu(self, bidder_context, item_context):
        """Per-context Myerson as a float64 menu: the empty entry and the family at Myerson's
        boosts (`ContextualSetting.separate_myerson_boosts`), every bidder weighing 1."""
        batch = tf.shape(bidder_context)[0]
        num_bidders, num_items = bidder_context.shape[1], item_context.shape[1]
        return Menu(tf.zeros([batch, 1, num_bidders, num_items], tf.float64),
                    tf.zeros([batch, 1], tf.float64), tf.ones([batch, num_bidders], tf.float64),
                    self.setting.separate_myerson_boosts(tf.cast(bidder_context, tf.float64),
                                                         tf.cast(item_context, tf.float64)))

    def served_menu(self, bidder_context, item_context):
        """The float64 menus of `menu` (contexts of a static size), computed in blocks of
        exactly `block_size` auctions (padded with copies of the first), so that an auction's
        menu does not depend, bit for bit, on the other auctions in its batch (the network's
        matmuls may round differently for another number of rows); at `myerson_sizes`,
        `myerson_menu`. What the exact outcome (`call`) and the exported `menu` signature
        serve."""
        num_bidders, num_items = bidder_context.shape[1], item_context.shape[1]
        block = self.block_size(num_bidders, num_items)
        batch = tf.shape(bidder_context)[0]
        num_blocks = tf.maximum((batch + block - 1) // block, 1)

        def blocks_of(context):
            # Copies of the first auction (of zeros for a batch of none).
            first = tf.concat([context[:1], tf.zeros([1, *context.shape[1:]], context.dtype)],
                              axis=0)[:1]
            padding = tf.repeat(first, num_blocks * block - batch, axis=0)
            padded = tf.concat([context, padding], axis=0)
            return tf.reshape(padded, tf.concat([[num_blocks, block], tf.shape(context)[1:]], 0))

        def menu(contexts):
            built = (self.myerson_menu(*contexts) if (num_bidders, num_items) in self.myerson_sizes
                     else self.menu(*contexts, dtype=tf.float64))
            return tuple(t for t in built if t is not None)

        entries = self.served_entries(num_bidders, num_items)
        specs = [tf.TensorSpec([block, entries, num_bidders, num_items], tf.float64),
                 tf.TensorSpec([block, entries], tf.float64),
                 tf.TensorSpec([block, num_bidders], tf.float64)]
        if self.menu_layer.separable:
            specs.append(tf.TensorSpec([block, num_bidders + 1, num_items], tf.float64))
        mapped = tf.map_fn(menu, (blocks_of(bidder_context), blocks_of(item_context)),
                           fn_output_signature=tuple(specs), parallel_iterations=1)
        unblocked = [tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))[:batch] for t in mapped]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in unblocked])
        largest = tf.reduce_max(tf.abs(tf.concat([tf.reshape(bidder_context, [-1]),
                                                  tf.reshape(item_context, [-1]), [0.0]], 0)))
        setting = self.setting
        check = tf.debugging.Assert(finite, [
            "The menu network's menu is not finite for these contexts (largest |context|:",
            largest, f"); it was trained on contexts in [{setting.context_low:g}, "
            f"{setting.context_high:g}]: give `bidder_context` and `item_context` of that "
            "scale."], summarize=1)
        with tf.control_dependencies([check]):
            unblocked = [tf.identity(t) for t in unblocked]
        return Menu(*unblocked, *([None] * (4 - len(unblocked))))

    # ------------------------------------------------------------------------------ training
    def _kernel_micro_batch_size(self):
        return None  # the whole batch: a step's menus are computed for it at once anyway

    def _step_gradients(self, data):
        """`(loss, gradients)` of the step's auctions: the data's `(bids, bidder_context,
        item_context)`, or, for `fresh_valuations(batch)`, `batch` fresh auctions of one
        size (`step % len(sizes)`), drawn and differentiated in a `tf.switch_case` branch
        of their own static shapes."""
        inputs = keras.utils.unpack_x_y_sample_weight(data)[0]
        if not (isinstance(inputs, tf.Tensor) and inputs.shape.rank == 2
                and inputs.shape[-1] == 0):
            bids, bidder_context, item_context = _unpack(inputs)
            size = tuple(bids.shape[1:])
            active = (self.active_sets[self.sizes.index(size)]
                      if self.active_sets and size in self.sizes else None)
            loss, gradients = self._gradients(tf.cast(bids, tf.float32), None, active,
                                              (bidder_context, item_context))
            return loss, self._relative(loss, gradients)
        step = self.optimizer.iterations
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        replicas = context.num_replicas_in_sync if context is not None else 1
        if self.active_sets and replicas > 1:  # its refresh gathers every replica's gaps
            raise ValueError(
                "A contextual model trained on fresh auctions with several replicas cannot "
                "use the active set (`active_margin`): each size's step runs in a branch of "
                "its own, where replicas cannot synchronize. Drop active_margin (--active-"
                "margin), or train on one device.")
        seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.data_seed, seeds.CONTEXTUAL_STREAM_KEY], tf.int32), step)
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        batch_size = tf.shape(inputs)[0]
        variables = self.trainable_variables

        def branch(index):
            def gradients():
                bids, bidder_context, item_context = self.setting.sample(
                    batch_size, seed, self.sizes[index])
                active = self.active_sets[index] if self.active_sets else None
                # Every replica draws a batch of the same size: its share is 1 / replicas.
                loss, found = self._gradients(bids, None, active,
                                              (bidder_context, item_context), 1.0 / replicas)
                # Every branch gives a gradient for every variable (tf.switch_case).
                return loss, [tf.zeros_like(v) if g is None else g
                              for g, v in zip(found, variables)]
            return gradients

        index = tf.cast(step % len(self.sizes), tf.int32)
        loss, gradients = tf.switch_case(index, [branch(k) for k in range(len(self.sizes))])
        return loss, self._relative(loss, gradients)

    def _relative(self, loss, gradients):
        """With `relative_loss`, the gradients of minus the log of the soft revenue: `d(-log
        R) = -dR / R`, `R` the step's soft revenue summed over the replicas (outside any
        branch: replicas synchronize only there), at least `TINY_REVENUE`."""
        if not self.relative_loss:
            return gradients
        revenue = tf.maximum(tf.stop_gradient(-distributed.sum_over_replicas(loss)),
                             TINY_REVENUE)
        return [g if g is None else g / tf.cast(revenue, g.dtype) for g in gradients]

    def _exact_revenues(self, data):
        inputs = keras.utils.unpack_x_y_sample_weight(data)[0]
        bids, bidder_context, item_context = _unpack(inputs)
        revenue = tf.reduce_sum(self((tf.cast(bids, tf.float64), tf.cast(bidder_context, tf.float64),
                                      tf.cast(item_context, tf.float64)))["payments"], axis=1)
        return revenue, tf.ones_like(revenue)

    def get_config(self):
        return {**keras.Model.get_config(self), "setting": self.setting.to_dict(),
                "sizes": [size_name(s) for s in self.sizes],
                "menu": keras.saving.serialize_keras_object(self.menu_layer),
                "temperature": self.temperature, "seed": self.seed, "data_seed": self.data_seed,
                "micro_batch_size": self.micro_batch_size, "jit_objective": self.jit_objective,
                "active_margin": self.active_margin,
                "active_refresh_steps": self.active_refresh_steps,
                "relative_loss": self.relative_loss,
                "myerson_sizes": [size_name(s) for s in self.myerson_sizes],
                "chosen_sizes": [size_name(s) for s in self.chosen_sizes]}


# The soft revenue below which `relative_loss` stops dividing by it (a menu earning nothing on
# a batch would otherwise take an unbounded step).
TINY_REVENUE = 1e-6


def size_list(name, sizes):
    """The sizes `(m, n)` of the argument `name`: a list of sizes (`(3, 10)` or `"3x10"`) or
    one string of them, comma-separated; in order, without repeats."""
    if isinstance(sizes, str):
        sizes = sizes.split(",") if sizes else ()
    try:
        return tuple(dict.fromkeys(parse_size(size) for size in sizes))
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must be a list of sizes such as ['2x5', '3x10']; got "
                         f"{sizes!r} ({error})") from None


def _unpack(inputs):
    """`(bids, bidder_context, item_context)` from a tuple/list or a dict of those names."""
    if isinstance(inputs, dict):
        missing = {"bids", "bidder_context", "item_context"} - set(inputs)
        if missing:
            raise ValueError(f"A contextual auction's input needs {sorted(missing)} too.")
        return inputs["bids"], inputs["bidder_context"], inputs["item_context"]
    if not isinstance(inputs, (tuple, list)) or len(inputs) != 3:
        raise ValueError("A contextual auction's input is (bids, bidder_context, item_context) "
                         "or a dict of those names; for fit, tf_ama.fresh_valuations(batch) or "
                         "tf_ama.contextual_dataset(...).")
    return tuple(inputs)


def by_size(inputs, sizes, outcome):
    """`outcome(bids, bidder_context, item_context)` with static sizes `[batch, m, n]`,
    `[batch, m, d_x]`, `[batch, n, d_y]`, for `inputs` (those three, validated) whose size is
    known only at run time: one traced branch per size of `sizes` (`tf.switch_case`); any
    other size is refused, naming the sizes (the exact outcome is traced for static sizes)."""
    bids, bidder_context, item_context = inputs
    padded = tf.concat([tf.shape(bids), [-1, -1, -1, -1]], axis=0)
    index = tf.constant(-1)
    for k, (m, n) in enumerate(sizes):
        index = tf.where(tf.reduce_all(tf.equal(padded[1:4], [m, n, -1])), k, index)
    served = ", ".join(size_name(s) for s in sizes)
    check = tf.debugging.Assert(index >= 0, [
        f"`bids` must have shape [batch, num_bidders, num_items] of a size served here "
        f"({served}); got shape", tf.shape(bids), "- a contextual model serves any size, but "
        "each is traced on its own: give it in `sizes` (tf_ama.export_saved_model(..., "
        "sizes=...), tf-ama export --sizes)."], summarize=8)
    with tf.control_dependencies([check]):
        index = tf.identity(index)

    def branch(size):  # the asserted size, made static
        m, n = size
        return lambda: outcome(tf.reshape(bids, [-1, m, n]),
                               tf.reshape(bidder_context, [-1, m, bidder_context.shape[2]]),
                               tf.reshape(item_context, [-1, n, item_context.shape[2]]))

    return tf.switch_case(index, [branch(size) for size in sizes])

