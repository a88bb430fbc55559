"""The fused soft revenue equals the plain formula (`relaxation.soft_payments`), value and
gradients (float64)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_ama.core import allocations as menus
from tf_ama.core.blocks import training_block_size
from tf_ama.core.relaxation import batched_revenue_and_gradients, revenue_and_gradients, soft_payments


def soft_revenue(valuations, allocations, boosts, bidder_weights, temperature):
    """Mean over the batch of the summed soft payments, differentiable in the menu through
    the hand-derived gradients of `revenue_and_gradients` (what the model's step applies)."""
    temperature = tf.constant(temperature, valuations.dtype)
    return _soft_revenue(
        tf.stop_gradient(valuations), allocations, boosts, bidder_weights, temperature)


@tf.custom_gradient
def _soft_revenue(valuations, allocations, boosts, bidder_weights, temperature):
    ones = tf.ones(tf.shape(valuations)[:1], valuations.dtype)
    total, gradients = revenue_and_gradients(
        valuations, allocations, boosts, bidder_weights, temperature, ones)
    batch = tf.cast(tf.shape(valuations)[0], valuations.dtype)

    def gradient(upstream):
        return (None, *[g * (upstream / batch) for g in gradients], None)

    return total / batch, gradient


def _random_problem(num_bidders, num_items, menu_size, batch, demand, seed):
    rng = np.random.RandomState(seed)
    valuations = tf.constant(rng.rand(batch, num_bidders, num_items) * 2.0)
    if demand == "additive":
        logits = [tf.Variable(rng.randn(menu_size - 1, num_bidders + 1, num_items))]
        build = lambda: menus.additive_lottery(logits[0])  # noqa: E731
    else:
        logits = [tf.Variable(rng.randn(menu_size - 1, num_bidders, num_items)) for _ in range(2)]
        build = lambda: menus.unit_demand_lottery(*logits)  # noqa: E731
    boosts = tf.Variable(rng.randn(menu_size - 1) * 0.05)
    log_weights = tf.Variable(rng.randn(num_bidders) * 0.3)
    return valuations, build, logits, boosts, log_weights


def _menu(build, boosts, log_weights):
    """`(allocations, boosts with entry 0's, bidder weights)` of a `_random_problem`."""
    return build(), tf.concat([tf.zeros([1], tf.float64), boosts], 0), tf.exp(log_weights)


def _plain_mean_and_gradients(valuations, menu, sample_weight=None):
    """The (weighted) mean soft revenue of `relaxation.soft_payments` and its autodiff
    gradients with respect to the menu tensors: the oracle of the fused kernel."""
    with tf.GradientTape() as tape:
        tape.watch(menu)
        per_profile = tf.reduce_sum(soft_payments(valuations, *menu, 100.0), axis=1)
        if sample_weight is None:
            expected = tf.reduce_mean(per_profile)
        else:
            expected = tf.reduce_sum(sample_weight * per_profile) / tf.reduce_sum(sample_weight)
    return expected, tape.gradient(expected, list(menu))


@pytest.mark.parametrize("num_bidders,num_items,demand", [
    (1, 1, "additive"), (1, 2, "additive"), (2, 2, "additive"), (3, 1, "additive"),
    (3, 10, "additive"), (2, 4, "unit_demand"),
])
@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_fused_value_and_gradients_equal_autodiff_of_the_plain_formula(
        num_bidders, num_items, demand, temperature):
    valuations, build, logits, boosts, log_weights = _random_problem(
        num_bidders, num_items, 9, 13, demand, seed=num_bidders * 10 + num_items)
    variables = [*logits, boosts, log_weights]

    def objective(fused):
        allocations = build()
        full_boosts = tf.concat([tf.zeros([1], tf.float64), boosts], 0)
        weights = tf.exp(log_weights)
        if fused:
            return soft_revenue(valuations, allocations, full_boosts, weights, temperature)
        payments = soft_payments(valuations, allocations, full_boosts, weights, temperature)
        return tf.reduce_mean(tf.reduce_sum(payments, axis=1))

    results = []
    for fused in (False, True):
        with tf.GradientTape() as tape:
            value = objective(fused)
        results.append((value.numpy(), [g.numpy() for g in tape.gradient(value, variables)]))
    (plain, plain_grads), (fused, fused_grads) = results
    assert fused == pytest.approx(plain, rel=1e-12, abs=1e-13)
    for expected, got in zip(plain_grads, fused_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11)
    assert max(np.abs(g).max() for g in plain_grads) > 1e-6  # the comparison is not vacuous


@pytest.mark.parametrize("micro_batch_size", [None, 1, 4, 5, 13, 64])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_micro_batches_add_up_to_the_whole_batch(micro_batch_size, jit_compile):
    valuations, build, logits, boosts, log_weights = _random_problem(2, 3, 11, 13, "additive", 5)
    menu = _menu(build, boosts, log_weights)
    expected, expected_grads = _plain_mean_and_gradients(valuations, menu)
    revenue, grads = batched_revenue_and_gradients(
        valuations, *menu, 100.0, micro_batch_size, jit_compile)
    assert float(revenue) == pytest.approx(float(expected), rel=1e-12)
    for got, want in zip(grads, expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_default_micro_batch_is_a_power_of_two_that_stays_small():
    assert training_block_size(2, 4096) == 16
    assert training_block_size(3, 4096) == 16
    assert training_block_size(1, 16) == 4096
    for m, k in [(1, 1), (5, 4096), (3, 100000)]:
        size = training_block_size(m, k)
        assert 8 <= size <= 4096 and size & (size - 1) == 0


@pytest.mark.parametrize("micro_batch_size", [None, 3, 5])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_sample_weights_give_the_weighted_mean_of_the_plain_formula(micro_batch_size, jit_compile):
    valuations, build, logits, boosts, log_weights = _random_problem(2, 4, 9, 13, "unit_demand", 6)
    menu = _menu(build, boosts, log_weights)
    sample_weight = np.random.RandomState(7).rand(13) * 3.0
    sample_weight[[0, 5]] = 0.0  # profiles that do not count at all
    sample_weight = tf.constant(sample_weight)
    expected, expected_grads = _plain_mean_and_gradients(valuations, menu, sample_weight)
    revenue, grads = batched_revenue_and_gradients(
        valuations, *menu, 100.0, micro_batch_size, jit_compile, sample_weight=sample_weight)
    assert float(revenue) == pytest.approx(float(expected), rel=1e-12)
    for got, want in zip(grads, expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_integer_sample_weights_equal_repeating_the_profiles():
    valuations, build, logits, boosts, log_weights = _random_problem(3, 2, 7, 6, "additive", 8)
    menu = _menu(build, boosts, log_weights)
    counts = np.array([3, 0, 1, 2, 5, 1])
    weighted = batched_revenue_and_gradients(valuations, *menu, 100.0, 4,
                                             sample_weight=tf.constant(counts, tf.float64))
    repeated = batched_revenue_and_gradients(
        tf.repeat(valuations, counts, axis=0), *menu, 100.0, 4)
    assert float(weighted[0]) == pytest.approx(float(repeated[0]), rel=1e-12)
    for got, want in zip(weighted[1], repeated[1]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
