"""The optimal mechanism of a discrete prior (tf_ama.evaluation.optimum): exact oracles for one
item (posted prices, Myerson's discrete virtual values, in fractions), the certificate of the
program's own solution (a NumPy loop over every profile and misreport), the bound it puts on
every AMA, the spherical prior's published optimum, and bad input."""

from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import tf_ama
from tf_ama.core.allocations import Menu
from tf_ama.core.mechanism import exact_outcome
from tf_ama.data.distributions import finite_support
from tf_ama.data.settings import ANCHORS
from tf_ama.evaluation.optimum import best_possible, optimal_mechanism


def discrete_setting(points, probabilities, num_bidders=1, demand="additive", name="points"):
    points = np.asarray(points, np.float64)
    return tf_ama.Setting(name, num_bidders, points.shape[-1], demand, "discrete",
                          {"points": points.tolist(),
                           "probabilities": np.asarray(probabilities).tolist()})


def certify(optimum, demand, tolerance=1e-7):
    """Asserts, by a loop over every profile, bidder and misreport, that the program's
    mechanism is feasible, IR and dominant-strategy IC (to the solver's tolerance, relative
    to the largest value), and that its revenue is the probability-weighted payments."""
    profiles, x, p = optimum.profiles, optimum.allocations, optimum.payments
    scale = tolerance * (float(profiles.max()) or 1.0)  # the program's unit
    assert np.all(x >= -tolerance) and np.all(x <= 1 + tolerance)
    assert np.all(x.sum(axis=1) <= 1 + tolerance)
    if demand == "unit_demand":
        assert np.all(x.sum(axis=2) <= 1 + tolerance)
    num_profiles, num_bidders, _ = profiles.shape
    for s in range(num_profiles):
        for i in range(num_bidders):
            truthful = profiles[s, i] @ x[s, i] - p[s, i]
            assert truthful >= -scale
            for other in range(num_profiles):  # same others, another report of i
                if np.array_equal(np.delete(profiles[other], i, 0), np.delete(profiles[s], i, 0)):
                    assert truthful >= profiles[s, i] @ x[other, i] - p[other, i] - scale
    assert optimum.revenue == pytest.approx(float(optimum.probabilities @ p.sum(axis=1)),
                                            rel=1e-12)


def posted_price_optimum(values, weights):
    """One bidder, one item: the best posted price, exactly (a price at a type's value)."""
    total = sum(weights)
    return max(v * sum(w for u, w in zip(values, weights) if u >= v) / total for v in values)


def discrete_myerson(values, weights, num_bidders):
    """i.i.d. bidders, one item, a regular discrete prior: E[max(0, max_i phi(v_i))] with the
    discrete virtual value phi(v_k) = v_k - (v_{k+1} - v_k) (1 - F(v_k)) / f(v_k), exactly."""
    total = sum(weights)
    f = [Fraction(w, total) for w in weights]
    phi, below = [], Fraction(0)
    for k, v in enumerate(values):
        below += f[k]
        step = values[k + 1] - v if k + 1 < len(values) else 0
        phi.append(v - step * (1 - below) / f[k])
    assert phi == sorted(phi), "the oracle needs a regular prior"
    revenue = Fraction(0)
    for types in np.ndindex(*(len(values),) * num_bidders):
        probability = np.prod([f[t] for t in types], dtype=object)
        revenue += probability * max(0, max(phi[t] for t in types))
    return revenue


@pytest.mark.parametrize("values, weights", [
    ([1, 3], [1, 1]), ([1, 2, 4], [1, 1, 1]), ([2, 5, 9, 10], [4, 3, 2, 1]), ([0, 7], [3, 1])])
def test_one_bidder_one_item_is_the_best_posted_price(values, weights):
    optimum = optimal_mechanism(discrete_setting(
        [[v] for v in values], np.asarray(weights) / sum(weights)))
    expected = posted_price_optimum([Fraction(v) for v in values], weights)
    assert optimum.revenue == pytest.approx(float(expected), rel=1e-9, abs=1e-12)
    certify(optimum, "additive")


@pytest.mark.parametrize("num_bidders", [2, 3])
@pytest.mark.parametrize("values, weights", [([1, 2, 3], [1, 1, 1]), ([1, 4], [1, 1]),
                                             ([2, 3, 6], [5, 3, 2])])
def test_one_item_is_myerson_with_discrete_virtual_values(num_bidders, values, weights):
    optimum = optimal_mechanism(discrete_setting(
        [[v] for v in values], np.asarray(weights) / sum(weights), num_bidders))
    expected = discrete_myerson([Fraction(v) for v in values], weights, num_bidders)
    assert optimum.revenue == pytest.approx(float(expected), rel=1e-9)
    certify(optimum, "additive")


def test_the_spherical_prior_reaches_its_published_optimum():
    """docs/design.md §4: 2.349 with lotteries; the anchor printed beside it is the same."""
    optimum = optimal_mechanism("unit_demand_2x4_spherical")
    assert optimum.revenue == pytest.approx(ANCHORS["unit_demand_2x4_spherical"].revenue,
                                            abs=5e-4)
    certify(optimum, "unit_demand")
    best = best_possible("unit_demand_2x4_spherical")
    assert best.revenue == optimum.revenue and "linear program over its 25" in best.label


@pytest.mark.slow
def test_the_spherical_prior_deterministic_optimum():
    """docs/design.md §4: the best deterministic mechanism earns 1.907 (a mixed-integer
    program, ~10 s)."""
    optimum = optimal_mechanism("unit_demand_2x4_spherical", deterministic=True)
    assert optimum.revenue == pytest.approx(1.907, abs=5e-4)
    assert set(np.unique(np.round(optimum.allocations, 6))) <= {0.0, 1.0}
    certify(optimum, "unit_demand")


def expected_ama_revenue(setting, menu):
    """The exact expected revenue of a fixed AMA on a discrete prior: every profile's exact
    outcome, weighted by its probability."""
    profiles, probabilities = finite_support(setting.distribution_fn(tf.float64))
    outcome = exact_outcome(tf.constant(profiles), *menu)
    return float(probabilities @ outcome["payments"].numpy().sum(axis=1))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), exponent=st.integers(-6, 6),
       demand=st.sampled_from(["additive", "unit_demand"]), num_types=st.integers(2, 3))
def test_the_optimum_bounds_every_ama_and_scales_with_the_values(seed, exponent, demand,
                                                                num_types):
    """On random priors of 2 bidders and 2 items (values from 1e-6 to 1e6): the program's
    mechanism is certified; it earns at least VCG and random lottery AMAs (exact
    expectations); scaling the values scales the optimum."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (2, num_types, 2)) * 10.0 ** exponent
    probabilities = rng.dirichlet(np.ones(num_types), 2)
    setting = discrete_setting(points, probabilities, 2, demand)
    optimum = optimal_mechanism(setting)
    certify(optimum, demand)
    allocations = tf_ama.core.allocations.deterministic_allocations(2, 2, demand)
    vcg = Menu(tf.constant(allocations, tf.float64), tf.zeros(len(allocations), tf.float64),
               tf.ones(2, tf.float64))
    assert expected_ama_revenue(setting, vcg) <= optimum.revenue * (1 + 1e-7)
    for _ in range(3):
        lotteries = rng.dirichlet(np.ones(3), (8, 2)).transpose(0, 2, 1)[:, :2]  # [8, 2, 2]
        if demand == "unit_demand":
            lotteries = lotteries / np.maximum(1.0, lotteries.sum(axis=2, keepdims=True))
        lotteries[0] = 0.0  # the empty entry
        menu = Menu(tf.constant(lotteries), tf.constant(rng.normal(0, 10.0 ** exponent, 8)),
                    tf.constant(rng.uniform(0.5, 2.0, 2)))
        assert expected_ama_revenue(setting, menu) <= optimum.revenue * (1 + 1e-7)
    scaled = optimal_mechanism(discrete_setting(points * 1000.0, probabilities, 2, demand))
    assert scaled.revenue == pytest.approx(1000.0 * optimum.revenue, rel=1e-6)


def test_best_possible_uses_proven_optima_only():
    assert best_possible("additive_1x2_uniform").revenue == 0.5491
    assert best_possible("additive_2x2_uniform") is None  # a paper's number, not an optimum
    # An anchor is for the built-in setting, not for another one of the same name.
    other = tf_ama.Setting("additive_1x2_uniform", 1, 2, "additive", "uniform", {"high": 2.0})
    assert best_possible(other) is None
    # A prior of more profiles than a report solves unasked (17**2 = 289 > 256): None there,
    # optimal_mechanism when asked.
    many = discrete_setting(np.arange(1.0, 18.0)[:, None], np.full(17, 1 / 17), 2)
    assert best_possible(many) is None
    assert optimal_mechanism(many).revenue > 0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="finitely many types"):
        optimal_mechanism("additive_2x2_uniform")
    with pytest.raises(ValueError, match="max_profiles"):
        optimal_mechanism("unit_demand_2x4_spherical", max_profiles=24)
    with pytest.raises(ValueError, match="deterministic"):
        optimal_mechanism("unit_demand_2x4_spherical", deterministic="yes")
    with pytest.raises(ValueError, match="sum to 1"):
        discrete_setting([[1.0], [2.0]], [0.5, 0.6]).distribution_fn()
    with pytest.raises(ValueError, match="points"):
        discrete_setting([[1.0, -1.0]], [1.0]).distribution_fn()
    with pytest.raises(ValueError, match="probabilities"):
        discrete_setting([[1.0], [2.0]], [1.0]).distribution_fn()


def test_evaluate_reports_the_share_of_the_best_possible():
    """`tf_ama.evaluate` (and so `tf-ama evaluate` and a run's evaluation.json) carries the
    optimum and prints the AMA's share of it; where none is known, the reference line."""
    model = tf_ama.AffineMaximizerAuction("unit_demand_2x4_spherical", menu="lottery",
                                          menu_size=8, seed=0)
    report = tf_ama.evaluate(model, num_samples=300, seed=1, baselines=False)
    best = optimal_mechanism("unit_demand_2x4_spherical").revenue
    assert report.best_possible["revenue"] == best
    assert report.revenue <= best  # 300 profiles of an untrained menu: far below
    table = report.format_table()
    assert f"best possible         {best:.4f} (optimum of any strategyproof" in table
    assert f"this AMA earns {report.revenue / best:.2%} of it" in table
    fields = report.to_dict()
    assert tf_ama.evaluation.reports.EvaluationReport.from_dict(fields) == report
    assert report.reference == {"revenue": 2.349, "label": "optimum of any DSIC mechanism"}
    del fields["best_possible"], fields["reference"]  # a report written before the fields
    old = tf_ama.evaluation.reports.EvaluationReport.from_dict(fields)
    assert "best possible" not in old.format_table()

    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu="lottery", menu_size=8,
                                          seed=0)
    report = tf_ama.evaluate(model, num_samples=300, seed=1, baselines=False)
    assert report.best_possible is None
    assert "reference: paper's lottery AMA 0.868" in report.format_table()
    # A setting named like a built-in is not it: no reference; a prior whose values are all 0
    # has an optimum of 0, and the report says so instead of dividing by it.
    other = tf_ama.Setting("additive_2x2_uniform", 2, 2, "additive", "uniform", {"high": 3.0})
    model = tf_ama.AffineMaximizerAuction(other, menu="lottery", menu_size=8, seed=0)
    report = tf_ama.evaluate(model, num_samples=100, seed=1, baselines=False)
    assert report.reference is None and "reference" not in report.format_table()
    zero = discrete_setting([[0.0, 0.0]], [1.0], 2)
    model = tf_ama.AffineMaximizerAuction(zero, menu="lottery", menu_size=4, seed=0)
    report = tf_ama.evaluate(model, num_samples=50, seed=1, baselines=False)
    assert report.best_possible["revenue"] == 0 and report.revenue == 0
    assert "no mechanism earns anything" in report.format_table()
