"""`AffineMaximizerAuction`: a lottery AMA as a Keras model, trained with `fit`.

    setting = tf_ama.get_setting("additive_2x2_uniform")
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=1024, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tf_ama.fresh_valuations(batch_size=4096), epochs=20, steps_per_epoch=100,
              validation_data=tf_ama.valuation_dataset(setting, 20_000, seed=1))

The model holds one menu layer (`tf_ama.menus.layers`: the allocations and boosts) and one
`BidderWeights` layer. `train_step` minimizes minus the soft revenue
(`relaxation.batched_revenue_and_gradients`) on the step's valuations
(`data.step_valuations`: fresh samples from a stateless seed, or the given ones with
optional sample weights); `test_step` reports the EXACT revenue (`tf_ama.exact_outcome`,
float64). Calling the model on bids returns the exact outcome.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_ama.core import relaxation
from tf_ama.core.allocations import Menu, validate_fixed_menu
from tf_ama.core.mechanism import exact_outcome
from tf_ama.data.datasets import step_valuations
from tf_ama.data.settings import Setting, get_setting
from tf_ama.menus.compat import Version01Compatibility
from tf_ama.menus.layers import BidderWeights, FixedMenu, LotteryMenu, make_menu
from tf_ama.models.active_set import ActiveSet, Largest
from tf_ama.utils import checks, defaults, distributed


@keras.saving.register_keras_serializable(package="tf_ama")
class AffineMaximizerAuction(Version01Compatibility, keras.Model):
    """A (lottery) affine maximizer auction whose menu, boosts and weights are learned.

    Args:
      setting: a `tf_ama.Setting`, its dict, or the name of a built-in one.
      (The arguments after `menu` are keyword-only: 0.1 took `menu_size` third.)
      menu: a menu kind (`"lottery"`, `"deterministic"`, `"separable"`,
        `"lottery+separable"`, `"fixed"`: `tf_ama.MENU_KINDS`),
        built for the setting with `seed` and `**menu_options`; or a menu layer
        (`tf_ama.LotteryMenu(...)`), or its serialized config.
      temperature: `lambda`, the softmax's inverse temperature in the relaxation (larger is
        sharper; paper: 100).
      learn_bidder_weights: learn positive bidder weights; default: only for asymmetric
        settings (weights fixed to 1 when bidders are i.i.d.).
      seed: seeds the initial parameters (and, unless `data_seed` is given, the valuations
        drawn during training; `tf_ama.utils.seeds` derives the validation and evaluation seeds).
      data_seed: seeds the valuations drawn during training; default `seed`.
      micro_batch_size: accumulate each step's gradient over micro-batches of this many
        profiles (same gradient, bounded memory); "auto" (default): sized to stay in cache
        (`tf_ama.core.blocks.training_block_size`); None: the whole batch at once.
      jit_objective: compile the per-micro-batch objective kernel with XLA.
      active_margin: None (default): every step's softmaxes run over the whole menu. A
        number `t` (e.g. 25): over the active set (`tf_ama.ActiveSet`), the entries within
        `t / temperature` of the best boosted welfare on some profile and softmax of a recent
        batch, each left-out entry weighing at most `exp(-t)`; the step then costs what
        the entries in play cost, not `K`. Logs `active_entries` and `neglected_mass`.
      active_refresh_steps: with `active_margin`, choose the active set again every this
        many steps.
      **menu_options: options of the menu kind, e.g. `menu_size`, `init_scale`,
        `boost_init_scale` for a lottery menu (`tf_ama.LotteryMenu`); and Keras' `name`.
    """

    def __init__(self, setting, menu="lottery", *, temperature=defaults.TEMPERATURE,
                 learn_bidder_weights=None,
                 seed=0, data_seed=None, micro_batch_size="auto", jit_objective=True,
                 active_margin=None, active_refresh_steps=defaults.ACTIVE_REFRESH_STEPS,
                 **menu_options):
        super().__init__(**{key: menu_options.pop(key) for key in ("name", "trainable", "dtype")
                            if key in menu_options})
        self.setting = self._checked_setting(setting)
        self.temperature = checks.number("temperature", temperature, above=0)
        self.seed = checks.seed("seed", seed)
        self.data_seed = self.seed if data_seed is None else checks.seed("data_seed", data_seed)
        self.micro_batch_size = (micro_batch_size if micro_batch_size in (None, "auto") else
                                 checks.integer("micro_batch_size", micro_batch_size, minimum=1))
        self.jit_objective = checks.boolean("jit_objective", jit_objective)
        self.menu_layer = self._checked_menu(menu, menu_options)
        self.bidder_weights_layer = self._bidder_weights(learn_bidder_weights)
        self.active_margin = (None if active_margin is None else
                              checks.number("active_margin", active_margin, above=0))
        self.active_refresh_steps = checks.integer("active_refresh_steps", active_refresh_steps,
                                                   minimum=1)
        self._add_active_sets()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.active_tracker = keras.metrics.Mean(name="active_entries")
        self.neglected_tracker = Largest(name="neglected_mass")
        self.revenue_tracker = keras.metrics.Mean(name="revenue")
        # Bids stay float64: Keras would otherwise cast them to the compute dtype.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    # The parts of a setting's kind (`tf_ama.ContextualAuction` gives its own).
    def _checked_setting(self, setting):
        return Setting.from_dict(setting) if isinstance(setting, dict) else get_setting(setting)

    def _checked_menu(self, menu, options):
        return make_menu(menu, self.setting, seed=self.seed, **options)

    def _bidder_weights(self, learn_bidder_weights):
        self.learn_bidder_weights = (
            not self.setting.symmetric if learn_bidder_weights is None
            else checks.boolean("learn_bidder_weights", learn_bidder_weights))
        return BidderWeights(self.setting.num_bidders, learned=self.learn_bidder_weights,
                             given=self.menu_layer.given_bidder_weights)

    def _add_active_sets(self):
        self.active_set = (None if self.active_margin is None else ActiveSet(
            self.menu_size, self.active_margin, self.active_refresh_steps, name="active_set"))

    @property
    def valuation_distribution(self):
        """The setting's TFP distribution, which training draws from; built on first use, so
        that a model trained on a data file (`tf_ama.data.empirical`) loads without the file."""
        if "_valuation_distribution" not in self.__dict__:
            with tf.init_scope():  # eager, also when first used inside a traced step
                self.__dict__["_valuation_distribution"] = self.setting.distribution_fn()
        return self.__dict__["_valuation_distribution"]

    @property
    def menu_size(self):
        """`K`, the number of explicit menu entries (the empty entry 0 included); a menu with
        the item-separable family has (m + 1)^n more after them (`tf_ama.core.separable`)."""
        return self.menu_layer.menu_size

    def menu(self, dtype=tf.float32):
        """The menu, a `tf_ama.core.allocations.Menu` `(allocations [K, m, n], boosts [K],
        bidder_weights [m], separable_boosts [m + 1, n] or None, size_boosts [m + 1, n + 1]
        or None)` in `dtype` (built from parameters cast to `dtype`, so that the float64 menu
        is exact)."""
        return Menu(*self.menu_layer.allocations_and_boosts(dtype),
                    self.bidder_weights_layer.values(dtype),
                    self.menu_layer.separable_boosts(dtype), self.menu_layer.size_boosts(dtype))

    def exact_menu(self):
        """The served menu as a `Menu` of float64 numpy arrays (`separable_boosts` None when
        the menu has no family, `size_boosts` None but for the bundle-size family)."""
        return Menu(*(None if t is None else np.asarray(t) for t in self.menu(tf.float64)))

    def call(self, bids):
        """The exact outcome (dict of float64 `allocation`, `payments`, int64 `menu_index`)."""
        return exact_outcome(bids, *self.menu(tf.float64))

    @classmethod
    def from_menu(cls, setting, allocations, boosts, bidder_weights, separable_boosts=None,
                  size_boosts=None, **kwargs):
        """A fixed AMA from a given menu (e.g. a published one), validated for feasibility;
        with `separable_boosts` `c` `[m + 1, n]`, the item-separable family joins it, and
        with `size_boosts` `g` `[m + 1, n + 1]` too, the bundle-size family."""
        setting = get_setting(setting)
        menu = validate_fixed_menu(allocations, boosts, bidder_weights, setting.num_bidders,
                                   setting.num_items, setting.demand, separable_boosts,
                                   size_boosts)
        model = cls(setting, menu=FixedMenu.for_setting(
            setting, menu_size=len(menu.allocations),
            separable=menu.separable_boosts is not None,
            bundle_sizes=menu.size_boosts is not None), **kwargs)
        model.menu_layer.assign_menu(menu.allocations, menu.boosts, menu.separable_boosts,
                                     menu.size_boosts)
        bidder_weights = menu.bidder_weights
        model.bidder_weights_layer.given_weights.assign(bidder_weights)
        return model

    def initial_allocation_logits(self):
        """The initial allocation logits of a lottery menu as numpy arrays, rebuilt from its
        seed: e.g. the "winning ticket" of paper §6.4, after training."""
        initial = self._lottery_menu("allocation logits").initial_values()
        return [initial[v.name] for v in self.menu_layer.allocation_logits]

    def winning_ticket(self, entries, seed=None):
        """A new, untrained AMA whose lottery menu is `entries` of this one at their initial
        values (`LotteryMenu.winning_ticket`), its data seeded by `seed` (default: this
        model's `data_seed`)."""
        ticket = self._lottery_menu("winning tickets").winning_ticket(entries)
        return type(self).from_config({**self.get_config(), "name": None, "menu": ticket,
                                       "data_seed": self.data_seed if seed is None else seed})

    def _lottery_menu(self, what):
        if not isinstance(self.menu_layer, LotteryMenu):
            raise ValueError(f"Only a lottery menu has {what}; this menu is "
                             f"{self.menu_layer.kind!r}.")
        return self.menu_layer

    # ------------------------------------------------------------------------------ training
    def make_train_function(self, force=False):
        """Keras's, with the optimizer built first. Without a distribution strategy, Keras
        builds it inside the first trace of the step; a `tf.function` that creates variables
        is traced a second time, so every `fit` traced the step twice (half of a small run's
        time, a contextual network's most)."""
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    def train_step(self, data):
        """One step of gradient ascent on the soft revenue of the step's valuations (one
        menu, or each auction's menu from its contexts), with the fused kernel."""
        loss, gradients = self._step_gradients(data)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(distributed.sum_over_replicas(loss))
        logs = {"loss": self.loss_tracker.result()}
        if self.active_margin is not None:
            logs.update(active_entries=self.active_tracker.result(),
                        neglected_mass=self.neglected_tracker.result())
        return distributed.step_logs(self.distribute_strategy, logs)

    def _step_gradients(self, data):
        """`(loss, gradients)` of the step: its valuations are the data's, or drawn
        (`tf_ama.data.datasets.step_valuations`)."""
        valuations, sample_weight = step_valuations(
            data, self.setting, self.valuation_distribution, self.data_seed,
            self.optimizer.iterations)
        return self._gradients(valuations, sample_weight, self.active_set)

    def _kernel_micro_batch_size(self):
        """The fused kernel's micro-batches (`micro_batch_size`)."""
        return self.micro_batch_size

    def _gradients(self, valuations, sample_weight, active_set, contexts=(), share=None):
        """`(loss, gradients)`: this replica's share of minus the soft revenue of
        `valuations` (weighted by `sample_weight`), and its gradients with respect to the
        trainable variables, under the menu of `contexts` (none for one menu). `share`, if
        given, is this replica's share of the global batch, known without a cross-replica
        sum (which cannot run inside a `tf.switch_case` branch)."""
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            # Built once per step, whatever the micro-batches.
            menu = self.menu(*contexts, dtype=valuations.dtype)
        # The soft revenue and its gradient with respect to the menu tensors, accumulated over
        # micro-batches by the fused kernel; the tape then carries them to the variables.
        if active_set is None:
            revenue, menu_gradients = relaxation.batched_revenue_and_gradients(
                valuations, *menu[:3], self.temperature,
                micro_batch_size=self._kernel_micro_batch_size(),
                jit_compile=self.jit_objective, sample_weight=sample_weight,
                separable_boosts=menu.separable_boosts, size_boosts=menu.size_boosts)
        else:
            revenue, menu_gradients = self._active_step(active_set, valuations, menu,
                                                        sample_weight)
        if share is None:
            share = distributed.replica_share(valuations, sample_weight)  # summed over replicas
        gradients = tape.gradient([t for t in menu if t is not None], variables,
                                  output_gradients=[-g * share for g in menu_gradients])
        return -revenue * share, gradients

    def _active_step(self, active, valuations, menu, sample_weight):
        # Not its own XLA kernel inside a whole step that Keras compiles with XLA
        # (`compile(jit_compile=True)`, "auto" on a GPU): that crashes XLA (a failed shape
        # check), and the whole step's compilation fuses the pass anyway.
        whole_step = bool(getattr(self, "jit_compile", False))
        micro_batch_size = self._kernel_micro_batch_size()
        bounds = active.refresh(
            valuations, *menu[:3], self.temperature, micro_batch_size,
            self.jit_objective and not whole_step, step=self.optimizer.iterations)
        self.neglected_tracker.update_state(bounds)
        revenue, gradients = active.revenue_and_gradients(
            valuations, menu, self.temperature, micro_batch_size, self.jit_objective,
            sample_weight)
        self.active_tracker.update_state(tf.cast(active.size(), tf.float32))
        return revenue, gradients

    def test_step(self, data):
        revenue, weight = self._exact_revenues(data)
        distributed.record_revenue(self.revenue_tracker, revenue, weight)
        return distributed.step_logs(self.distribute_strategy,
                                     {"revenue": self.revenue_tracker.result()})

    def _exact_revenues(self, data):
        """`(revenue [batch], weight [batch])`: the exact revenue of the data's auctions."""
        valuations, sample_weight = step_valuations(data, self.setting)  # given ones only
        revenue = tf.reduce_sum(self(tf.cast(valuations, tf.float64))["payments"], axis=1)
        weight = (tf.ones_like(revenue) if sample_weight is None
                  else tf.cast(sample_weight, revenue.dtype))
        return revenue, weight

    @property
    def metrics(self):
        if self.active_margin is None:
            return [self.loss_tracker, self.revenue_tracker]
        return [self.loss_tracker, self.revenue_tracker, self.active_tracker,
                self.neglected_tracker]

    # ------------------------------------------------------------------------- serialization
    def get_config(self):
        return {**super().get_config(), "setting": self.setting.to_dict(),
                "menu": keras.saving.serialize_keras_object(self.menu_layer),
                "temperature": self.temperature, "learn_bidder_weights": self.learn_bidder_weights,
                "seed": self.seed, "data_seed": self.data_seed,
                "micro_batch_size": self.micro_batch_size, "jit_objective": self.jit_objective,
                "active_margin": self.active_margin,
                "active_refresh_steps": self.active_refresh_steps}

    def own_config(self):
        """`get_config()` without the setting and Keras' own keys (name, ...): the model's
        arguments as a run directory records them."""
        keras_keys = set(super().get_config()) | {"setting"}
        return {k: v for k, v in self.get_config().items() if k not in keras_keys}


