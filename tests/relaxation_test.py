"""The fused soft revenue equals the plain formula of DESIGN §2, value and gradients (float64)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_ama import menus
from tf_ama.mechanism import soft_payments
from tf_ama.relaxation import soft_revenue


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


def test_no_gradient_flows_to_the_valuations():
    valuations = tf.Variable(np.random.RandomState(0).rand(4, 2, 2))
    allocations = menus.additive_lottery(tf.constant(np.random.RandomState(1).randn(3, 3, 2)))
    with tf.GradientTape() as tape:
        value = soft_revenue(valuations, allocations, tf.zeros([4], tf.float64),
                             tf.ones([2], tf.float64), 100.0)
    assert tape.gradient(value, valuations) is None
