"""Valuation data for `fit` and `evaluate`: fresh samples, fixed samples, exact expectations.

`fresh_valuations(batch_size)` tells the model to draw its own samples each step (from the
setting's TFP distribution, with a stateless seed derived from the model's `data_seed`, the
optimizer step and the replica: `step_valuations`); `valuation_dataset` is a fixed sample
(e.g. for validation); `expectation_dataset` is every profile of a discrete setting weighted
by its probability.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_ama.data import distributions
from tf_ama.data.settings import get_setting
from tf_ama.utils import checks, seeds


def fresh_valuations(batch_size):
    """The `x` for `fit` when the model draws its own valuations: one empty
    `[batch_size, 0]` tensor, repeated. Its batch axis sets the samples per step (split
    across replicas under `tf.distribute`); it carries no data."""
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    return tf.data.Dataset.from_tensors(tf.zeros([batch_size, 0])).repeat()


def valuation_dataset(setting, num_samples, seed, batch_size=4096):
    """A fixed `tf.data.Dataset` of `num_samples` valuation profiles (e.g. for validation)."""
    setting = get_setting(setting)
    return tf.data.Dataset.from_tensor_slices(setting.sample(num_samples, seed)).batch(batch_size)


def validation_sample(setting, num_samples, seed):
    """A run's validation profiles `[N, m, n]` (float32): `setting.sample(num_samples, seed)`,
    or, for a setting made from data (`tf_ama.data.empirical`), the rows of its validation split
    (then `num_samples` and `seed` are not used: the split is the data's)."""
    from tf_ama.data import data_files

    setting = get_setting(setting)
    if data_files.is_empirical(setting):
        return tf.constant(data_files.split_rows(setting.distribution_params, setting.num_bidders,
                                                setting.num_items, "validation"), tf.float32)
    return setting.sample(num_samples, seed)


def validation_dataset(setting, num_samples, seed, batch_size=4096):
    """`validation_sample` as a `tf.data.Dataset` (Keras' `validation_data`)."""
    return tf.data.Dataset.from_tensor_slices(
        validation_sample(setting, num_samples, seed)).batch(batch_size)


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
    replicas = checks.integer("replicas", replicas, minimum=1)
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


def step_valuations(data, setting, distribution=None, data_seed=None, step=None):
    """`(valuations, sample_weight)` of one training or test step: the data's own (`x`, or
    `(x, y, sample_weight)` with `y` ignored), or, if `x` is `fresh_valuations`' `[batch, 0]`,
    `batch` fresh samples of `distribution` seeded by (`data_seed`, `step`, replica). Without
    a `distribution` (validation), fresh samples are refused."""
    valuations, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if valuations.shape.rank == 2 and valuations.shape[-1] == 0:
        if distribution is None:
            raise ValueError(
                "Validation needs valuations: fresh_valuations(...) would draw the same samples "
                "for every batch. Use tf_ama.valuation_dataset(setting, num_samples, seed).")
        if sample_weight is not None:
            raise ValueError(
                "`sample_weight` weighs given valuations; with fresh_valuations(...) the "
                "model draws its own samples, which have no weights. Drop sample_weight.")
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        seed = tf.random.experimental.stateless_fold_in(
            tf.constant([data_seed, seeds.TRAINING_STREAM_KEY], tf.int32), step)
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        return distribution.sample(tf.shape(valuations)[0], seed=seed), None
    expected = [setting.num_bidders, setting.num_items]
    if valuations.shape.rank != 3 or valuations.shape[1:].as_list() != expected:
        raise ValueError(
            f"`x` must be valuations [batch, num_bidders, num_items] = [batch, {expected[0]}, "
            f"{expected[1]}] or tf_ama.fresh_valuations(batch_size) (the model then draws "
            f"its own); got a batch of shape {valuations.shape}.")
    if sample_weight is not None:
        sample_weight = _checked_sample_weight(sample_weight, valuations)
    return tf.cast(valuations, tf.float32), sample_weight


def _checked_sample_weight(sample_weight, valuations):
    """`sample_weight` as float32 `[batch]` after checking it (a clear error, not a NaN step)."""
    sample_weight = tf.convert_to_tensor(sample_weight)
    if not sample_weight.dtype.is_floating or sample_weight.shape.rank != 1:
        raise ValueError(
            f"`sample_weight` must be a float vector [batch], one weight per profile; got "
            f"dtype {sample_weight.dtype.name}, shape {sample_weight.shape}.")
    sample_weight = tf.cast(sample_weight, tf.float32)
    sizes = (sample_weight.shape[0], valuations.shape[0])
    if None not in sizes and sizes[0] != sizes[1]:  # known when traced: the same error now
        raise tf.errors.InvalidArgumentError(None, None, (
            f"`sample_weight` must have one weight per profile of `x` (same batch size); got "
            f"{sizes[0]} weights for {sizes[1]} profiles."))
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
