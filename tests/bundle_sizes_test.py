"""The bundle-size family (tf_ama.core.bundle_sizes) in the exact outcome: the dynamic program
against the family enumerated as an explicit menu (tests/oracle.py's loop), against the exact
rational AMA, and against the item-separable family it extends; ties, zero and huge bids,
batch invariance and bad input."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from builders import lottery_menu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import enumerated, fraction_ama

from tf_ama.core import bundle_sizes, exactness
from tf_ama.core.mechanism import exact_outcome

PROPERTY = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTPUTS = ("allocation", "payments", "menu_index", "values", "regret", "counterfactual_index")


def served(bids, menu, c, g, jit_compile=False, **options):
    allocations, boosts, weights = menu
    outcome = exact_outcome(tf.constant(bids), allocations, boosts, weights, c, g,
                            with_certificate=True, with_counterfactual=True,
                            jit_compile=jit_compile, **options)
    return {key: value.numpy() for key, value in outcome.items()}


def listed(bids, menu, c, g):
    """The same auction with the family enumerated: the reference."""
    allocations, boosts, weights = menu
    explicit_allocations, explicit_boosts = enumerated(allocations, boosts, c, g=g)
    outcome = exact_outcome(tf.constant(bids), explicit_allocations, explicit_boosts, weights,
                            with_certificate=True, with_counterfactual=True)
    return {key: value.numpy() for key, value in outcome.items()}, explicit_allocations, \
        explicit_boosts


@st.composite
def auctions(draw, dyadic=False):
    """(bids [6, m, n], (allocations, boosts, weights), c, g): both parts win sometimes."""
    num_bidders, num_items = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    menu_size = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 1.0 if dyadic else 10.0 ** draw(st.integers(-3, 6))
    if menu_size == 1:
        allocations, boosts = np.zeros((1, num_bidders, num_items)), np.zeros(1)
    else:
        allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size, scale)
    weights = 2.0 ** rng.integers(-2, 3, size=num_bidders).astype(np.float64)
    c = scale * (rng.normal(size=(num_bidders + 1, num_items)) - 0.5)
    g = scale * rng.normal(size=(num_bidders + 1, num_items + 1))
    bids = (scale * rng.uniform(size=(6, num_bidders, num_items))
            * (rng.uniform(size=(6, 1, 1)) < 0.8))
    if dyadic:  # float64 arithmetic is exact on these: many exact ties
        allocations = np.floor(allocations * 4) / 4
        boosts, c, g, bids = (np.round(x * 4) / 4 for x in (boosts, c, g, bids * 4))
        boosts[0] = 0.0
    return bids, (allocations, boosts, weights), c, g


def _within_the_contract(got, bids, menu, c, g):
    want, explicit_allocations, explicit_boosts = listed(bids, menu, c, g)
    _, boosts, weights = menu
    bound = exactness.payment_error_bound(bids, boosts, weights, c, g)
    # The same entry where the welfare is not a near-tie (the two sum in different orders);
    # the money within the contract's bound either way.
    np.testing.assert_array_less(np.abs(got["payments"] - want["payments"]), 2 * bound + 1e-300)
    assert np.all(got["payments"] >= 0) and np.all(got["payments"] <= got["values"])
    assert np.all(got["regret"] <= exactness.regret_error_bound(bids, boosts, weights, c, g)
                  + 1e-300)
    welfare = np.einsum("kin,bin,i->bk", explicit_allocations, bids, weights) + explicit_boosts
    chosen = welfare[np.arange(len(bids)), got["menu_index"]]
    assert np.all(welfare.max(axis=1) - chosen
                  <= exactness.welfare_error_bound(bids, boosts, weights, c, g))
    np.testing.assert_array_equal(got["allocation"], explicit_allocations[got["menu_index"]])
    values = np.einsum("bin,bin->bi", got["allocation"], bids)
    np.testing.assert_allclose(got["values"], values, rtol=1e-15, atol=0)


@PROPERTY
@given(auction=auctions())
def test_the_program_serves_the_enumerated_menu_within_the_contract(auction):
    bids, menu, c, g = auction
    _within_the_contract(served(bids, menu, c, g), bids, menu, c, g)


@pytest.mark.slow
@settings(PROPERTY, max_examples=3)  # each example compiles its own shapes
@given(auction=auctions())
def test_compiled_with_xla_too(auction):
    bids, menu, c, g = auction
    _within_the_contract(served(bids, menu, c, g, jit_compile=True), bids, menu, c, g)


@PROPERTY
@given(auction=auctions(dyadic=True))
def test_on_exact_inputs_it_is_the_enumerated_menu_and_the_rational_auction(auction):
    bids, menu, c, g = auction
    got = served(bids, menu, c, g)
    want, explicit_allocations, _ = listed(bids, menu, c, g)
    for key in OUTPUTS:  # ties included: the same lowest index
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    allocations, boosts, weights = menu
    exact_boosts = enumerated(allocations, boosts, c, exact=True, g=g)[1]
    for profile in range(len(bids)):
        oracle = fraction_ama(bids[profile], explicit_allocations, exact_boosts, weights)
        assert got["menu_index"][profile] == oracle["menu_index"]
        for i in range(len(weights)):
            assert got["payments"][profile, i] == oracle["payment"](i, oracle["menu_index"])


@pytest.mark.parametrize("num_bidders,num_items", [(2, 3), (3, 4), (1, 5)])
def test_with_no_size_boosts_it_is_the_item_separable_family(num_bidders, num_items):
    rng = np.random.default_rng(num_bidders * 10 + num_items)
    bids = np.round(rng.uniform(size=(64, num_bidders, num_items)) * 8) / 8
    c = np.round(rng.normal(size=(num_bidders + 1, num_items)) * 4) / 4
    menu = (np.zeros((1, num_bidders, num_items)), np.zeros(1), np.ones(num_bidders))
    with_g = served(bids, menu, c, np.zeros((num_bidders + 1, num_items + 1)))
    separable = exact_outcome(tf.constant(bids), *menu, c, with_certificate=True,
                              with_counterfactual=True)
    for key in OUTPUTS:
        np.testing.assert_array_equal(with_g[key], separable[key].numpy(), err_msg=key)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_a_bidder_who_wins_nothing_pays_exactly_zero(mode):
    """Also in a graph (as served), where graph optimization must not reorder the sums."""
    rng = np.random.default_rng(7)
    num_bidders, num_items = 3, 5
    graph = tf.function(lambda bids, *menu: exact_outcome(bids, *menu, with_certificate=True))
    for scale in (1e-3, 1.0, 1e5):
        bids = scale * rng.uniform(size=(300, num_bidders, num_items))
        c = scale * rng.normal(size=(num_bidders + 1, num_items))
        g = scale * rng.normal(size=(num_bidders + 1, num_items + 1))
        menu = (np.zeros((1, num_bidders, num_items)), np.array([-1e9 * scale]),
                rng.uniform(0.5, 2.0, num_bidders))
        if mode == "eager":
            got = served(bids, menu, c, g)
        else:
            got = {k: v.numpy() for k, v in graph(tf.constant(bids), *(
                tf.constant(t) for t in (*menu, c, g))).items()}
        losers = got["allocation"].sum(axis=2) == 0
        assert losers.any() and np.all(got["payments"][losers] == 0.0)
        assert np.all(np.abs(got["regret"]) <= 1e-9 * scale)


def test_a_price_per_bundle_size():
    """One bidder, two items; nobody keeps an item at boost 0.75 each, and the bidder's boost
    for holding both is 0.5: a price of 0.75 for one item and 1.5 - 0.5 = 1 for both."""
    c = np.array([[0.0, 0.0], [0.75, 0.75]])
    g = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    menu = (np.zeros((1, 1, 2)), np.array([-10.0]), np.ones(1))
    bids = np.array([[[0.6, 0.6]], [[0.9, 0.0]], [[0.5, 0.25]]])
    got = served(bids, menu, c, g)
    np.testing.assert_array_equal(got["allocation"], [[[1, 1]], [[1, 0]], [[0, 0]]])
    np.testing.assert_array_equal(got["payments"], [[1.0], [0.75], [0.0]])
    # Codes (1, 1), (1, 0), (0, 0): menu indices 1 + rank, item 0 most significant.
    np.testing.assert_array_equal(got["menu_index"], [1 + 3, 1 + 2, 1 + 0])


def test_a_profile_gets_the_same_outcome_alone_and_in_any_batch():
    rng = np.random.default_rng(5)
    allocations, boosts = lottery_menu(rng, 3, 3, 8, 0.3)
    menu = (allocations, boosts, np.array([1.0, 0.7, 1.4]))
    c, g = 0.3 * rng.normal(size=(4, 3)), 0.3 * rng.normal(size=(4, 4))
    bids = rng.uniform(size=(37, 3, 3))
    batch = served(bids, menu, c, g, micro_batch_size=8)
    for b in (0, 9, 36):
        alone = served(bids[b:b + 1], menu, c, g, micro_batch_size=8)
        for key in OUTPUTS:
            np.testing.assert_array_equal(alone[key][0], batch[key][b], err_msg=key)


def test_a_graph_serves_what_eager_execution_computes_bit_for_bit():
    """Graph optimization may reorder a chain of additions; the program's sums must not move."""
    rng = np.random.default_rng(12)
    for num_bidders, num_items in ((3, 6), (4, 3)):
        bids = rng.uniform(size=(200, num_bidders, num_items))
        menu = (np.zeros((1, num_bidders, num_items)), np.array([-1e3]),
                rng.uniform(0.5, 2.0, num_bidders), rng.normal(size=(num_bidders + 1, num_items)),
                rng.normal(size=(num_bidders + 1, num_items + 1)))
        eager = exact_outcome(bids, *menu, with_certificate=True, with_counterfactual=True)
        graph = tf.function(lambda bids, *menu: exact_outcome(
            bids, *menu, with_certificate=True, with_counterfactual=True))(
                tf.constant(bids), *(tf.constant(t) for t in menu))
        for key in OUTPUTS:
            np.testing.assert_array_equal(graph[key].numpy(), eager[key].numpy(), err_msg=key)


def test_zero_and_huge_bids():
    rng = np.random.default_rng(11)
    c, g = rng.normal(size=(3, 3)), rng.normal(size=(3, 4))
    menu = (np.zeros((1, 2, 3)), np.zeros(1), np.array([1.0, 2.0]))
    bids = np.zeros((4, 2, 3))
    bids[1, 0] = exactness.MAX_BID
    bids[2] = exactness.MAX_BID
    bids[3, 1, 2] = 1e30
    got = served(bids, menu, c, g)
    for key in OUTPUTS:
        assert np.all(np.isfinite(got[key])), key
    assert np.all(got["payments"] >= 0) and np.all(got["payments"] <= got["values"])
    assert got["payments"][1, 0] < 10 and got["allocation"][1, 0].sum() == 3  # a price, not the bid
    assert got["payments"][0].sum() == 0


def test_the_count_states_are_every_count_vector():
    for num_bidders, num_items in itertools.product((1, 2, 3), (1, 2, 4)):
        tables = bundle_sizes.count_tables(num_bidders, num_items)
        assert len(tables.states) == bundle_sizes.count_state_number(num_bidders, num_items)
        assert not tables.states[0].any() and np.all(tables.states.sum(axis=1) <= num_items)
        for state, after in zip(tables.states, tables.successor):
            np.testing.assert_array_equal(tables.states[after[0]], state)  # nobody
            for i in range(num_bidders):
                if state.sum() < num_items:
                    want = state + np.eye(num_bidders, dtype=np.int64)[i]
                    np.testing.assert_array_equal(tables.states[after[i + 1]], want)
                else:
                    assert after[i + 1] == len(tables.states)
    assert bundle_sizes.count_state_number(5, 10) == 3003


ONE = (np.zeros((1, 2, 2)), np.zeros(1), np.ones(2))


@pytest.mark.parametrize("c,g,error,match", [
    (np.zeros((3, 2)), np.zeros((3, 2)), ValueError,
     r"`size_boosts` must have shape \[num_bidders \+ 1=3, num_items \+ 1=3\]"),
    (None, np.zeros((3, 3)), ValueError, "give `separable_boosts` too"),
    (np.zeros((3, 2)), np.full((3, 3), np.nan), tf.errors.InvalidArgumentError,
     "`size_boosts` must be finite"),
    (np.zeros((3, 2)), np.full((3, 3), 1e38), tf.errors.InvalidArgumentError,
     r"sum_o max_k \|g\[o, k\]\|"),
    (np.zeros((3, 2)), np.zeros((3, 3), np.float32), TypeError, "`size_boosts` must be float64"),
    (np.zeros((3, 2)), [[0, 0, 0], [0, True, 0], [0, 0, 0]], TypeError, "`size_boosts`"),
])
def test_bad_size_boosts_are_refused_by_name(c, g, error, match):
    with pytest.raises(error, match=match):
        exact_outcome(tf.zeros([1, 2, 2], tf.float64), *ONE, c, g)


def test_a_menu_per_profile_and_too_many_count_states_are_refused():
    with pytest.raises(ValueError, match="`size_boosts` is for one menu"):
        exact_outcome(tf.zeros([1, 2, 2], tf.float64), *(x[None] for x in ONE),
                      np.zeros((1, 3, 2)), np.zeros((1, 3, 3)))
    assert bundle_sizes.count_state_number(12, 12) > bundle_sizes.MAX_COUNT_STATES
    with pytest.raises(ValueError, match="count vectors"):
        exact_outcome(tf.zeros([1, 12, 12], tf.float64), np.zeros((1, 12, 12)), np.zeros(1),
                      np.ones(12), np.zeros((13, 12)), np.zeros((13, 13)))


def test_the_menu_limits_count_the_size_boosts():
    exactness.check_menu_limits(np.zeros(1), np.ones(2), np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`size_boosts` must be finite"):
        exactness.check_menu_limits(np.zeros(1), np.ones(2), np.full((3, 2), 3e37),
                                    np.full((3, 3), 3e37))
