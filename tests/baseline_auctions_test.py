"""Tests of tf_ama.evaluation.baselines: oracles against plain NumPy loops, the numbers of
docs/design.md §5, bad input.

Reserve tolerances come from measured spread, not from the grid: the argmax of an empirical
revenue curve moves like N**(-1/3). Over 100 independent samples of 100 000 profiles the
found reserve had std 0.007 (U[0,1], 1, 2 or 5 bidders; worst 0.027 from 0.5), 0.005 (best
of two U[0,1], target 1/sqrt(3)) and 0.064 (Exp(mean 3), 3 bidders, target 3).
"""

import itertools
import json
import math

import numpy as np
import pytest

import tf_ama
from tf_ama.data import reserves
from tf_ama.evaluation import baselines
from tf_ama.evaluation.baselines import BaselineResult

NUM_SAMPLES = 100_000


@pytest.fixture(scope="module")
def details():
    """baseline_details per setting name, computed once for the module (100 000 profiles)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = baselines.baseline_details(name, num_samples=NUM_SAMPLES, seed=1)
        return cache[name]

    return get


# ---------------------------------------------------------------------------------------
# Independent loop-based oracles.


def loop_second_price(values, reserve):
    """Per-profile revenue of a second-price auction with reserve, one profile at a time."""
    revenues = []
    for profile in np.asarray(values, np.float64):
        ordered = sorted(profile.tolist(), reverse=True)
        highest = ordered[0]
        second = ordered[1] if len(ordered) > 1 else 0.0
        revenues.append(max(second, reserve) if highest >= reserve else 0.0)
    return np.array(revenues)


def loop_vcg_unit_demand(profile):
    """VCG revenue for one unit-demand profile by brute force over all partial matchings."""
    num_bidders, num_items = profile.shape

    def best_welfare(bidders):
        best = 0.0
        for choices in itertools.product(range(num_items + 1), repeat=len(bidders)):
            taken = [c for c in choices if c]
            if len(taken) != len(set(taken)):
                continue
            best = max(best, sum(profile[i, c - 1] for i, c in zip(bidders, choices) if c))
        return best

    everyone = list(range(num_bidders))
    # Payment of i = best welfare of the others without i - others' welfare in the optimum.
    best, best_choice = -1.0, None
    for choices in itertools.product(range(num_items + 1), repeat=num_bidders):
        taken = [c for c in choices if c]
        if len(taken) != len(set(taken)):
            continue
        welfare = sum(profile[i, c - 1] for i, c in zip(everyone, choices) if c)
        if welfare > best:
            best, best_choice = welfare, choices
    revenue = 0.0
    for i in everyone:
        others = [k for k in everyone if k != i]
        others_in_optimum = sum(profile[k, best_choice[k] - 1] for k in others if best_choice[k])
        revenue += best_welfare(others) - others_in_optimum
    return revenue


def irwin_hall(x, num_items):
    """CDF and density of the sum of `num_items` U[0,1] values (symmetric form for accuracy)."""
    x = np.asarray(x, np.float64)
    terms = np.arange(num_items + 1)
    signs = (-1.0) ** terms * np.array([math.comb(num_items, int(k)) for k in terms])

    def raw(y, power):
        shifted = np.clip(y[:, None] - terms[None, :], 0.0, None)
        return (signs * shifted ** power).sum(axis=1) / math.factorial(power)

    lower = x <= num_items / 2
    mirror = num_items - x
    cdf = np.where(lower, raw(x, num_items), 1.0 - raw(mirror, num_items))
    pdf = np.where(lower, raw(x, num_items - 1), raw(mirror, num_items - 1))
    return cdf, pdf


def exact_grand_bundle(num_bidders, num_items):
    """Optimal grand-bundle revenue for U[0,1] items by numeric integration.

    Revenue(r) = m * int_r^n (v f(v) - (1 - F(v))) F(v)^(m-1) dv (Myerson's virtual values).
    """
    grid = np.linspace(0.0, num_items, 400_001)
    cdf, pdf = irwin_hall(grid, num_items)
    integrand = num_bidders * (grid * pdf - (1.0 - cdf)) * cdf ** (num_bidders - 1)
    pieces = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(grid)
    tail = np.concatenate([np.cumsum(pieces[::-1])[::-1], [0.0]])  # integral from grid[k]
    return float(tail.max())


# ---------------------------------------------------------------------------------------
# Building blocks.


@pytest.mark.parametrize("num_bidders", [1, 2, 3, 5])
def test_second_price_revenues_match_loop(num_bidders):
    rng = np.random.default_rng(num_bidders)
    values = rng.uniform(size=(300, num_bidders))
    for reserve in (0.0, 0.3, 0.5, 0.97, 1.5):
        np.testing.assert_allclose(
            baselines.second_price_revenues(values, reserve), loop_second_price(values, reserve),
            rtol=0, atol=0)


def test_second_price_revenues_ties_and_reserve_at_value():
    values = np.array([[0.5, 0.5], [0.7, 0.2], [0.7, 0.2], [0.1, 0.1], [0.0, 0.0]])
    np.testing.assert_array_equal(
        baselines.second_price_revenues(values, 0.7), [0.0, 0.7, 0.7, 0.0, 0.0])
    np.testing.assert_array_equal(
        baselines.second_price_revenues(values, 0.5), [0.5, 0.5, 0.5, 0.0, 0.0])
    # One bidder pays the reserve when its value reaches it.
    np.testing.assert_array_equal(
        baselines.second_price_revenues(np.array([[0.3], [0.6]]), 0.3), [0.3, 0.3])


@pytest.mark.parametrize("num_bidders", [1, 2, 4])
def test_revenue_curve_matches_loop(num_bidders):
    rng = np.random.default_rng(10 + num_bidders)
    values = np.round(rng.exponential(size=(400, num_bidders)), 2)  # many ties
    at = np.concatenate([[0.0, 0.25, 1.0, 3.0, 50.0], values[:20, 0]])  # also at data
    expected = [loop_second_price(values, r).mean() for r in at]
    np.testing.assert_allclose(reserves.revenue_curve(values, at), expected,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_bidders", [1, 2, 3])
def test_optimal_reserve_reaches_empirical_maximum(num_bidders):
    # The empirical revenue peaks at a sampled highest value: brute force over all of them.
    rng = np.random.default_rng(20 + num_bidders)
    values = rng.uniform(size=(2000, num_bidders)) + rng.uniform(size=(2000, num_bidders))
    candidates = values.max(axis=1)
    brute = max(baselines.second_price_revenues(values, r).mean() for r in candidates)
    found = reserves.optimal_reserve(values)
    assert baselines.second_price_revenues(values, found).mean() >= brute - 1e-3


def test_optimal_reserve_lands_on_an_atom():
    # One bidder, value 1 or 3 with equal probability: price 3 earns 1.5, price 1 earns 1.
    values = np.array([[1.0], [3.0]] * 500)
    assert reserves.optimal_reserve(values) == 3.0


def test_optimal_reserve_of_uniform_items_is_one_half():
    rng = np.random.default_rng(0)
    for num_bidders in (1, 2, 5):
        reserve = reserves.optimal_reserve(rng.uniform(size=(NUM_SAMPLES, num_bidders)))
        assert abs(reserve - 0.5) < 0.04, (num_bidders, reserve)


@pytest.mark.parametrize("num_bidders,num_items", [(1, 2), (2, 2), (2, 3), (3, 2)])
def test_additive_vcg_closed_form_equals_exact_outcome(num_bidders, num_items):
    rng = np.random.default_rng(num_bidders * 10 + num_items)
    valuations = np.concatenate([
        rng.uniform(size=(500, num_bidders, num_items)),
        rng.integers(0, 4, size=(200, num_bidders, num_items)) / 4.0,  # ties
    ])
    allocations = tf_ama.deterministic_allocations(num_bidders, num_items, "additive")
    outcome = tf_ama.exact_outcome(
        valuations, allocations, np.zeros(len(allocations)), np.ones(num_bidders))
    np.testing.assert_allclose(
        baselines.vcg_revenues(valuations, "additive"), outcome["payments"].numpy().sum(axis=1),
        rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_bidders,num_items", [(1, 2), (2, 2), (2, 4), (3, 2)])
def test_unit_demand_vcg_matches_brute_force(num_bidders, num_items):
    rng = np.random.default_rng(30 + num_bidders * 10 + num_items)
    valuations = np.concatenate([
        rng.uniform(size=(40, num_bidders, num_items)),
        rng.integers(0, 3, size=(20, num_bidders, num_items)) / 2.0,  # ties
    ])
    expected = [loop_vcg_unit_demand(profile) for profile in valuations]
    np.testing.assert_allclose(
        baselines.vcg_revenues(valuations, "unit_demand"), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Whole settings.

# docs/design.md §5. The grand-bundle entries are rounded; numeric integration
# (`exact_grand_bundle`) gives 0.83924, 1.27775, 2.18843, 2.82567, 5.00302, 5.45605.
DESIGN = {
    "additive_2x2_uniform": (0.6667, 0.8333, 0.8390),
    "additive_2x3_uniform": (1.0, 1.25, 1.2778),
    "additive_2x5_uniform": (1.6667, 2.0833, 2.189),
    "additive_5x5_uniform": (3.3333, 3.3594, 2.8257),
    "additive_3x10_uniform": (5.0, 5.3125, 5.002),
    "additive_5x10_uniform": (6.6667, 6.7188, 5.455),
}


@pytest.mark.parametrize("name", list(DESIGN))
@pytest.mark.slow
def test_additive_uniform_matches_design(details, name):
    result = details(name)
    for key, expected in zip(baselines.BASELINES, DESIGN[name]):
        found = result[key]
        assert abs(found.revenue - expected) <= 3 * found.stderr, (key, found, expected)
    setting = tf_ama.get_setting(name)
    exact = exact_grand_bundle(setting.num_bidders, setting.num_items)
    bundle = result["grand_bundle"]
    assert abs(bundle.revenue - exact) <= 3 * bundle.stderr, (bundle, exact)
    # Myerson's reserve for U[0,1] items is 1/2, whatever the number of bidders.
    assert len(result["separate_myerson"].reserve) == setting.num_items
    for reserve in result["separate_myerson"].reserve:
        assert abs(reserve - 0.5) < 0.04, result["separate_myerson"].reserve
    assert result["vcg"].reserve is None


def test_exponential_anchor(details):
    result = details("additive_3x1_exponential")
    myerson = result["separate_myerson"]
    assert abs(myerson.revenue - 2.754) <= 3 * myerson.stderr, myerson
    assert abs(myerson.reserve[0] - 3.0) < 0.3, myerson.reserve
    # One item: the grand bundle is the same auction.
    assert result["grand_bundle"].revenue == pytest.approx(myerson.revenue, abs=3 * myerson.stderr)


def test_unit_demand_anchor_and_not_applicable(details):
    result = details("unit_demand_1x2_uniform")
    bundle = result["grand_bundle"]
    assert abs(bundle.revenue - 2 / (3 * math.sqrt(3))) <= 3 * bundle.stderr, bundle
    assert abs(bundle.reserve - 1 / math.sqrt(3)) < 0.03, bundle.reserve
    assert result["vcg"].revenue == 0.0  # one bidder pays nothing under VCG
    myerson = result["separate_myerson"]
    assert math.isnan(myerson.revenue) and myerson.reserve is None
    assert "unit demand" in myerson.method


def test_spherical_vcg_matches_design(details):
    vcg = details("unit_demand_2x4_spherical")["vcg"]
    assert abs(vcg.revenue - 0.092) <= 3 * vcg.stderr + 5e-4, vcg  # docs/design.md §4, 3 decimals


def test_evaluation_profiles_are_setting_sample():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    result = baselines.baseline_details(setting, num_samples=3000, seed=5)
    valuations = setting.sample(3000, 5).numpy().astype(np.float64)
    revenues = baselines.vcg_revenues(valuations, "additive")
    assert result["vcg"].revenue == pytest.approx(revenues.mean(), rel=0, abs=1e-12)
    assert result["vcg"].stderr == pytest.approx(
        revenues.std(ddof=1) / math.sqrt(3000), rel=0, abs=1e-12)
    assert "seed 5" in result["vcg"].method and "seed 1000008" in result["grand_bundle"].method


def test_sampling_in_blocks(monkeypatch):
    setting = tf_ama.get_setting("additive_2x2_uniform")
    monkeypatch.setattr(tf_ama.data.settings, "SAMPLE_BLOCK_ELEMENTS", 50 * 4)  # 50 profiles per block
    result = baselines.baseline_details(setting, num_samples=120, seed=7)
    blocks = [setting.sample(50, 7), setting.sample(50, (1, 7)), setting.sample(20, (2, 7))]
    valuations = np.concatenate([block.numpy().astype(np.float64) for block in blocks])
    expected = baselines.vcg_revenues(valuations, "additive").mean()
    assert result["vcg"].revenue == pytest.approx(expected, rel=0, abs=1e-12)


def test_custom_setting_and_reproducibility():
    setting = tf_ama.Setting("additive_2x2_asym", 2, 2, "additive", "uniform",
                             {"low": 0.0, "high": [[1.0, 2.0], [1.0, 2.0]]}, symmetric=False)
    first = baselines.baselines(setting, num_samples=2000, seed=3)
    assert set(first) == set(baselines.BASELINES)
    assert first == baselines.baselines(setting, num_samples=2000, seed=3)
    assert first != baselines.baselines(setting, num_samples=2000, seed=4)
    details = baselines.baseline_details(setting, num_samples=2000, seed=3)
    assert "not necessarily Myerson" in details["separate_myerson"].method
    assert {k: v.revenue for k, v in details.items()} == first


def test_to_dict_and_format_table(details):
    result = details("unit_demand_1x2_uniform")
    as_json = json.dumps({k: v.to_dict() for k, v in result.items()}, allow_nan=False)
    loaded = json.loads(as_json)
    assert loaded["separate_myerson"]["revenue"] is None
    assert loaded["grand_bundle"]["reserve"] == pytest.approx(result["grand_bundle"].reserve)
    assert set(loaded["vcg"]) == {"name", "revenue", "stderr", "reserve", "method"}
    table = baselines.format_table(result)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["baseline", "revenue", "reserve"]
    assert len(lines) == 2 + len(baselines.BASELINES)
    assert "n/a" in table and f"{result['grand_bundle'].revenue:.4f} ± " in table
    table = baselines.format_table(details("additive_2x5_uniform"))
    assert "(5 items)" in table


def test_baseline_result_validates():
    with pytest.raises(ValueError, match="`revenue`"):
        BaselineResult("vcg", "high", 0.0, None, "how")
    with pytest.raises(ValueError, match="`method`"):
        BaselineResult("vcg", 1.0, 0.0, None, "")


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"setting": "additive_9x9_uniform"}, ValueError, "`setting`.*Unknown setting"),
    ({"setting": 3}, TypeError, "`setting`"),
    ({"num_samples": 0}, ValueError, "`num_samples`"),
    ({"num_samples": 10.0}, ValueError, "`num_samples`"),
    ({"num_samples": True}, ValueError, "`num_samples`"),
    ({"seed": "1"}, ValueError, "`seed`"),
    ({"seed": 1.0}, ValueError, "`seed`"),
    ({"seed": (1, 2)}, ValueError, "`seed`"),
    ({"seed": -1}, ValueError, "`seed`"),
    ({"seed": 2**31 - 1}, ValueError, "`seed`"),
])
def test_bad_input(kwargs, error, pattern):
    arguments = {"setting": "additive_2x2_uniform", "num_samples": 10, "seed": 1, **kwargs}
    with pytest.raises(error, match=pattern):
        baselines.baseline_details(**arguments)
    with pytest.raises(error, match=pattern):
        baselines.baselines(**arguments)


def test_reserve_search_in_groups_of_items_finds_the_same_reserves(monkeypatch, capsys):
    # With more profiles x items than _RESERVE_TOPS_ELEMENTS, the reserve sample is drawn
    # again for each group of items; each item's search sees the same tops as before.
    setting = tf_ama.get_setting("additive_2x5_uniform")
    whole = baselines.baseline_details(setting, num_samples=3000, seed=2)
    monkeypatch.setattr(reserves, "_RESERVE_TOPS_ELEMENTS", 2 * 3000)  # 2 items per pass
    grouped = baselines.baseline_details(setting, num_samples=3000, seed=2, progress=True)
    assert {k: v.to_dict() for k, v in grouped.items()} == {
        k: v.to_dict() for k, v in whole.items()}
    out, err = capsys.readouterr()
    assert out == "" and "4 passes over 3,000 profiles" in err and "12000/12000" in err
