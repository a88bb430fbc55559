"""`exact_outcome` and `soft_payments` with a menu per profile (a contextual menu, issue 16).

Oracle: each profile's outcome under its own menu computed alone by the one-menu path (itself
tested against the NumPy loop and the `fractions.Fraction` oracles), and the Fraction oracle
directly for the money. Same entry, same money up to the contract's bounds (to the bit on
dyadic inputs), zero regret, IR, batch invariance, and bad input refused by name.
"""

import numpy as np
import pytest
import tensorflow as tf
from builders import lottery_menu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import enumerated, fraction_ama

from tf_ama.core import exactness
from tf_ama.core.mechanism import exact_outcome
from tf_ama.core.relaxation import soft_payments

PROPERTY = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTPUTS = ("allocation", "payments", "menu_index", "values", "regret", "counterfactual_index")
BATCH = 5


def outcome(bids, menu, **options):
    allocations, boosts, weights, c = menu
    got = exact_outcome(tf.constant(bids), allocations, boosts, weights, separable_boosts=c,
                        with_certificate=True, with_counterfactual=True, **options)
    return {key: value.numpy() for key, value in got.items()}


def profile_menu(menu, b):
    return tuple(None if t is None else t[b] for t in menu)


@st.composite
def per_profile_auctions(draw, dyadic=False):
    """(bids [B, m, n], menu per profile (allocations [B, K, m, n], boosts [B, K],
    weights [B, m], c [B, m + 1, n] or None)), each profile's menu at its own scale."""
    num_bidders, num_items = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    menu_size = draw(st.integers(2, 6))
    family = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    menus, bids = [], []
    for _ in range(BATCH):
        scale = 1.0 if dyadic else 10.0 ** draw(st.integers(-3, 6))
        allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size, scale)
        weights = 2.0 ** rng.integers(-2, 3, size=num_bidders).astype(np.float64)
        c = scale * (rng.normal(size=(num_bidders + 1, num_items)) - 0.5)
        profile = scale * rng.uniform(size=(num_bidders, num_items)) * (rng.uniform() < 0.9)
        if dyadic:  # float64 arithmetic is exact on these: many exact ties
            allocations = np.floor(allocations * 4) / 4
            boosts, c, profile = (np.round(x * 4) / 4 for x in (boosts, c, profile * 4))
            boosts[0] = 0.0
        menus.append((allocations, boosts, weights, c))
        bids.append(profile)
    menu = [np.stack(parts) for parts in zip(*menus)]
    if not family:
        menu[3] = None
    return np.stack(bids), tuple(menu)


@pytest.mark.slow
@PROPERTY
@given(auction=per_profile_auctions())
def test_each_profile_gets_its_own_menus_outcome(auction):
    bids, menu = auction
    got = outcome(bids, menu)
    for b in range(BATCH):
        own = profile_menu(menu, b)
        alone = outcome(bids[b:b + 1], own)
        bound = exactness.payment_error_bound(bids[b:b + 1], own[1], own[2], own[3])[0]
        np.testing.assert_array_less(np.abs(got["payments"][b] - alone["payments"][0]),
                                     2 * bound + 1e-300)
        regret_bound = exactness.regret_error_bound(bids[b:b + 1], own[1], own[2], own[3])[0]
        assert np.all(got["regret"][b] <= regret_bound + 1e-300)
        welfare = own[1] + np.einsum("kin,in,i->k", own[0], bids[b], own[2])
        if own[3] is not None:
            full_allocations, full_boosts = enumerated(own[0], own[1], own[3])
            welfare = full_boosts + np.einsum("kin,in,i->k", full_allocations, bids[b], own[2])
        bound = exactness.welfare_error_bound(bids[b:b + 1], own[1], own[2], own[3])[0]
        assert welfare.max() - welfare[got["menu_index"][b]] <= bound
    assert np.all(got["payments"] >= 0) and np.all(got["payments"] <= got["values"])


@pytest.mark.slow
@PROPERTY
@given(auction=per_profile_auctions(dyadic=True))
def test_on_exact_inputs_each_profile_is_its_own_menus_outcome_to_the_bit(auction):
    bids, menu = auction
    got = outcome(bids, menu)
    for b in range(BATCH):
        alone = outcome(bids[b:b + 1], profile_menu(menu, b))
        for key in OUTPUTS:
            np.testing.assert_array_equal(got[key][b], alone[key][0], err_msg=key)


def test_payments_equal_the_fraction_oracle():
    rng = np.random.default_rng(3)
    menus = [lottery_menu(rng, 2, 3, 6, 10.0 ** s) for s in (-3, 0, 5)]
    allocations = np.stack([a for a, _ in menus])
    boosts = np.stack([b for _, b in menus])
    weights = np.array([[1.0, 2.0], [0.5, 1.0], [1.0, 1.0]])
    bids = np.stack([10.0 ** s * rng.uniform(size=(2, 3)) for s in (-3, 0, 5)])
    got = outcome(bids, (allocations, boosts, weights, None))
    for b in range(3):
        exact = fraction_ama(bids[b], allocations[b], boosts[b], weights[b])
        assert got["menu_index"][b] == exact["menu_index"]
        bound = exactness.payment_error_bound(bids[b:b + 1], boosts[b], weights[b])[0]
        for i in range(2):
            assert abs(got["payments"][b, i]
                       - float(exact["payment"](i, exact["menu_index"]))) <= bound[i]


def test_a_profile_gets_the_same_outcome_alone_and_in_any_batch():
    rng = np.random.default_rng(5)
    parts = [lottery_menu(rng, 3, 2, 8, 0.3) for _ in range(37)]
    menu = (np.stack([a for a, _ in parts]), np.stack([b for _, b in parts]),
            rng.uniform(0.5, 2.0, size=(37, 3)), 0.3 * rng.normal(size=(37, 4, 2)))
    bids = rng.uniform(size=(37, 3, 2))
    batch = outcome(bids, menu, micro_batch_size=8)
    for b in (0, 9, 36):
        alone = outcome(bids[b:b + 1], tuple(t[b:b + 1] for t in menu), micro_batch_size=8)
        for key in OUTPUTS:
            np.testing.assert_array_equal(alone[key][0], batch[key][b], err_msg=key)


def test_soft_payments_per_profile_equal_each_menus_own():
    rng = np.random.default_rng(7)
    parts = [lottery_menu(rng, 2, 3, 5, 0.5) for _ in range(4)]
    allocations = np.stack([a for a, _ in parts])
    boosts = np.stack([b for _, b in parts])
    weights = rng.uniform(0.5, 2.0, size=(4, 2))
    c = rng.normal(size=(4, 3, 3))
    valuations = rng.uniform(size=(4, 2, 3))
    for family in (None, c):
        got = soft_payments(valuations, allocations, boosts, weights, 50.0,
                            separable_boosts=family).numpy()
        for b in range(4):
            want = soft_payments(valuations[b:b + 1], allocations[b], boosts[b], weights[b],
                                 50.0, separable_boosts=None if family is None else c[b])
            np.testing.assert_allclose(got[b], want.numpy()[0], rtol=1e-12, atol=1e-14)


def _menu(batch=2):
    return (np.zeros((batch, 3, 2, 2)), np.zeros((batch, 3)), np.ones((batch, 2)),
            np.zeros((batch, 3, 2)))


@pytest.mark.parametrize("change,error,match", [
    (dict(boosts=np.zeros(3)), ValueError, r"`boosts` must have shape \[batch, menu_size=3\]"),
    (dict(bidder_weights=np.ones(2)), ValueError,
     r"`bidder_weights` must have shape \[batch, num_bidders=2\]"),
    (dict(separable_boosts=np.zeros((3, 2))), ValueError, "leading batch axis"),
    (dict(allocations=np.zeros((3, 3, 2, 2)), boosts=np.zeros((3, 3)),
          bidder_weights=np.ones((3, 2)), separable_boosts=np.zeros((3, 3, 2))),
     tf.errors.InvalidArgumentError, "one menu per bid profile"),
    (dict(boosts=np.full((2, 3), np.nan)), tf.errors.InvalidArgumentError,
     "`boosts` must be finite"),
    (dict(allocations=np.full((2, 3, 2, 2), 0.6)), tf.errors.InvalidArgumentError,
     "infeasible"),
    (dict(bidder_weights=np.zeros((2, 2))), tf.errors.InvalidArgumentError,
     "`bidder_weights` must be >="),
    (dict(separable_boosts=np.full((2, 3, 2), 1e38)), tf.errors.InvalidArgumentError,
     r"sum_j max_o \|c\[o, j\]\|"),
])
def test_bad_menus_per_profile_are_refused_by_name(change, error, match):
    names = ("allocations", "boosts", "bidder_weights", "separable_boosts")
    menu = {**dict(zip(names, _menu())), **change}
    with pytest.raises(error, match=match):
        exact_outcome(tf.zeros([2, 2, 2], tf.float64), **menu)


@pytest.mark.parametrize("num_bidders", [1, 2, 3, 5])
@pytest.mark.parametrize("family", [False, True])
@pytest.mark.slow
def test_a_traced_graph_serves_the_eager_outcome_to_the_bit(num_bidders, family):
    # Graph optimization may rewrite same-shape additions (AddN) and round them otherwise: a
    # SavedModel must serve what eager exact_outcome computes.
    rng = np.random.default_rng(num_bidders)
    parts = [lottery_menu(rng, num_bidders, 5, 64, 0.3) for _ in range(16)]
    menu = [np.stack([a for a, _ in parts]), np.stack([b for _, b in parts]),
            rng.uniform(0.5, 2.0, size=(16, num_bidders)),
            0.3 * rng.normal(size=(16, num_bidders + 1, 5)) if family else None]
    bids = tf.constant(rng.uniform(size=(16, num_bidders, 5)))
    eager = exact_outcome(bids, *menu)
    traced = tf.function(lambda b: exact_outcome(b, *menu))(bids)
    for key in ("allocation", "payments", "menu_index", "values"):
        np.testing.assert_array_equal(eager[key], traced[key], err_msg=key)
