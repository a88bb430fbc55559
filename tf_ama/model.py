"""`AffineMaximizerAuction`: a lottery AMA as a Keras model, trained with `fit`.

    setting = tf_ama.get_setting("additive_2x2_uniform")
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=1024, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tf_ama.fresh_valuations(batch_size=4096), epochs=20, steps_per_epoch=100,
              validation_data=tf_ama.valuation_dataset(setting, 20_000, seed=1))

`train_step` draws fresh valuations every step from the setting's TFP distribution with a
stateless seed derived from (`seed`, optimizer step, replica): the same seed gives the same
run, a run resumed from a checkpoint continues with the samples it would have drawn, and
replicas of a `tf.distribute` strategy draw different samples. It minimizes minus the soft
revenue (`mechanism.soft_payments`), optionally accumulating gradients over micro-batches so
that memory stays bounded. `test_step` reports the EXACT revenue (`tf_ama.exact_outcome`, float64).
Calling the model on bids returns the exact outcome.

Given valuations (`x`) are used as they are, with optional Keras sample weights
(`(x, y, sample_weight)`, `y` ignored): `expectation_dataset(setting)` is every profile of a
discrete setting weighted by its probability, so that steps and `val_revenue` are exact
expectations.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_ama import distributions, menus, relaxation
from tf_ama.exactness import MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT
from tf_ama.mechanism import exact_outcome
from tf_ama.settings import Setting, get_setting

MENUS = ("lottery", "deterministic", "fixed")


def fresh_valuations(batch_size):
    """The `x` for `fit` when the model draws its own valuations: one empty
    `[batch_size, 0]` tensor, repeated. Its batch axis sets the samples per step (split
    across replicas under `tf.distribute`); it carries no data."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
    return tf.data.Dataset.from_tensors(tf.zeros([batch_size, 0])).repeat()


def valuation_dataset(setting, num_samples, seed, batch_size=4096):
    """A fixed `tf.data.Dataset` of `num_samples` valuation profiles (e.g. for validation)."""
    setting = get_setting(setting)
    return tf.data.Dataset.from_tensor_slices(setting.sample(num_samples, seed)).batch(batch_size)


def expectation_dataset(setting, replicas=1, max_profiles=1 << 16):
    """One batch `(profiles, (), probabilities)` of EVERY profile of a discrete setting
    (`distributions.finite_support`), for `fit` and `evaluate`: Keras' `(x, y, sample_weight)`
    with no targets (`()` rather than None, which `tf.distribute` cannot split).

    With the probabilities as sample weights, a step's mean is the exact expectation:
    training on it is noise-free gradient ascent on the expected soft revenue, and
    validating on it reports the exact expected revenue (no standard error). For training,
    repeat it: `fit(expectation_dataset(s).repeat(), steps_per_epoch=...)`.

    Args:
      replicas: under `tf.distribute`, the number of replicas: the batch is padded with
        zero-weight copies of the first profile to a multiple of it, so that it splits
        evenly (the padding changes no mean).
      max_profiles: refuse supports larger than this.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"`replicas` must be an int >= 1 (the strategy's "
                         f"num_replicas_in_sync); got {replicas!r}.")
    setting = get_setting(setting)
    try:
        profiles, probabilities = distributions.finite_support(
            setting.distribution_fn(tf.float64), max_profiles=max_profiles)
    except ValueError as error:
        raise ValueError(f"expectation_dataset (tf-ama train --exact-expectation) needs a discrete "
                         f"setting; {setting.name!r}: {error}") from None
    padding = -len(profiles) % replicas
    profiles = np.concatenate([profiles, np.repeat(profiles[:1], padding, axis=0)])
    probabilities = np.concatenate([probabilities, np.zeros(padding)])
    return tf.data.Dataset.from_tensors((tf.constant(profiles, tf.float32), (),
                                         tf.constant(probabilities, tf.float32)))


@keras.saving.register_keras_serializable(package="tf_ama")
class AffineMaximizerAuction(keras.Model):
    """A (lottery) affine maximizer auction whose menu, boosts and weights are learned.

    Args:
      setting: a `tf_ama.Setting` or the name of a built-in one.
      menu: `"lottery"` (learned allocations), `"deterministic"` (every feasible 0/1
        allocation, only boosts/weights learned) or `"fixed"` (see `from_menu`).
      menu_size: number of menu entries `K` for a lottery menu, the empty entry included.
      temperature: `lambda`, the inverse softmax temperature of the relaxation (paper: 100).
      learn_bidder_weights: learn positive bidder weights; default: only for asymmetric
        settings (weights fixed to 1 when bidders are i.i.d.).
      seed: seeds the initial parameters (and, unless `data_seed` is given, the valuations
        drawn during training).
      data_seed: seeds the valuations drawn during training; default `seed`. Training one
        initialization on several data seeds shows how much the initialization decides.
      micro_batch_size: split each step's batch into micro-batches of this size and
        accumulate their gradients (same gradient, bounded memory, faster: the tensors of a
        micro-batch stay in cache); "auto" (default) picks a size from the setting and the
        menu size (`relaxation.default_micro_batch_size`); None = no split.
      jit_objective: compile the per-micro-batch objective kernel with XLA (fuses its
        elementwise passes; measured ~2x faster on CPU, benchmarks/README.md).
      init_scale: standard deviation of the initial allocation logits.
      boost_init_scale: standard deviation of the initial boosts (seeded like the logits);
        0 (default): all boosts start at 0. Random boosts let different entries win on
        different profiles from the first step, so restarts explore more varied menus.
    """

    def __init__(self, setting, menu="lottery", menu_size=2048, temperature=100.0,
                 learn_bidder_weights=None, seed=0, micro_batch_size="auto", init_scale=1.0,
                 data_seed=None, jit_objective=True, boost_init_scale=0.0, **kwargs):
        super().__init__(**kwargs)
        setting = Setting.from_dict(setting) if isinstance(setting, dict) else get_setting(setting)
        if menu not in MENUS:
            raise ValueError(f"`menu` must be one of {MENUS}; got {menu!r}.")
        if menu == "deterministic":
            menu_size = menus.deterministic_menu_size(
                setting.num_bidders, setting.num_items, setting.demand)
        smallest = 2 if menu == "lottery" else 1  # the empty entry plus at least one learned
        if isinstance(menu_size, bool) or not isinstance(menu_size, int) or menu_size < smallest:
            raise ValueError(f"`menu_size` must be an int >= {smallest} for a {menu} menu (entry 0 "
                             f"is the empty allocation); got {menu_size!r}.")
        if not np.isfinite(init_scale) or init_scale <= 0:
            raise ValueError(f"`init_scale` must be finite and > 0; got {init_scale!r}.")
        if (isinstance(boost_init_scale, bool) or not isinstance(boost_init_scale, (int, float))
                or not np.isfinite(boost_init_scale) or boost_init_scale < 0):
            raise ValueError(f"`boost_init_scale` must be finite and >= 0; got "
                             f"{boost_init_scale!r}.")
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"`temperature` must be finite and > 0; got {temperature!r}.")
        if micro_batch_size not in (None, "auto") and (
                isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int)
                or micro_batch_size < 1):
            raise ValueError(
                f"`micro_batch_size` must be 'auto', None or an int >= 1; got {micro_batch_size!r}.")
        for name, value in (("seed", seed), ("data_seed", data_seed)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < 2**31):
                raise ValueError(f"`{name}` must be an int in [0, 2**31); got {value!r}.")
        self.setting = setting
        self.menu_type = menu
        self.menu_size = menu_size
        self.temperature = float(temperature)
        self.learn_bidder_weights = (
            (not setting.symmetric) if learn_bidder_weights is None else bool(learn_bidder_weights))
        self.seed = seed
        self.data_seed = seed if data_seed is None else data_seed
        self.micro_batch_size = micro_batch_size
        self.jit_objective = bool(jit_objective)
        self.init_scale = float(init_scale)
        self.boost_init_scale = float(boost_init_scale)
        self.valuation_distribution = setting.distribution_fn()
        self._create_parameters()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.revenue_tracker = keras.metrics.Mean(name="revenue")
        # Bids stay float64: Keras would otherwise cast them to the compute dtype.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    # ----------------------------------------------------------------------------- parameters
    def _create_parameters(self):
        m, n, k = self.setting.num_bidders, self.setting.num_items, self.menu_size
        learned = max(k - 1, 0)
        fixed = self.menu_type == "fixed"
        dtype = "float64" if fixed else "float32"
        init = self._logit_initializer
        if self.menu_type == "lottery":
            if self.setting.demand == "additive":
                self.allocation_logits = [self.add_weight(
                    shape=(learned, m + 1, n), initializer=init(1), name="allocation_logits")]
            else:
                self.allocation_logits = [
                    self.add_weight(shape=(learned, m, n), initializer=init(1), name="item_logits"),
                    self.add_weight(shape=(learned, m, n), initializer=init(2), name="bidder_logits"),
                ]
        else:
            # Refused, with its size, when too large to enumerate (menus.MAX_DETERMINISTIC_MENU).
            table = (np.zeros((k, m, n)) if fixed else menus.deterministic_allocations(
                m, n, self.setting.demand))
            self.fixed_allocations = self.add_weight(
                shape=(k, m, n), initializer=keras.initializers.Constant(table),
                trainable=False, dtype=dtype, name="allocations")
        boost_init = ("zeros" if fixed or not self.boost_init_scale else
                      self._logit_initializer(3, self.boost_init_scale))
        self.learned_boosts = self.add_weight(
            shape=(learned,), initializer=boost_init, trainable=not fixed, dtype=dtype,
            name="boosts")
        if fixed:  # a given menu is served with exactly the given weights (exp(log w) != w)
            self.fixed_bidder_weights = self.add_weight(
                shape=(m,), initializer="ones", trainable=False, dtype=dtype,
                name="bidder_weights")
        else:  # learned in log space, so that they stay positive
            self.log_bidder_weights = self.add_weight(
                shape=(m,), initializer="zeros", trainable=self.learn_bidder_weights,
                dtype=dtype, name="log_bidder_weights")

    def _logit_initializer(self, offset, stddev=None):
        # Seeded Keras initializers return the same values at every call.
        return keras.initializers.RandomNormal(
            stddev=self.init_scale if stddev is None else stddev,
            seed=(self.seed * 1000 + offset) % 2**31)

    def initial_allocation_logits(self):
        """The initial values of the allocation logits (lottery menus) as numpy arrays, rebuilt
        from `seed`: e.g. the "winning ticket" of paper §6.4, after training."""
        if self.menu_type != "lottery":
            raise ValueError("Only a lottery menu has allocation logits; this menu is "
                             f"{self.menu_type!r}.")
        return [np.asarray(self._logit_initializer(offset)(v.shape, dtype=v.dtype))
                for offset, v in enumerate(self.allocation_logits, start=1)]

    def winning_ticket(self, entries, seed=None):
        """A new, untrained lottery AMA whose menu is `entries` of this one, initialized with
        their initial logits and boosts; the empty entry 0 is always first.

        Args:
          entries: menu indices of this model (e.g. those used after training; 0 is ignored).
          seed: seeds the new model's training data (default: this model's `data_seed`).
        """
        rows = sorted({int(k) for k in entries} - {0})
        if not rows or rows[-1] >= self.menu_size:
            raise ValueError(f"`entries` must be menu indices in [1, {self.menu_size}); got {entries}.")
        ticket = type(self)(self.setting, menu="lottery", menu_size=len(rows) + 1,
                            temperature=self.temperature, learn_bidder_weights=self.learn_bidder_weights,
                            seed=self.seed, data_seed=self.data_seed if seed is None else seed,
                            micro_batch_size=self.micro_batch_size, init_scale=self.init_scale,
                            boost_init_scale=self.boost_init_scale,
                            jit_objective=self.jit_objective)
        for variable, initial in zip(ticket.allocation_logits, self.initial_allocation_logits()):
            variable.assign(initial[np.asarray(rows) - 1])
        if self.boost_init_scale:
            boosts = self._logit_initializer(3, self.boost_init_scale)(
                self.learned_boosts.shape, dtype=self.learned_boosts.dtype)
            ticket.learned_boosts.assign(np.asarray(boosts)[np.asarray(rows) - 1])
        return ticket

    def menu(self, dtype=tf.float32):
        """`(allocations [K, m, n], boosts [K], bidder_weights [m])` in `dtype`.

        Parameters are cast to `dtype` before the softmax / normalization that builds the
        allocations, so the float64 menu is exact, not a rounded float32 one.
        """
        cast = lambda value: tf.cast(value, dtype)  # noqa: E731
        if self.menu_type == "lottery":
            logits = [cast(v) for v in self.allocation_logits]
            if self.setting.demand == "additive":
                allocations = menus.additive_lottery(logits[0])
            else:
                allocations = menus.unit_demand_lottery(*logits)
        else:
            allocations = cast(self.fixed_allocations)
        boosts = tf.concat([tf.zeros([1], dtype), cast(self.learned_boosts)], axis=0)
        if self.menu_type == "fixed":
            bidder_weights = cast(self.fixed_bidder_weights)
        else:
            # Clipped to the exactness contract's range (tf_ama.exactness): a learned weight
            # never makes the served menu refused; inside the range the clip changes no bit.
            bidder_weights = tf.clip_by_value(tf.exp(cast(self.log_bidder_weights)),
                                              MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT)
        return allocations, boosts, bidder_weights

    def exact_menu(self):
        """The served menu as float64 numpy arrays `(allocations, boosts, bidder_weights)`."""
        return tuple(np.asarray(t) for t in self.menu(tf.float64))

    @classmethod
    def from_menu(cls, setting, allocations, boosts, bidder_weights, **kwargs):
        """A fixed AMA from a given menu (e.g. a published one), validated for feasibility."""
        setting = get_setting(setting)
        allocations, boosts, bidder_weights = menus.validate_fixed_menu(
            allocations, boosts, bidder_weights, setting.num_bidders, setting.num_items,
            setting.demand)
        model = cls(setting, menu="fixed", menu_size=len(allocations), **kwargs)
        model.fixed_allocations.assign(allocations)
        model.learned_boosts.assign(boosts[1:])
        model.fixed_bidder_weights.assign(bidder_weights)
        return model

    # ------------------------------------------------------------------------------- outcome
    def call(self, bids):
        """The exact outcome (dict of float64 `allocation`, `payments`, int64 `menu_index`)."""
        return exact_outcome(bids, *self.menu(tf.float64))

    # ------------------------------------------------------------------------------ training
    def _step_valuations(self, data):
        """`(valuations, sample_weight)` for this step: the data's own (`x`, or `(x, y,
        sample_weight)` with `y` ignored), or fresh samples if `x` is `[batch, 0]`."""
        valuations, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if valuations.shape.rank == 2 and valuations.shape[-1] == 0:
            if sample_weight is not None:
                raise ValueError(
                    "`sample_weight` weighs given valuations; with fresh_valuations(...) the "
                    "model draws its own samples, which have no weights. Drop sample_weight.")
            context = tf.distribute.get_replica_context()
            replica = context.replica_id_in_sync_group if context is not None else 0
            seed = tf.random.experimental.stateless_fold_in(
                tf.constant([self.data_seed, 0x5EED], tf.int32), self.optimizer.iterations)
            seed = tf.random.experimental.stateless_fold_in(seed, replica)
            return self.valuation_distribution.sample(tf.shape(valuations)[0], seed=seed), None
        expected = [self.setting.num_bidders, self.setting.num_items]
        if valuations.shape.rank != 3 or valuations.shape[1:].as_list() != expected:
            raise ValueError(
                f"`x` must be valuations [batch, num_bidders, num_items] = [batch, {expected[0]}, "
                f"{expected[1]}] or tf_ama.fresh_valuations(batch_size) (the model then draws "
                f"its own); got a batch of shape {valuations.shape}.")
        if sample_weight is not None:
            sample_weight = _checked_sample_weight(sample_weight, valuations)
        return tf.cast(valuations, tf.float32), sample_weight

    def train_step(self, data):
        valuations, sample_weight = self._step_valuations(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            menu = self.menu(valuations.dtype)  # built once per step, whatever the micro-batches
        # The soft revenue and its gradient with respect to the menu tensors, accumulated over
        # micro-batches by the fused kernel; the tape then carries them to the variables.
        revenue, menu_gradients = relaxation.batched_revenue_and_gradients(
            valuations, *menu, self.temperature, micro_batch_size=self._micro_batch(),
            jit_compile=self.jit_objective, sample_weight=sample_weight)
        # Minimize -revenue. Gradients are summed across replicas, so each replica's mean
        # counts with its share of the global batch (of the total weight): the sum is the
        # global batch's (weighted) mean, whatever the split (1 with one replica).
        local = (tf.cast(tf.shape(valuations)[0], valuations.dtype) if sample_weight is None
                 else tf.reduce_sum(sample_weight))
        total = _sum_over_replicas(local)
        if sample_weight is not None:
            with tf.control_dependencies([tf.debugging.assert_positive(total, message=(
                    "`sample_weight` sums to 0 over a step's batch: give some profile a "
                    "positive weight."))]):
                total = tf.identity(total)
        # divide_no_nan: under XLA (compile(jit_compile=True)) the asserts are dropped, and
        # a weightless step must then change nothing rather than write NaN.
        share = tf.math.divide_no_nan(local, total)
        gradients = tape.gradient(menu, variables,
                                  output_gradients=[-g * share for g in menu_gradients])
        self.optimizer.apply_gradients(zip(gradients, variables))
        # Keras averages the replicas' metric results, so every replica records the global
        # (weighted) mean: the sum of the replicas' shares of it.
        self.loss_tracker.update_state(_sum_over_replicas(-revenue * share))
        return {"loss": self.loss_tracker.result()}

    def _micro_batch(self):
        if self.micro_batch_size == "auto":
            return relaxation.default_micro_batch_size(self.setting.num_bidders, self.menu_size)
        return self.micro_batch_size

    def test_step(self, data):
        valuations = keras.utils.unpack_x_y_sample_weight(data)[0]
        if valuations.shape.rank == 2 and valuations.shape[-1] == 0:
            raise ValueError(
                "Validation needs valuations: fresh_valuations(...) would draw the same samples "
                "for every batch. Use tf_ama.valuation_dataset(setting, num_samples, seed).")
        valuations, sample_weight = self._step_valuations(data)
        revenue = tf.reduce_sum(self(tf.cast(valuations, tf.float64))["payments"], axis=1)
        weight = (tf.ones_like(revenue) if sample_weight is None
                  else tf.cast(sample_weight, revenue.dtype))
        # The global batch's weighted sum and weight, recorded by every replica (Keras
        # averages the replicas' metric results): sum s R / sum s over all profiles seen.
        # float32 like the metric (and like train_step's reductions: collectives of one
        # process must not mix dtypes).
        total = _sum_over_replicas(tf.cast(tf.reduce_sum(weight), tf.float32))
        weighted = _sum_over_replicas(tf.cast(tf.reduce_sum(weight * revenue), tf.float32))
        self.revenue_tracker.update_state(tf.math.divide_no_nan(weighted, total),
                                          sample_weight=total)
        return {"revenue": self.revenue_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.revenue_tracker]

    # ------------------------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            setting=self.setting.to_dict(),
            menu=self.menu_type,
            menu_size=self.menu_size,
            temperature=self.temperature,
            learn_bidder_weights=self.learn_bidder_weights,
            seed=self.seed,
            data_seed=self.data_seed,
            micro_batch_size=self.micro_batch_size,
            jit_objective=self.jit_objective,
            init_scale=self.init_scale,
            boost_init_scale=self.boost_init_scale,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["setting"] = Setting.from_dict(config["setting"])
        return cls(**config)


def _sum_over_replicas(value):
    return tf.distribute.get_replica_context().all_reduce("sum", value)


def _checked_sample_weight(sample_weight, valuations):
    """`sample_weight` as float32 `[batch]` after checking it (a clear error, not a NaN step)."""
    sample_weight = tf.convert_to_tensor(sample_weight)
    if not sample_weight.dtype.is_floating or sample_weight.shape.rank != 1:
        raise ValueError(
            f"`sample_weight` must be a float vector [batch], one weight per profile; got "
            f"dtype {sample_weight.dtype.name}, shape {sample_weight.shape}.")
    sample_weight = tf.cast(sample_weight, tf.float32)
    checks = [
        tf.debugging.assert_equal(tf.shape(sample_weight)[0], tf.shape(valuations)[0], message=(
            "`sample_weight` must have one weight per profile of `x` (same batch size).")),
        tf.debugging.assert_greater_equal(sample_weight, 0.0, message=(
            "`sample_weight` must be finite and >= 0 (weights, e.g. probabilities).")),
        tf.debugging.assert_less(sample_weight, np.inf, message=(
            "`sample_weight` must be finite and >= 0 (weights, e.g. probabilities).")),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(sample_weight)
