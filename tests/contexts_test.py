"""Contextual settings (tf_ama.data.contexts, issue 16): sampling, value models, per-context
Myerson as an AMA of the item-separable family (against a NumPy loop of Myerson's auction)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_ama
from tf_ama.data.contexts import (ContextualSetting, affinity, get_contextual_setting, parse_size,
                             register_value_model)
from tf_ama.evaluation.contextual import baseline_revenues


@pytest.mark.parametrize("name,size", [("contextual_a", (2, 5)), ("contextual_b", (3, 2))])
def test_samples_have_the_shapes_and_support_of_the_value_model(name, size):
    setting = get_contextual_setting(name)
    bids, x, y = setting.sample(500, seed=3, size=size, dtype=tf.float64)
    assert bids.shape == (500, *size) and x.shape == (500, size[0], 10)
    assert y.shape == (500, size[1], 10)
    assert np.all(np.abs(x) <= 1) and np.all(np.abs(y) <= 1)
    bound = affinity(x, y).numpy()
    assert np.all(bids >= 0) and np.all(bids <= bound)
    if name == "contextual_b":  # v_i = (u, 1 - u) * s_i
        np.testing.assert_allclose(np.sum(bids / bound, axis=2), 1.0, rtol=1e-12)
    again = setting.sample(500, seed=3, size=size, dtype=tf.float64)
    for first, second in zip((bids, x, y), again):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(setting.sample(500, seed=4, size=size, dtype=tf.float64)[0], bids)


def _myerson_loop(bids, bounds):
    """Myerson's optimal auction of each item alone for independent U[0, s_ij] values, by
    loops: the highest non-negative virtual value 2 v - s wins and pays its threshold."""
    revenue = np.zeros(len(bids))
    for b in range(len(bids)):
        for j in range(bids.shape[2]):
            virtual = [2 * bids[b, i, j] - bounds[b, i, j] for i in range(bids.shape[1])]
            winner = int(np.argmax(virtual))
            if virtual[winner] < 0:
                continue
            others = max([0.0] + [virtual[i] for i in range(len(virtual)) if i != winner])
            revenue[b] += (others + bounds[b, winner, j]) / 2
    return revenue


@pytest.mark.parametrize("name,size", [("contextual_a", (3, 4)), ("contextual_b", (4, 2))])
def test_per_context_myerson_is_the_family_with_c_minus_half_the_bound(name, size):
    setting = get_contextual_setting(name)
    bids, x, y = setting.sample(300, seed=5, size=size, dtype=tf.float64)
    c = setting.separate_myerson_boosts(x, y).numpy()
    np.testing.assert_array_equal(c[:, :-1], -affinity(x, y).numpy() / 2)
    np.testing.assert_array_equal(c[:, -1], 0.0)
    vcg, myerson = baseline_revenues(setting, bids, x, y)
    np.testing.assert_allclose(myerson, _myerson_loop(bids.numpy(), affinity(x, y).numpy()),
                               rtol=0, atol=1e-14)
    second = np.sort(bids.numpy(), axis=1)[:, -2].sum(axis=1)  # a second-price auction per item
    np.testing.assert_allclose(vcg, second, rtol=0, atol=1e-14)


def test_a_user_value_model_needs_no_change_to_the_library():
    tfd = tfp.distributions

    def beta_values(bidder_context, item_context, dtype, concentration=2.0):
        scale = tf.cast(affinity(bidder_context, item_context), dtype)
        return tfd.Independent(tfd.Beta(concentration * tf.ones_like(scale),
                                        concentration * scale), 2)

    register_value_model("test_beta", beta_values)
    setting = ContextualSetting("beta_3x4", sizes=[(3, 4)], values="test_beta",
                                values_params={"concentration": 3.0})
    bids, _, _ = setting.sample(100, seed=0, size="3x4")
    assert bids.shape == (100, 3, 4) and np.all((bids >= 0) & (bids <= 1))
    assert setting.separate_myerson_boosts(*setting.sample(2, 0, "3x4")[1:]) is None
    assert ContextualSetting.from_dict(setting.to_dict()) == setting


@pytest.mark.parametrize("build,match", [
    (lambda: ContextualSetting("x", sizes=[(2, 2)], values="nope"), "values"),
    (lambda: ContextualSetting("x", sizes=[]), "at least one size"),
    (lambda: ContextualSetting("x", sizes=["2by2"]), "BIDDERSxITEMS"),
    (lambda: ContextualSetting("x", sizes=[(0, 2)]), "num_bidders"),
    (lambda: ContextualSetting("x", sizes=[(2, 2)], context_low=1.0, context_high=-1.0),
     "context_low"),
    (lambda: ContextualSetting("x", sizes=[(2, 2)], values_params={"a": object()}),
     "JSON"),
    (lambda: get_contextual_setting("contextual_z"), "Unknown contextual setting"),
    (lambda: get_contextual_setting("contextual_b").sample(4, 0, "3x3"), "two items"),
    (lambda: ContextualSetting.from_dict({"name": "x", "sizes": [[2, 2]], "colour": 1}),
     "colour"),
])
def test_bad_contextual_settings_are_refused_by_name(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_sizes_parse_from_text_and_pairs():
    assert parse_size("3x10") == (3, 10) == parse_size([3, 10])
    assert tf_ama.get_contextual_setting("contextual_b").sizes[0] == (2, 2)
