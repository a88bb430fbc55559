"""Tests of tf_ama.data.distributions: the TFP valuation distributions (bounds, means, the
spherical construction), stateless seeds, user-registered distributions and bad parameters."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_ama
from tf_ama.data import distributions

tfd = tfp.distributions


@pytest.mark.parametrize("name,params", [
    ("uniform", {}),
    ("uniform", {"low": 1.0, "high": [2.0, 3.0, 4.0]}),
    ("exponential", {"mean": 3.0}),
])
@pytest.mark.parametrize("num_bidders", [1, 2])
def test_event_shape_and_sample_shape(name, params, num_bidders):
    dist = distributions.make_distribution(name, num_bidders, 3, params)
    assert dist.event_shape.as_list() == [num_bidders, 3]
    assert dist.batch_shape.as_list() == []
    samples = dist.sample(5, seed=(0, 1))
    assert samples.shape == (5, num_bidders, 3)
    dist64 = distributions.make_distribution(name, num_bidders, 3, params, dtype=tf.float64)
    assert dist64.sample(2, seed=(0, 1)).dtype == tf.float64


def test_uniform_per_item_bounds():
    setting = tf_ama.get_setting("additive_1x2_uniform_4_16_4_7")
    samples = setting.sample(4000, seed=(0, 42)).numpy()[:, 0, :]
    item_1, item_2 = samples[:, 0], samples[:, 1]
    assert item_1.min() >= 4.0 and item_1.max() <= 16.0
    assert item_2.min() >= 4.0 and item_2.max() <= 7.0
    # The whole range is used, not a sub-interval.
    assert item_1.min() < 4.1 and item_1.max() > 15.9
    assert item_2.min() < 4.05 and item_2.max() > 6.95
    np.testing.assert_allclose([item_1.mean(), item_2.mean()], [10.0, 5.5], atol=0.2)


def test_uniform_per_bidder_bounds():
    dist = distributions.uniform(2, 3, low=[[0.0], [1.0]], high=[[1.0], [5.0]])
    samples = dist.sample(2000, seed=(1, 1)).numpy()
    assert samples[:, 0].min() >= 0.0 and samples[:, 0].max() <= 1.0
    assert samples[:, 1].min() >= 1.0 and samples[:, 1].max() <= 5.0
    assert samples[:, 1].max() > 4.9


def test_exponential_mean():
    setting = tf_ama.get_setting("additive_3x1_exponential")
    samples = setting.sample(4000, seed=(0, 3)).numpy()  # 12 000 values, stderr of mean ~0.03
    assert samples.min() >= 0.0
    assert abs(samples.mean() - 3.0) < 0.15
    assert abs(np.median(samples) - 3.0 * np.log(2.0)) < 0.15


@pytest.mark.parametrize("base", [2.0, 3.0])
def test_spherical_points_and_frequencies(base):
    num_bidders, num_samples = 2, 3000
    dist = distributions.spherical(num_bidders, 4, base=base)
    samples = dist.sample(num_samples, seed=(7, int(base))).numpy().reshape(-1, 4)
    directions = np.array([
        (0.78, 0.57, 0.10, 0.23), (0.15, 0.60, 0.57, 0.53), (0.60, 0.36, 0.64, 0.32),
        (0.70, 0.61, 0.37, 0.05), (0.73, 0.06, 0.34, 0.59),
    ])  # docs/design.md §4
    points = base ** np.arange(5)[:, None] * directions
    distance = np.abs(samples[:, None, :] - points[None]).max(axis=2)  # [samples, 5]
    nearest = distance.argmin(axis=1)
    # Every sample is exactly one of the five points (float32 rounding only).
    assert distance.min(axis=1).max() < 1e-5 * base ** 4
    counts = np.bincount(nearest, minlength=5)
    probabilities = base ** -np.arange(5.0)
    probabilities /= probabilities.sum()
    expected = probabilities * len(samples)
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 25.0, (counts, expected)  # 4 dof: p ~ 5e-5
    assert counts.min() > 0


def test_spherical_bidders_are_independent_draws():
    samples = distributions.spherical(2, 4).sample(500, seed=(0, 0)).numpy()
    assert not np.array_equal(samples[:, 0], samples[:, 1])


def test_spherical_custom_directions():
    directions = [[1.0, 0.0], [0.0, 1.0]]
    samples = distributions.spherical(1, 2, base=4.0, directions=directions).sample(
        2000, seed=(0, 5)).numpy()[:, 0]
    values = {tuple(row) for row in samples.tolist()}
    assert values == {(1.0, 0.0), (0.0, 4.0)}
    assert abs((samples[:, 0] == 1.0).mean() - 0.8) < 0.05  # prob 4^0 : 4^-1 = 0.8 : 0.2


def test_same_seed_same_samples_different_seeds_differ():
    dist = distributions.make_distribution("exponential", 2, 2, {"mean": 3.0})
    first = dist.sample(32, seed=distributions.as_seed((4, 5))).numpy()
    np.testing.assert_array_equal(first, dist.sample(32, seed=distributions.as_seed((4, 5))).numpy())
    assert not np.array_equal(first, dist.sample(32, seed=distributions.as_seed((4, 6))).numpy())


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations made by a test vanish after it (the registry is process-global)."""
    monkeypatch.setattr(distributions, "_FACTORIES", dict(distributions._FACTORIES))


def beta_factory(num_bidders, num_items, concentration=2.0, dtype=tf.float32):
    ones = tf.ones([num_bidders, num_items], dtype)
    return tfd.Independent(tfd.Beta(ones, concentration * ones), reinterpreted_batch_ndims=2)


def test_registered_distribution_works_in_a_setting(private_registry):
    tf_ama.register_distribution("beta_for_test", beta_factory)
    assert "beta_for_test" in tf_ama.list_distributions()
    assert distributions.make_distribution("beta_for_test", 2, 3).event_shape == [2, 3]
    setting = tf_ama.Setting("additive_2x3_beta", 2, 3, "additive", "beta_for_test",
                             {"concentration": 3.0})
    samples = setting.sample(3000, seed=(2, 2)).numpy()
    assert samples.shape == (3000, 2, 3)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    assert abs(samples.mean() - 0.25) < 0.02  # Beta(1, 3) has mean 1/4
    restored = tf_ama.Setting.from_dict(setting.to_dict())
    np.testing.assert_array_equal(restored.sample(4, seed=1).numpy(), setting.sample(4, seed=1).numpy())


@pytest.mark.parametrize("factory,error,match", [
    (lambda m, n, dtype: tfd.Independent(tfd.Uniform(tf.zeros([m, n + 1], dtype), 1.0), 2),
     ValueError, r"event shape \[num_bidders, num_items\] = \[2, 2\].*got event shape \(2, 3\)"),
    (lambda m, n, dtype: tfd.Uniform(tf.zeros([m, n], dtype), 1.0),  # batch shape, no event
     ValueError, r"must have event shape .*tfd.Independent"),
    (lambda m, n, dtype: tfd.Independent(tfd.Uniform(tf.zeros([3, m, n], dtype), 1.0), 2),
     ValueError, r"no batch shape; .*batch shape \(3,\)"),
    (lambda m, n, dtype: np.zeros([m, n]), TypeError, r"must be a tfp.distributions.Distribution"),
    (lambda m, n: tfd.Independent(tfd.Uniform(tf.zeros([m, n]), 1.0), 2),
     ValueError, r"Bad parameters .*unexpected keyword argument 'dtype'"),
])
def test_registered_distribution_with_wrong_shape_is_refused(factory, error, match,
                                                            private_registry):
    tf_ama.register_distribution("bad_for_test", factory)
    with pytest.raises(error, match=match):
        tf_ama.Setting("x", 2, 2, "additive", "bad_for_test")


def test_register_distribution_refuses_bad_arguments(private_registry):
    with pytest.raises(ValueError, match=r"`name` must be a non-empty string"):
        tf_ama.register_distribution("", beta_factory)
    with pytest.raises(TypeError, match=r"`factory` must be callable; got str"):
        tf_ama.register_distribution("beta_for_test", "beta")
    assert "beta_for_test" not in tf_ama.list_distributions()


@pytest.mark.parametrize("name,num_items,params,match", [
    ("uniform", 2, {"low": 1.0, "high": 1.0}, r"`low` must be < `high` everywhere"),
    ("uniform", 2, {"low": [0.0, 2.0], "high": 1.0}, r"`low` must be < `high`"),
    ("uniform", 2, {"low": -1.0}, r"`low` must be >= 0"),
    ("uniform", 2, {"high": float("inf")}, r"`low` and `high` must be finite"),
    ("uniform", 2, {"high": [1.0, 2.0, 3.0]}, r"`high` must be a scalar or broadcast to "
                                              r"\[num_bidders, num_items\] = \[2, 2\]; got shape \[3\]"),
    ("uniform", 2, {"width": 1.0}, r"Bad parameters \{'width': 1.0\} for distribution 'uniform'"),
    ("exponential", 2, {"mean": -3.0}, r"`mean` must be finite and > 0"),
    ("exponential", 2, {"mean": float("nan")}, r"`mean` must be finite and > 0"),
    ("exponential", 2, {"mean": [1.0, 2.0, 3.0]}, r"`mean` must be a scalar or broadcast"),
    ("spherical", 4, {"base": 0.0}, r"`base` must be a finite number > 0; got 0.0"),
    ("spherical", 4, {"base": float("inf")}, r"`base` must be a finite number > 0"),
    ("spherical", 3, {}, r"`directions` must have shape \[num_points, num_items=3\]; got \[5, 4\]"),
    ("spherical", 2, {"directions": [[1.0, -1.0]]}, r"`directions` must be finite and >= 0"),
    ("spherical", 2, {"directions": [1.0, 1.0]}, r"`directions` must have shape"),
    ("poisson", 2, {}, r"Unknown distribution 'poisson'; known: \[.*'uniform'.*register_distribution"),
])
def test_bad_distribution_parameters(name, num_items, params, match):
    with pytest.raises(ValueError, match=match):
        distributions.make_distribution(name, 2, num_items, params)


@pytest.mark.parametrize("seed,expected", [
    (3, [0, 3]), (np.int64(4), [0, 4]), ((1, 2), [1, 2]), ([5, 6], [5, 6]),
    (np.array([7, 8]), [7, 8]), (tf.constant([9, 10], tf.int64), [9, 10]),
])
def test_as_seed(seed, expected):
    result = distributions.as_seed(seed)
    assert result.dtype == tf.int32 and result.numpy().tolist() == expected


@pytest.mark.parametrize("seed,match", [
    ((1, 2, 3), r"`seed` must be an int or a pair of ints"),
    ((1.0, 2.0), r"`seed` must be an int or a pair of ints"),
    (1.5, r"`seed` must be an int or a pair of ints"),
    ("ab", r"`seed` must be an int or a pair of ints"),
    (2**32, r"`seed` must fit in int32"),
    ((0, 2**40), r"`seed` must fit in int32"),
])
def test_as_seed_refuses_bad_seeds(seed, match):
    with pytest.raises(ValueError, match=match):
        distributions.as_seed(seed)


@pytest.mark.parametrize("num_bidders,base", [(1, 2.0), (2, 2.0), (3, 3.0)])
def test_finite_support_lists_every_profile_with_its_probability(num_bidders, base):
    directions = np.array(distributions.SPHERICAL_DIRECTIONS)
    profiles, probabilities = distributions.finite_support(
        distributions.spherical(num_bidders, 4, base=base, dtype=tf.float64))
    # Oracle: a plain loop over every choice of one point per bidder.
    points = base ** np.arange(5)[:, None] * directions
    point_probabilities = base ** -np.arange(5.0) / (base ** -np.arange(5.0)).sum()
    expected = {}
    for choice in itertools.product(range(5), repeat=num_bidders):
        expected[tuple(points[list(choice)].ravel())] = np.prod(point_probabilities[list(choice)])
    assert profiles.shape == (5 ** num_bidders, num_bidders, 4)
    got = {tuple(p.ravel()): q for p, q in zip(profiles, probabilities)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-15)


def test_finite_support_agrees_with_the_distributions_own_probabilities():
    dist = distributions.spherical(2, 4, dtype=tf.float64)
    profiles, probabilities = distributions.finite_support(dist)
    np.testing.assert_allclose(np.exp(dist.log_prob(profiles)), probabilities, rtol=1e-12)


def test_finite_support_refuses_other_distributions_and_huge_supports():
    with pytest.raises(ValueError, match="Sample from it instead"):
        distributions.finite_support(distributions.uniform(2, 2))
    with pytest.raises(ValueError, match="max_profiles"):
        distributions.finite_support(distributions.spherical(7, 4))  # 5**7 = 78 125


def test_finite_support_broadcasts_parameters_shared_by_the_bidders():
    points = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    shared = tfd.Independent(tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=tf.constant([0.5, 0.3, 0.2], tf.float64)),
        components_distribution=tfd.Independent(tfd.Deterministic(
            loc=tf.constant(np.broadcast_to(points, (2, 3, 2)), tf.float64)), 1)), 1)
    profiles, probabilities = distributions.finite_support(shared)
    assert profiles.shape == (9, 2, 2)
    np.testing.assert_allclose(np.exp(shared.log_prob(profiles)), probabilities, rtol=1e-12)
    np.testing.assert_allclose(np.sort(probabilities),
                               np.sort(np.outer([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]).ravel()))
