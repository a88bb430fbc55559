"""The exactness contract (tf_ama.core.exactness) against an exact rational oracle.

`exact_outcome` (plain and XLA) and the exported serving signature are compared with
`oracle.fraction_ama`, the AMA in `fractions.Fraction` arithmetic, on random menus, weights
and bids spanning 1e-310 to 1e38, with hypothesis: the served entry is a welfare maximizer up
to `welfare_error_bound`, every payment is within `payment_error_bound` of the exact payment
of the served entry, `0 <= payment <= value` exactly, and no report (huge ones included)
gains more than `regret_error_bound`. Dyadic inputs, on which float64 arithmetic is exact,
must give the exact outcome to the bit, ties included. The defects of issue #12 (a bid of
1e16 got the item free; bids of 1e308 gave NaN payments; a weight of 5e-324 was accepted)
are reproduced first.
"""

from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from builders import lottery_menu, plain_and_xla
from oracle import fraction_ama

from tf_ama.core import exactness, mechanism

JIT = [pytest.param(False, id="plain"), pytest.param(True, id="xla")]
INVALID = tf.errors.InvalidArgumentError
# Hypothesis: no deadline (XLA compiles once per new shape) and a fixed budget per test.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
XLA_EXAMPLES = 8  # of each property compiled with XLA (builders.plain_and_xla)

# --- Strategies -----------------------------------------------------------------------------


@st.composite
def auctions(draw, max_bidders=3, max_items=4, max_menu=10):
    """(bids [4, m, n], allocations, boosts, bidder_weights) with magnitudes over many orders."""
    num_bidders = draw(st.integers(1, max_bidders))
    num_items = draw(st.integers(1, max_items))
    menu_size = draw(st.integers(2, max_menu))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size,
                                       boost_scale=10.0 ** draw(st.integers(-3, 6)))
    weight_exponents = draw(st.lists(st.floats(-6, 6), min_size=num_bidders,
                                     max_size=num_bidders))
    bidder_weights = 10.0 ** np.array(weight_exponents)
    bidder_weights = np.clip(bidder_weights, exactness.MIN_BIDDER_WEIGHT,
                             exactness.MAX_BIDDER_WEIGHT)
    # Each bidder of each profile bids on its own scale, 1e-8 .. 1e38, some bids 0, some
    # exactly MAX_BID: one huge bidder beside small ones is the case that broke payments.
    # ... and now and then below 1e-300, where TensorFlow flushes subnormal results to 0.
    exponents = draw(st.lists(st.one_of(st.integers(-8, 38), st.sampled_from([-300, -310])),
                              min_size=4 * num_bidders, max_size=4 * num_bidders))
    scales = 10.0 ** np.array(exponents, np.float64).reshape(4, num_bidders, 1)
    bids = np.minimum(scales * rng.uniform(size=(4, num_bidders, num_items)), exactness.MAX_BID)
    bids[rng.uniform(size=bids.shape) < 0.2] = 0.0
    bids[rng.uniform(size=bids.shape) < 0.05] = exactness.MAX_BID
    return bids, allocations, boosts, bidder_weights


def outcome_of(bids, menu, jit_compile=False):
    return {key: value.numpy() for key, value in mechanism.exact_outcome(
        bids, *menu, jit_compile=jit_compile).items()}


def assert_within_contract(bids, menu, outcome):
    """Every guarantee of tf_ama.core.exactness for each profile, against the rational oracle."""
    allocations, boosts, bidder_weights = menu
    welfare_bound = exactness.welfare_error_bound(bids, boosts, bidder_weights)
    payment_bound = exactness.payment_error_bound(bids, boosts, bidder_weights)
    for key in ("allocation", "payments", "values"):
        assert key not in outcome or np.all(np.isfinite(outcome[key])), key
    assert np.all(outcome["payments"] >= 0)
    if "values" in outcome:  # the serving signature returns no values
        assert np.all(outcome["payments"] <= outcome["values"])  # IR exactly, in float64
    for profile in range(len(bids)):
        exact = fraction_ama(bids[profile], *menu)
        chosen = int(outcome["menu_index"][profile])
        np.testing.assert_array_equal(outcome["allocation"][profile], allocations[chosen])
        assert exact["welfare"][chosen] >= max(exact["welfare"]) - Fraction(welfare_bound[profile])
        for bidder in range(bids.shape[1]):
            served = Fraction(outcome["payments"][profile, bidder])
            error = abs(served - exact["payment"](bidder, chosen))
            assert error <= Fraction(payment_bound[profile, bidder]), (
                f"profile {profile} bidder {bidder}: payment {float(served)!r} is "
                f"{float(error):.3g} from the exact payment, bound "
                f"{payment_bound[profile, bidder]:.3g}")
            # The served value is the float64 dot product: within (n + 1) u of the exact one.
            value = exact["values"][bidder][chosen]
            value_bound = ((bids.shape[2] + 1) * exactness.UNIT_ROUNDOFF * value
                           + Fraction(2 * bids.shape[2] * 2.0**-1022))  # subnormals flushed
            assert served <= value + value_bound  # IR
            if "values" in outcome:
                assert abs(Fraction(outcome["values"][profile, bidder]) - value) <= value_bound


# --- The defects of issue #12, reproduced ---------------------------------------------------

ONE_ITEM_MENU = (np.array([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]),
                 np.array([0.0, -0.5]), np.ones(2))


@pytest.mark.parametrize("bid", [1.0, 1e15, 1e16, 1e20, 1e30, exactness.MAX_BID])
@pytest.mark.parametrize("jit_compile", JIT)
def test_a_huge_bid_pays_the_exact_price(bid, jit_compile):
    # Bidder 0 wins item 0 and pays max W_-0 - W_-0[1] = 0 - (-0.5) = 0.5, whatever its bid.
    # On the old formula W - w_i u_i, the boost -0.5 cancelled out of 1e16 - 0.5: paid 0.
    outcome = outcome_of(np.array([[[bid, 0.0], [0.0, 0.0]]]), ONE_ITEM_MENU, jit_compile)
    assert outcome["menu_index"].tolist() == [1]
    assert outcome["payments"].tolist() == [[0.5, 0.0]]


@pytest.mark.parametrize("bid", [1e9, 1e12, 1e16, 1e20, 1e38])
@pytest.mark.parametrize("jit_compile", JIT)
def test_payments_on_random_lottery_menus_do_not_degrade_with_the_payers_bid(bid, jit_compile):
    # Old main: ~1e-7 off at 1e9, ~1e-4 at 1e12, 0 instead of ~0.5 from 1e16 up.
    rng = np.random.default_rng(7)
    for _ in range(5):
        allocations, boosts = lottery_menu(rng, 2, 2, 8, boost_scale=0.5)
        menu = (allocations, boosts, np.ones(2))
        bids = rng.uniform(size=(6, 2, 2))
        bids[:, 0, rng.integers(2)] = bid
        outcome = outcome_of(bids, menu, jit_compile)
        assert_within_contract(bids, menu, outcome)
        # The bound for bidder 0 involves only bidder 1's bids (<= 1) and the boosts.
        assert exactness.payment_error_bound(bids, boosts, np.ones(2))[:, 0].max() < 1e-13


@pytest.mark.parametrize("bids", [
    [[[1e308, 1e308], [0.0, 0.0]]],
    [[[np.finfo(np.float64).max] * 2] * 2],
    [[[1.0, 2.0], [np.nextafter(exactness.MAX_BID, np.inf), 0.0]]],
], ids=["1e308", "float64-max", "just-above-MAX_BID"])
def test_bids_above_max_bid_are_refused_not_nan(bids):
    # Old main: menu_index 1, payments [nan, nan].
    allocations = np.array([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    with pytest.raises(INVALID, match=r"`bids` must be <= 1e\+38 \(tf_ama.core.exactness.MAX_BID"):
        mechanism.exact_outcome(np.array(bids), allocations, np.array([0.0, -0.5]), np.ones(2))


@pytest.mark.parametrize("jit_compile", JIT)
def test_largest_accepted_inputs_give_finite_exact_outcomes(jit_compile):
    # Every limit at once: bids MAX_BID, boosts +-MAX_ABS_BOOST, weights at both ends.
    rng = np.random.default_rng(3)
    allocations, _ = lottery_menu(rng, 3, 4, 8, boost_scale=1.0)
    boosts = exactness.MAX_ABS_BOOST * np.sign(rng.normal(size=8))
    boosts[0] = 0.0
    weights = np.array([exactness.MIN_BIDDER_WEIGHT, 1.0, exactness.MAX_BIDDER_WEIGHT])
    bids = np.full((3, 3, 4), exactness.MAX_BID)
    bids[1, 0] = 0.0
    bids[2] = rng.uniform(size=(3, 4))
    menu = (allocations, boosts, weights)
    assert_within_contract(bids, menu, outcome_of(bids, menu, jit_compile))


@pytest.mark.parametrize("jit_compile", JIT)
def test_subnormal_amounts_stay_within_the_bounds(jit_compile):
    # TensorFlow flushes results below 2**-1022 to 0: a bid of 2**-1070 ties with nothing,
    # and a weighted value of 1e-309 is lost from a payment. The bounds' absolute term
    # (exactness.UNDERFLOW, ~1e-300) covers both; before it, the bounds were 0 and ~5e-318.
    tiny = (np.array([[[2.0**-1070]]]), (np.array([[[0.0]], [[1.0]]]), np.zeros(2), np.ones(1)))
    weighted = (np.array([[[1.0], [1e-303]]]),
                (np.array([[[0.0], [0.0]], [[1.0], [0.0]], [[0.0], [1.0]]]), np.zeros(3),
                 np.array([1e-6, 1e-6])))
    for bids, menu in (tiny, weighted):
        assert_within_contract(bids, menu, outcome_of(bids, menu, jit_compile))


@pytest.mark.parametrize("weights,match", [
    ([5e-324, 1.0], r"`bidder_weights` must be >= 1e-06"),
    ([1.0, 2e6], r"`bidder_weights` must be <= 1e\+06"),
])
def test_weights_outside_the_contract_are_refused(weights, match):
    allocations, boosts, _ = ONE_ITEM_MENU
    with pytest.raises(INVALID, match=match):
        mechanism.exact_outcome(np.ones((1, 2, 2)), allocations, boosts, np.array(weights))
    with pytest.raises(ValueError, match=r"`bidder_weights` must lie in \[1e-06, 1e\+06\]"):
        exactness.check_menu_limits(boosts, weights)


def test_boosts_outside_the_contract_are_refused():
    allocations, _, weights = ONE_ITEM_MENU
    with pytest.raises(INVALID, match=r"`boosts` must satisfy \|boosts\| <= 1e\+38"):
        mechanism.exact_outcome(np.ones((1, 2, 2)), allocations, np.array([0.0, -1e39]), weights)
    with pytest.raises(ValueError, match=r"`boosts` must be finite with \|boosts\| <= 1e\+38"):
        exactness.check_menu_limits(np.array([0.0, 1e39]), weights)
    exactness.check_menu_limits(np.array([0.0, -1e38]), weights)  # the limit itself is accepted


# --- Properties over random menus and bids --------------------------------------------------


def assert_the_outcome_within_the_contract(auction, jit_compile):
    bids, *menu = auction
    assert_within_contract(bids, menu, outcome_of(bids, menu, jit_compile))


(test_exact_outcome_is_within_the_contract,
 test_compiled_with_xla_the_exact_outcome_is_within_the_contract) = plain_and_xla(
    assert_the_outcome_within_the_contract, auctions(), PROPERTY, XLA_EXAMPLES)


def dyadic(draw, shape, numerators, denominator):
    values = draw(st.lists(st.sampled_from(numerators), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))
    return np.array(values, np.float64).reshape(shape) / denominator


@st.composite
def dyadic_auctions(draw):
    """Inputs on which every float64 operation is exact: allocations in eighths, weights
    powers of two, boosts in eighths, small integer bids: many exact ties."""
    num_bidders, num_items = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    menu_size = draw(st.integers(2, 12))
    shares = dyadic(draw, (menu_size, num_bidders + 1, num_items), range(9), 1.0)
    totals = np.maximum(shares.sum(axis=1, keepdims=True), 1.0)
    allocations = np.floor(8 * shares[:, :-1] / totals) / 8  # feasible: each item <= 1
    allocations[0] = 0.0
    boosts = dyadic(draw, (menu_size,), range(-8, 9), 8.0)
    boosts[0] = 0.0
    bidder_weights = 2.0 ** np.array(draw(st.lists(st.integers(-3, 3), min_size=num_bidders,
                                                   max_size=num_bidders)), np.float64)
    bids = dyadic(draw, (4, num_bidders, num_items), range(5), 1.0) * 2.0 ** draw(
        st.integers(-4, 40))
    return bids, allocations, boosts, bidder_weights


def assert_the_rational_outcome(auction, jit_compile):
    bids, *menu = auction
    outcome = outcome_of(bids, menu, jit_compile)
    for profile in range(len(bids)):
        exact = fraction_ama(bids[profile], *menu)
        assert outcome["menu_index"][profile] == exact["menu_index"]
        for bidder in range(bids.shape[1]):
            # Equal as numbers: the float payment IS the rational one.
            assert Fraction(outcome["payments"][profile, bidder]) == exact["payment"](
                bidder, exact["menu_index"])


(test_exact_arithmetic_inputs_give_the_exact_outcome_ties_included,
 test_compiled_with_xla_exact_arithmetic_inputs_give_the_exact_outcome) = plain_and_xla(
    assert_the_rational_outcome, dyadic_auctions(), PROPERTY, XLA_EXAMPLES)


@st.composite
def misreports(draw):
    """A truthful profile, one deviating bidder and its report: small, shaded, inflated,
    sparse or huge (up to MAX_BID)."""
    bids, allocations, boosts, bidder_weights = draw(auctions(max_bidders=3, max_items=3))
    true_values = np.minimum(bids, 1e6)  # true values of any size below 1e6 ...
    bidder = draw(st.integers(0, bids.shape[1] - 1))
    exponent = draw(st.integers(-8, 38))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    report = np.minimum(10.0**exponent * rng.uniform(size=(4, bids.shape[2])), exactness.MAX_BID)
    report[rng.uniform(size=report.shape) < 0.3] = 0.0
    return true_values, bidder, report, (allocations, boosts, bidder_weights)


def assert_no_gain_above_the_bound(case, jit_compile):
    true_values, bidder, report, menu = case
    allocations, boosts, bidder_weights = menu
    deviated = true_values.copy()
    deviated[:, bidder] = report  # ... and reports up to MAX_BID
    truthful, lying = (outcome_of(bids, menu, jit_compile) for bids in (true_values, deviated))
    bound = exactness.regret_error_bound(true_values, boosts, bidder_weights)[:, bidder]
    exact_values = np.vectorize(Fraction, otypes=[object])(true_values[:, bidder])
    exact_allocations = np.vectorize(Fraction, otypes=[object])(allocations[:, bidder])

    def utility(outcome, profile):  # at TRUE values, exactly, with the served payment
        entry = exact_allocations[outcome["menu_index"][profile]]
        return sum(entry * exact_values[profile]) - Fraction(outcome["payments"][profile, bidder])

    for profile in range(len(true_values)):
        gain = utility(lying, profile) - utility(truthful, profile)
        assert gain <= Fraction(bound[profile]), f"profile {profile}: gain {float(gain):.3g}"


(test_no_report_gains_more_than_the_regret_bound,
 test_compiled_with_xla_no_report_gains_more_than_the_regret_bound) = plain_and_xla(
    assert_no_gain_above_the_bound, misreports(), PROPERTY, XLA_EXAMPLES)


# --- The exported serving signature ---------------------------------------------------------


@pytest.fixture(scope="module")
def served_auction(tmp_path_factory):
    """A random 2x2 lottery AMA (asymmetric weights) exported and loaded back as TF Serving
    would: `(serving_default signature, menu)`."""
    from tf_ama import AffineMaximizerAuction, export_saved_model, get_setting

    rng = np.random.default_rng(11)
    allocations, boosts = lottery_menu(rng, 2, 2, 16, boost_scale=0.3)
    weights = np.array([1.0, 1.7])
    model = AffineMaximizerAuction.from_menu(get_setting("additive_2x2_uniform"), allocations,
                                             boosts, weights)
    path = export_saved_model(model, tmp_path_factory.mktemp("models") / "a22")
    return tf.saved_model.load(path).signatures["serving_default"], (allocations, boosts,
                                                                      weights)


def serve(signature, bids):
    return {key: value.numpy() for key, value in signature(bids=tf.constant(bids)).items()}


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(exponents=st.lists(st.integers(-8, 38), min_size=8, max_size=8),
       seed=st.integers(0, 2**32 - 1))
def test_exported_signature_is_within_the_contract(served_auction, exponents, seed):
    signature, menu = served_auction
    rng = np.random.default_rng(seed)
    scales = 10.0 ** np.array(exponents, np.float64).reshape(4, 2, 1)
    bids = np.minimum(scales * rng.uniform(size=(4, 2, 2)), exactness.MAX_BID)
    assert_within_contract(bids, menu, serve(signature, bids))


@pytest.mark.parametrize("report", [1e8, 1e16, 1e20, exactness.MAX_BID])
def test_exported_model_gains_nothing_from_a_huge_misreport(served_auction, report):
    # Old main, trained 2x2 model: misreporting 1e8 on one item gained on ~20% of profiles
    # and on every profile at 1e20.
    signature, (allocations, boosts, weights) = served_auction
    rng = np.random.default_rng(5)
    true_values = rng.uniform(size=(200, 2, 2))
    for bidder, item in ((0, 0), (1, 1)):
        lying = true_values.copy()
        lying[:, bidder, item] = report
        truthful, deviated = serve(signature, true_values), serve(signature, lying)
        utility = {name: np.einsum("bj,bj->b", outcome["allocation"][:, bidder],
                                   true_values[:, bidder]) - outcome["payments"][:, bidder]
                   for name, outcome in (("truthful", truthful), ("lying", deviated))}
        bound = exactness.regret_error_bound(true_values, boosts, weights)[:, bidder]
        # float utilities: allow their own rounding (values <= 2) on top of the bound.
        assert np.all(utility["lying"] <= utility["truthful"] + bound + 1e-15), (
            f"bidder {bidder} gains by reporting {report:g} on item {item}")
        assert (deviated["menu_index"] != truthful["menu_index"]).any()  # not vacuous


def test_exported_signature_refuses_huge_bids_inside_the_graph(served_auction):
    signature, _ = served_auction
    with pytest.raises(INVALID, match=r"`bids` must be <= 1e\+38"):
        signature(bids=tf.constant([[[1e308, 1e308], [0.0, 0.0]]], tf.float64))


# --- The bounds themselves ------------------------------------------------------------------


def test_payment_bound_does_not_involve_the_payers_own_bids():
    boosts, weights = np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0])
    small = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    huge = small.copy()
    huge[0, 0] = 1e30
    assert exactness.payment_error_bound(huge, boosts, weights)[0, 0] == \
        exactness.payment_error_bound(small, boosts, weights)[0, 0]
    assert exactness.payment_error_bound(huge, boosts, weights)[0, 1] > 1e13  # the others' do
    # T_0 = max|b| + w_1 (3 + 4) = 1 + 14; n = m = 2: 12 * 6 * 2**-53 * 15 / 1.
    np.testing.assert_allclose(exactness.payment_error_bound(small, boosts, weights)[0, 0],
                               12 * 6 * 2.0**-53 * 15, rtol=1e-9)
