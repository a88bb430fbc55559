"""The item-separable family joined with an explicit menu (tf_ama.core.separable, issue 14).

Oracle: the same AMA with the family enumerated as explicit deterministic entries (in the
order of `menus.deterministic_allocations`, boosts `sum_j c[o_j, j]`), computed by the plain
exact outcome and, for the money, by the exact `fractions.Fraction` AMA. The joined outcome
must choose the same entry (ties included), charge the same payments up to the contract's
bounds (to the bit on dyadic inputs), certify zero regret, and be batch invariant.
"""


import itertools

import numpy as np
import pytest
import tensorflow as tf
from builders import lottery_menu, plain_and_xla
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import enumerated, fraction_ama

from tf_ama.core import exactness, separable
from tf_ama.core.mechanism import exact_outcome
from tf_ama.core.relaxation import soft_payments
from tf_ama.core.allocations import deterministic_allocations

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTPUTS = ("allocation", "payments", "menu_index", "values", "regret", "counterfactual_index")


def joined(bids, menu, c, jit_compile=False, **options):
    allocations, boosts, weights = menu
    outcome = exact_outcome(tf.constant(bids), allocations, boosts, weights,
                            separable_boosts=c, with_certificate=True,
                            with_counterfactual=True, jit_compile=jit_compile, **options)
    return {key: value.numpy() for key, value in outcome.items()}


@st.composite
def joined_auctions(draw, dyadic=False):
    """(bids [6, m, n], (allocations, boosts, weights), c) where both parts win sometimes."""
    num_bidders, num_items = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    menu_size = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 1.0 if dyadic else 10.0 ** draw(st.integers(-3, 6))
    if menu_size == 1:
        allocations, boosts = np.zeros((1, num_bidders, num_items)), np.zeros(1)
    else:
        allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size, scale)
    weights = 2.0 ** rng.integers(-2, 3, size=num_bidders).astype(np.float64)
    c = scale * (rng.normal(size=(num_bidders + 1, num_items)) - 0.5)  # both parts win
    bids = scale * rng.uniform(size=(6, num_bidders, num_items)) * (rng.uniform(size=(6, 1, 1)) < 0.9)
    if dyadic:  # float64 arithmetic is exact on these: many exact ties
        allocations = np.floor(allocations * 4) / 4
        boosts, c, bids = (np.round(x * 4) / 4 for x in (boosts, c, bids * 4))
        boosts[0] = 0.0
    return bids, (allocations, boosts, weights), c


def assert_the_enumerated_menu(auction, jit_compile):
    bids, (allocations, boosts, weights), c = auction
    got = joined(bids, (allocations, boosts, weights), c, jit_compile)
    explicit_allocations, explicit_boosts = enumerated(allocations, boosts, c)
    want = exact_outcome(tf.constant(bids), explicit_allocations, explicit_boosts, weights,
                         with_certificate=True, with_counterfactual=True)
    # The same entry where the enumerated welfare is not a near-tie (the two sum in
    # different orders); the money within the contract's bound either way (whose scale with
    # the family is the larger of max |b| and sum_j max_o |c[o, j]|).
    bound = exactness.payment_error_bound(bids, boosts, weights, c)
    np.testing.assert_array_less(np.abs(got["payments"] - want["payments"].numpy()),
                                 2 * bound + 1e-300)
    assert np.all(got["payments"] >= 0) and np.all(got["payments"] <= got["values"])
    regret_bound = exactness.regret_error_bound(bids, boosts, weights, c)
    assert np.all(got["regret"] <= regret_bound + 1e-300)
    welfare = np.einsum("kin,bin,i->bk", explicit_allocations, bids, weights) + explicit_boosts
    best = welfare.max(axis=1)
    chosen = welfare[np.arange(len(bids)), got["menu_index"]]
    assert np.all(best - chosen <= exactness.welfare_error_bound(bids, boosts, weights, c))
    np.testing.assert_array_equal(got["allocation"], explicit_allocations[got["menu_index"]])


(test_joined_outcome_equals_the_enumerated_menu,
 test_compiled_with_xla_the_joined_outcome_equals_the_enumerated_menu) = plain_and_xla(
    assert_the_enumerated_menu, joined_auctions(), PROPERTY, 6)


@PROPERTY
@given(auction=joined_auctions(dyadic=True))
@pytest.mark.slow
def test_on_exact_inputs_the_joined_outcome_is_the_enumerated_one_to_the_bit(auction):
    bids, (allocations, boosts, weights), c = auction
    got = joined(bids, (allocations, boosts, weights), c)
    explicit_allocations, explicit_boosts = enumerated(allocations, boosts, c)
    want = exact_outcome(tf.constant(bids), explicit_allocations, explicit_boosts, weights,
                         with_certificate=True, with_counterfactual=True)
    for key in OUTPUTS:  # ties included: the same lowest index
        np.testing.assert_array_equal(got[key], want[key].numpy(), err_msg=key)
    # ... and the exact rational AMA, profile by profile.
    exact_boosts = enumerated(allocations, boosts, c, exact=True)[1]
    for profile in range(len(bids)):
        oracle = fraction_ama(bids[profile], explicit_allocations, exact_boosts, weights)
        assert got["menu_index"][profile] == oracle["menu_index"]
        for i in range(len(weights)):
            assert got["payments"][profile, i] == oracle["payment"](i, oracle["menu_index"])


def test_ties_between_the_parts_go_to_the_explicit_menu():
    """An explicit entry equal to the family's best allocation, with its boost, wins."""
    c = np.array([[0.0, 0.5], [0.25, 0.0], [0.5, 0.5]])  # 2 bidders, 2 items, nobody last
    bids = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    weights = np.ones(2)
    # Family best: item 0 to bidder 0 (1 + 0 > 0.25, 0.5), item 1 to bidder 1 (1 > 0.5, 0.5).
    copy = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    allocations = np.concatenate([np.zeros((1, 2, 2)), copy])
    boosts = np.array([0.0, 0.0 + 0.0])  # c[0, 0] + c[1, 1] = 0 + 0
    got = joined(bids, (allocations, boosts, weights), c)
    assert got["menu_index"][0] == 1  # the explicit copy, not the family's entry
    without = joined(bids, (allocations[:1], boosts[:1], weights), c)
    assert without["menu_index"][0] == 1 + (1 * 3 + 2)  # owner codes (1, 2): rank 1*3 + 2
    np.testing.assert_array_equal(got["payments"], without["payments"])


@pytest.mark.parametrize("reserve", [0.0, 0.5])
def test_the_family_alone_is_a_second_price_auction_per_item(reserve):
    """Weights 1, bidders' boosts 0 and nobody's boost r: each item goes to its highest
    bidder at max(second-highest bid, r) if that bid reaches r (separate Myerson for
    U[0, 1] at r = 0.5, VCG at r = 0)."""
    rng = np.random.default_rng(3)
    num_bidders, num_items = 3, 4
    bids = rng.uniform(size=(200, num_bidders, num_items))
    c = np.zeros((num_bidders + 1, num_items))
    c[-1] = reserve
    got = joined(bids, (np.zeros((1, num_bidders, num_items)), np.zeros(1), np.ones(num_bidders)),
                 c)
    want = np.zeros((200, num_bidders))
    for b in range(200):
        for j in range(num_items):
            ranked = np.sort(bids[b, :, j])[::-1]
            winner = int(np.argmax(bids[b, :, j]))
            if ranked[0] > reserve:
                want[b, winner] += max(ranked[1] if num_bidders > 1 else 0.0, reserve)
    np.testing.assert_allclose(got["payments"], want, rtol=0, atol=1e-15)
    assert np.all(got["menu_index"] >= 1) and np.abs(got["regret"]).max() <= 1e-15


def test_a_profile_gets_the_same_outcome_alone_and_in_any_batch():
    rng = np.random.default_rng(5)
    allocations, boosts = lottery_menu(rng, 3, 3, 8, 0.3)
    menu = (allocations, boosts, np.array([1.0, 0.7, 1.4]))
    c = 0.3 * rng.normal(size=(4, 3))
    bids = rng.uniform(size=(37, 3, 3))
    batch = joined(bids, menu, c, micro_batch_size=8)
    for b in (0, 9, 36):
        alone = joined(bids[b:b + 1], menu, c, micro_batch_size=8)
        for key in OUTPUTS:
            np.testing.assert_array_equal(alone[key][0], batch[key][b], err_msg=key)


@pytest.mark.parametrize("c,error,match", [
    (np.zeros((2, 2)), ValueError, r"`separable_boosts` must have shape \[num_bidders \+ 1=3"),
    (np.full((3, 2), np.nan), tf.errors.InvalidArgumentError, "`separable_boosts` must be finite"),
    (np.full((3, 2), 1e38), tf.errors.InvalidArgumentError, r"sum_j max_o \|c\[o, j\]\|"),
    (np.zeros((3, 2), np.float32), TypeError, "`separable_boosts` must be float64"),
])
def test_bad_separable_boosts_are_refused_by_name(c, error, match):
    with pytest.raises(error, match=match):
        exact_outcome(tf.zeros([1, 2, 2], tf.float64), np.zeros((1, 2, 2)), np.zeros(1),
                      np.ones(2), separable_boosts=c)


def test_a_family_too_large_to_index_is_refused():
    assert separable.family_size(3, 40) > separable.MAX_FAMILY_INDEX
    with pytest.raises(ValueError, match="too many to index"):
        exact_outcome(tf.zeros([1, 3, 40], tf.float64), np.zeros((1, 3, 40)), np.zeros(1),
                      np.ones(3), separable_boosts=np.zeros((4, 40)))


def _family_matrix(num_bidders, num_items):
    """`[F, (m + 1) n]` 0/1: family entry f uses c[o, j] (flattened row-major)."""
    rows = []
    for codes in itertools.product(range(num_bidders + 1), repeat=num_items):
        row = np.zeros((num_bidders + 1, num_items))
        for j, code in enumerate(codes):
            row[code - 1 if code else num_bidders, j] = 1.0
        rows.append(row.ravel())
    return np.array(rows)


@pytest.mark.parametrize("num_bidders,num_items", [(2, 2), (2, 3), (3, 2), (1, 3)])
def test_soft_payments_and_gradients_equal_the_enumerated_menu(num_bidders, num_items):
    """The factorized relaxation of the joined menu is the relaxation of the enumerated one:
    value and gradients with respect to the explicit menu, c and the weights (float64)."""
    rng = np.random.default_rng(num_bidders * 10 + num_items)
    allocations, boosts = lottery_menu(rng, num_bidders, num_items, 5, 0.3)
    variables = [tf.Variable(allocations), tf.Variable(boosts),
                 tf.Variable(rng.uniform(0.5, 1.5, size=num_bidders)),
                 tf.Variable(0.3 * rng.normal(size=(num_bidders + 1, num_items)))]
    valuations = tf.constant(rng.uniform(size=(16, num_bidders, num_items)))
    family = tf.constant(deterministic_allocations(num_bidders, num_items, "additive"))
    matrix = tf.constant(_family_matrix(num_bidders, num_items))
    for temperature in (3.0, 30.0, 100.0):
        with tf.GradientTape(persistent=True) as tape:
            a, b, w, c = variables
            factorized = soft_payments(valuations, a, b, w, temperature, separable_boosts=c)
            enumerated_boosts = tf.linalg.matvec(matrix, tf.reshape(c, [-1]))
            explicit = soft_payments(valuations, tf.concat([a, family], 0),
                                     tf.concat([b, enumerated_boosts], 0), w, temperature)
        np.testing.assert_allclose(factorized.numpy(), explicit.numpy(), rtol=1e-9, atol=1e-12)
        for mine, theirs in zip(tape.gradient(factorized, variables),
                                tape.gradient(explicit, variables)):
            np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-8, atol=1e-10)
