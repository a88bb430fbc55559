"""tf_ama.data.datasets: the valuations of a step (fresh, stateless samples or given ones with
checked sample weights), fixed samples and the exact expectation of a discrete setting."""

import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from builders import compiled_model
from tf_ama.data.datasets import step_valuations

SPHERICAL = "unit_demand_2x4_spherical"


_model = compiled_model


def _fresh(data_seed, step, setting="additive_2x2_uniform", batch=8):
    setting = tf_ama.get_setting(setting)
    return step_valuations(tf.zeros([batch, 0]), setting, setting.distribution_fn(),
                           data_seed, step)


def test_fresh_valuations_are_a_stateless_stream_keyed_by_seed_and_step():
    first, weight = _fresh(3, 0)
    assert weight is None and first.shape == (8, 2, 2) and first.dtype == tf.float32
    np.testing.assert_array_equal(_fresh(3, 0)[0].numpy(), first.numpy())  # same key: same
    assert not np.array_equal(_fresh(3, 1)[0].numpy(), first.numpy())      # next step
    assert not np.array_equal(_fresh(4, 0)[0].numpy(), first.numpy())      # other seed
    assert np.all((first.numpy() >= 0) & (first.numpy() <= 1))


def test_given_valuations_are_used_as_they_are():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    given = tf.constant(np.random.default_rng(0).uniform(size=(5, 2, 2)), tf.float64)
    valuations, weight = step_valuations(given, setting)
    assert weight is None and valuations.dtype == tf.float32
    np.testing.assert_array_equal(valuations.numpy(), given.numpy().astype(np.float32))
    valuations, weight = step_valuations((given, (), tf.fill([5], 0.2)), setting)
    np.testing.assert_array_equal(weight.numpy(), np.full(5, 0.2, np.float32))


def test_fresh_valuations_and_valuation_dataset_check_their_arguments():
    assert next(iter(tf_ama.fresh_valuations(7))).shape == (7, 0)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
            tf_ama.fresh_valuations(bad)
    batches = list(tf_ama.valuation_dataset("additive_2x2_uniform", 10, seed=1, batch_size=4))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(
        np.concatenate([b.numpy() for b in batches]),
        tf_ama.get_setting("additive_2x2_uniform").sample(10, 1).numpy())


def test_fit_refuses_valuations_of_the_wrong_shape():
    model = _model()
    with pytest.raises(ValueError, match="`x` must be valuations"):
        model.fit(tf.data.Dataset.from_tensors(tf.zeros([8, 3, 2])), epochs=1,
                  steps_per_epoch=1, verbose=0)


@pytest.mark.parametrize("sample_weight,error,match", [
    (tf.ones([7]), tf.errors.InvalidArgumentError, "one weight per profile"),
    (-tf.ones([8]), tf.errors.InvalidArgumentError, ">= 0"),
    (tf.fill([8], np.nan), tf.errors.InvalidArgumentError, ">= 0"),
    (tf.fill([8], np.inf), tf.errors.InvalidArgumentError, "finite"),
    (tf.zeros([8]), tf.errors.InvalidArgumentError, "sums to 0"),
    (tf.ones([8], tf.int32), ValueError, "float vector"),
    (tf.ones([8, 2]), ValueError, "float vector"),
])
def test_bad_sample_weights_are_refused_by_name(sample_weight, error, match):
    model = _model()
    dataset = tf.data.Dataset.from_tensors((tf.ones([8, 2, 2]), None, sample_weight))
    with pytest.raises(error, match=match):
        model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)


def test_the_expectation_dataset_is_padded_with_weightless_profiles_for_replicas():
    assert next(iter(tf_ama.expectation_dataset(SPHERICAL)))[0].shape == (25, 2, 4)
    profiles, _, weights = next(iter(tf_ama.expectation_dataset(SPHERICAL, replicas=8)))
    assert profiles.shape == (32, 2, 4) and weights.shape == (32,)
    assert np.all(weights.numpy()[:25] > 0) and not weights.numpy()[25:].any()
    np.testing.assert_array_equal(profiles.numpy()[25:], np.repeat(profiles.numpy()[:1], 7, 0))
    with pytest.raises(ValueError, match="replicas"):
        tf_ama.expectation_dataset(SPHERICAL, replicas=0)
    with pytest.raises(ValueError, match="needs a discrete setting; 'additive_2x2_uniform'"):
        tf_ama.expectation_dataset("additive_2x2_uniform")
    with pytest.raises(ValueError, match="max_profiles"):
        tf_ama.expectation_dataset(SPHERICAL, max_profiles=24)


def test_sample_weights_with_fresh_valuations_are_refused():
    dataset = tf.data.Dataset.from_tensors((tf.zeros([8, 0]), None, tf.ones([8]))).repeat()
    with pytest.raises(ValueError, match="Drop sample_weight"):
        _model().fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)


def test_validation_on_fresh_valuations_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="valuation_dataset"):
        model.evaluate(tf_ama.fresh_valuations(64), steps=1, verbose=0)
