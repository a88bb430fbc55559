"""Tests of tf_ama.core.allocations: lottery parameterizations are feasible for every parameter value,
deterministic menus enumerate exactly the feasible 0/1 allocations, and fixed menus are
validated with messages that name the bad argument."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from oracle import partial_matchings

from tf_ama.core import allocations as menus, mechanism

SHAPES = [(1, 1), (1, 2), (2, 2), (3, 1), (2, 4), (3, 10)]
TOLERANCE = 1e-12


def random_logits(rng, shape, style):
    if style == "normal":
        return rng.normal(size=shape)
    if style == "wide":
        return rng.normal(scale=20.0, size=shape)
    if style == "extreme":  # +-50: softmax / softplus saturate
        return 50.0 * rng.choice([-1.0, 1.0], size=shape)
    if style == "constant":
        return np.full(shape, rng.choice([-50.0, 0.0, 50.0]))
    raise ValueError(style)


def assert_feasible(allocations, demand):
    assert allocations.dtype == np.float64
    assert np.all(np.isfinite(allocations))
    assert allocations.min() >= 0.0
    assert allocations.sum(axis=1).max() <= 1.0 + TOLERANCE  # each item sold at most once
    if demand == "unit_demand":
        assert allocations.sum(axis=2).max() <= 1.0 + TOLERANCE  # at most one item each
    assert not allocations[0].any()  # entry 0 is the empty allocation


STYLES = ["normal", "wide", "extreme", "constant"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("num_bidders,num_items", SHAPES)
def test_additive_lottery_is_feasible(num_bidders, num_items, style):
    rng = np.random.RandomState(num_bidders * 10 + num_items)
    menu_size = 33
    logits = random_logits(rng, (menu_size - 1, num_bidders + 1, num_items), style)
    allocations = menus.additive_lottery(tf.constant(logits, tf.float64)).numpy()
    assert allocations.shape == (menu_size, num_bidders, num_items)
    assert_feasible(allocations, "additive")
    # The exact mechanism accepts it (its own feasibility assertion).
    mechanism.exact_outcome(np.ones((1, num_bidders, num_items)), allocations,
                            np.zeros(menu_size), np.ones(num_bidders))


def test_additive_lottery_is_the_softmax_without_the_dummy_row():
    logits = np.array([[[0.0, 1.0], [np.log(3.0), 1.0]]])  # one entry, 1 bidder + dummy
    allocations = menus.additive_lottery(tf.constant(logits)).numpy()
    np.testing.assert_allclose(allocations[1], [[0.25, 0.5]], atol=1e-15)
    np.testing.assert_array_equal(allocations[0], [[0.0, 0.0]])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("num_bidders,num_items", SHAPES)
def test_unit_demand_lottery_is_feasible(num_bidders, num_items, style):
    rng = np.random.RandomState(num_bidders * 10 + num_items + 1)
    menu_size = 33
    shape = (menu_size - 1, num_bidders, num_items)
    allocations = menus.unit_demand_lottery(
        tf.constant(random_logits(rng, shape, style), tf.float64),
        tf.constant(random_logits(rng, shape, style), tf.float64),
    ).numpy()
    assert allocations.shape == (menu_size, num_bidders, num_items)
    assert_feasible(allocations, "unit_demand")


def test_unit_demand_lottery_reaches_full_allocations():
    # Large logits on a permutation give (nearly) a deterministic matching.
    item_logits = np.full((1, 2, 2), -50.0)
    item_logits[0, 0, 1] = item_logits[0, 1, 0] = 50.0
    allocations = menus.unit_demand_lottery(
        tf.constant(item_logits), tf.constant(item_logits)).numpy()
    np.testing.assert_allclose(allocations[1], [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("num_bidders,num_items,demand", [
    (1, 1, "additive"), (1, 2, "additive"), (2, 2, "additive"), (3, 1, "additive"),
    (2, 5, "additive"), (3, 4, "additive"),
    (1, 1, "unit_demand"), (1, 2, "unit_demand"), (2, 2, "unit_demand"), (3, 1, "unit_demand"),
    (2, 4, "unit_demand"), (3, 3, "unit_demand"), (4, 2, "unit_demand"), (3, 10, "unit_demand"),
])
def test_deterministic_allocations(num_bidders, num_items, demand):
    expected_size = ((num_bidders + 1) ** num_items if demand == "additive"
                     else partial_matchings(num_bidders, num_items))
    assert menus.deterministic_menu_size(num_bidders, num_items, demand) == expected_size
    allocations = menus.deterministic_allocations(num_bidders, num_items, demand)
    assert allocations.shape == (expected_size, num_bidders, num_items)
    assert set(np.unique(allocations).tolist()) <= {0.0, 1.0}
    assert_feasible(allocations, demand)
    flat = allocations.reshape(expected_size, -1)
    assert len(np.unique(flat, axis=0)) == expected_size  # all distinct
    if demand == "additive":
        # Every item goes to exactly one bidder or to nobody: all assignments present.
        owners = {tuple(entry.argmax(axis=0) + entry.max(axis=0)) for entry in allocations}
        assert len(owners) == expected_size


def test_partial_matchings_known_values():
    # Independent checks of the oracle's count: m=n=2 -> 7; 2x4 -> 21; 3x3 -> 34.
    assert [partial_matchings(2, 2), partial_matchings(2, 4), partial_matchings(3, 3)] == [7, 21, 34]
    brute = sum(
        1 for choices in itertools.product(range(4), repeat=3)
        if len([c for c in choices if c]) == len({c for c in choices if c}))
    assert brute == partial_matchings(3, 3)


@pytest.mark.parametrize("num_bidders,num_items,demand,size_text", [
    (3, 10, "additive", "1,048,576"),
    (5, 10, "additive", "60,466,176"),
    (10, 10, "unit_demand", "234,662,231"),
])
def test_too_large_deterministic_menu_is_refused(num_bidders, num_items, demand, size_text):
    with pytest.raises(ValueError, match=rf"has {size_text} allocations.*max_size=65,536"):
        menus.deterministic_allocations(num_bidders, num_items, demand)


def test_max_size_is_respected_both_ways():
    with pytest.raises(ValueError, match=r"has 9 allocations, more than max_size=8"):
        menus.deterministic_allocations(2, 2, "additive", max_size=8)
    assert len(menus.deterministic_allocations(2, 2, "additive", max_size=9)) == 9


@pytest.mark.parametrize("function", [menus.deterministic_menu_size, menus.deterministic_allocations])
@pytest.mark.parametrize("arguments,match", [
    ((2, 2, "bogus"), r"`demand` must be one of \('additive', 'unit_demand'\); got 'bogus'"),
    ((2, 2, "lottery"), r"`demand` must be one of"),
    ((0, 2, "additive"), r"`num_bidders` must be an int >= 1; got 0"),
    ((2, -1, "additive"), r"`num_items` must be an int >= 1; got -1"),
    ((2.0, 2, "additive"), r"`num_bidders` must be an int >= 1; got 2.0"),
    ((True, 2, "additive"), r"`num_bidders` must be an int >= 1; got True"),
])
def test_deterministic_menus_refuse_bad_arguments(function, arguments, match):
    with pytest.raises(ValueError, match=match):
        function(*arguments)


# --- validate_fixed_menu -----------------------------------------------------------------------


def good_fixed_menu():
    allocations = np.array([
        [[0.0, 0.0], [0.0, 0.0]],
        [[0.5, 0.0], [0.5, 0.5]],
        [[0.0, 1.0], [1.0, 0.0]],
    ])
    return dict(allocations=allocations, boosts=np.array([0.0, -0.2, 0.3]),
                bidder_weights=np.array([1.0, 1.5]), num_bidders=2, num_items=2,
                demand="unit_demand")


def test_validate_fixed_menu_accepts_and_converts():
    menu = good_fixed_menu()
    menu["allocations"] = menu["allocations"].tolist()  # lists and float32 are fine
    menu["boosts"] = menu["boosts"].astype(np.float32)
    allocations, boosts, bidder_weights, *_ = menus.validate_fixed_menu(**menu)
    for array in (allocations, boosts, bidder_weights):
        assert isinstance(array, np.ndarray) and array.dtype == np.float64
    np.testing.assert_array_equal(allocations, good_fixed_menu()["allocations"])
    # A deterministic menu is a valid fixed menu (VCG).
    vcg = menus.deterministic_allocations(2, 3, "additive")
    menus.validate_fixed_menu(vcg, np.zeros(len(vcg)), np.ones(2), 2, 3, "additive")


def bad(**change):
    menu = good_fixed_menu()
    menu.update(change)
    return menu


def with_entry(name, index, value):
    array = np.array(good_fixed_menu()[name], copy=True)
    array[index] = value
    return {name: array}


@pytest.mark.parametrize("menu,match", [
    (bad(allocations=np.zeros((3, 3, 2))), r"`allocations` must have shape \[menu_size, num_bidders=2"),
    (bad(allocations=np.zeros((3, 2, 3))), r"`allocations` must have shape .*num_items=2\]; got \[3, 2, 3\]"),
    (bad(allocations=np.zeros((2, 2))), r"`allocations` must have shape"),
    (bad(allocations=np.zeros((0, 2, 2)), boosts=np.zeros(0)), r"`allocations` is an empty menu"),
    (bad(allocations=np.full((3, 2, 2), "a")), r"`allocations` must be a numeric array"),
    # Nothing silently coerced: a complex boost would lose its imaginary part, True become 1.
    (bad(boosts=np.array([0, 0.5 + 3j, 0])), r"`boosts` must be a numeric array of real numbers"),
    (bad(bidder_weights=[True, 1.0]), r"`bidder_weights` must hold real numbers only; got True"),
    (bad(**with_entry("allocations", (1, 0, 0), np.nan)), r"`allocations` must be finite"),
    (bad(**with_entry("allocations", (2, 1, 1), -0.5)), r"`allocations` must be >= 0"),
    (bad(**with_entry("allocations", (1, 0, 1), 0.6)), r"`allocations` is infeasible: an item is "
                                                       r"allocated 1.1 > 1 times"),
    (bad(**with_entry("allocations", (1, 1, 1), 0.8)),
     r"`allocations` is infeasible for unit demand: a bidder receives 1.3 > 1"),
    (bad(**with_entry("allocations", (0, 0, 0), 0.1)), r"Entry 0 of `allocations` must be the empty"),
    (bad(**with_entry("boosts", 0, 0.5)), r"`boosts\[0\] == 0`"),
    (bad(boosts=np.zeros(4)), r"`boosts` must have shape \[menu_size=3\]; got \[4\]"),
    (bad(**with_entry("boosts", 2, np.inf)), r"`boosts` must be finite"),
    (bad(bidder_weights=np.ones(3)), r"`bidder_weights` must have shape \[num_bidders=2\]"),
    (bad(bidder_weights=np.array([1.0, 0.0])), r"`bidder_weights` must be > 0"),
    (bad(bidder_weights=np.array([-1.0, 1.0])), r"`bidder_weights` must be > 0"),
    (bad(bidder_weights=np.array([1.0, np.nan])), r"`bidder_weights` must be finite"),
    # The exactness contract: a weight of 5e-324 made every request to an export refused.
    (bad(bidder_weights=np.array([5e-324, 1.0])), r"`bidder_weights` must lie in \[1e-06, 1e\+06\]"),
    (bad(bidder_weights=np.array([1.0, 3e6])), r"`bidder_weights` must lie in \[1e-06, 1e\+06\]"),
    (bad(**with_entry("boosts", 2, -2e38)), r"`boosts` must be finite with \|boosts\| <= 1e\+38"),
    (bad(demand="bogus"), r"`demand` must be one of"),
    (bad(num_items=0), r"`num_items` must be an int >= 1"),
])
def test_validate_fixed_menu_refuses_bad_menus(menu, match):
    with pytest.raises(ValueError, match=match):
        menus.validate_fixed_menu(**menu)


def test_unit_demand_check_only_for_unit_demand():
    # Bidder 1 receives 1.3 items in expectation: fine for additive, refused for unit demand.
    menu = bad(**with_entry("allocations", (1, 1, 1), 0.8))
    menu["demand"] = "additive"
    menus.validate_fixed_menu(**menu)
