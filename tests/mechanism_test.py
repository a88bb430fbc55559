"""Tests of tf_ama.core.mechanism: the exact AMA outcome against a loop-based NumPy oracle,
hand-made fixtures (ties, zero / huge bids, one bidder, second price), strategyproofness
properties, and refusal of bad input."""

import numpy as np
import pytest
import tensorflow as tf
from oracle import numpy_ama, numpy_soft_payments

from tf_ama.core import allocations as menus, blocks, mechanism, relaxation, validation

# (num_bidders, num_items, demand): the shapes the paper's settings use, small K for the loop.
SHAPES = [
    (1, 1, "additive"),
    (1, 2, "additive"),
    (1, 2, "unit_demand"),
    (2, 2, "additive"),
    (2, 2, "unit_demand"),
    (3, 1, "additive"),
    (2, 4, "unit_demand"),
    (3, 10, "additive"),
]
LOTTERY_MENU_SIZE = 17
# exact_outcome with and without XLA: every fixture and oracle test runs in both modes.
JIT = [pytest.param(False, id="plain"), pytest.param(True, id="xla")]


def random_menu(rng, num_bidders, num_items, demand, kind, menu_size=LOTTERY_MENU_SIZE):
    """A random menu (allocations, boosts, bidder weights), float64, weights not all 1."""
    if kind == "deterministic":
        allocations = menus.deterministic_allocations(num_bidders, num_items, demand)
    elif demand == "additive":
        logits = rng.normal(scale=3.0, size=(menu_size - 1, num_bidders + 1, num_items))
        allocations = menus.additive_lottery(tf.constant(logits, tf.float64)).numpy()
    else:
        shape = (menu_size - 1, num_bidders, num_items)
        allocations = menus.unit_demand_lottery(
            tf.constant(rng.normal(scale=3.0, size=shape), tf.float64),
            tf.constant(rng.normal(scale=3.0, size=shape), tf.float64),
        ).numpy()
    boosts = rng.normal(scale=0.5, size=len(allocations))
    boosts[0] = 0.0
    bidder_weights = rng.uniform(0.5, 2.0, size=num_bidders)
    if num_bidders > 1:
        bidder_weights[0] = 1.0  # a mix of 1 and not-1
    return allocations, boosts, bidder_weights


def random_bids(rng, batch, num_bidders, num_items, scale=1.0):
    return rng.uniform(0.0, scale, size=(batch, num_bidders, num_items))


def numpy_outcome(outcome):
    return {key: value.numpy() for key, value in outcome.items()}


def assert_matches_oracle(outcome, expected, atol=1e-12):
    np.testing.assert_array_equal(outcome["menu_index"], expected["menu_index"])
    for key in ("allocation", "payments", "values"):
        np.testing.assert_allclose(outcome[key], expected[key], rtol=0, atol=atol, err_msg=key)
    if "regret" in outcome:
        np.testing.assert_allclose(outcome["regret"], expected["regret"], rtol=0, atol=atol)


# --- Oracle tests -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lottery", "deterministic"])
@pytest.mark.parametrize("num_bidders,num_items,demand", SHAPES)
@pytest.mark.parametrize("jit_compile", JIT)
@pytest.mark.slow
def test_exact_outcome_matches_numpy_oracle(num_bidders, num_items, demand, kind, jit_compile):
    if kind == "deterministic" and menus.deterministic_menu_size(
            num_bidders, num_items, demand) > menus.MAX_DETERMINISTIC_MENU:
        pytest.skip("deterministic menu too large to enumerate (tested in menus_test)")
    rng = np.random.RandomState(num_bidders * 100 + num_items * 10 + len(demand) + len(kind))
    allocations, boosts, bidder_weights = random_menu(rng, num_bidders, num_items, demand, kind)
    bids = random_bids(rng, 24, num_bidders, num_items, scale=4.0)
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, with_certificate=True, jit_compile=jit_compile))
    expected = numpy_ama(bids, allocations, boosts, bidder_weights)
    assert outcome["menu_index"].dtype == np.int64
    assert outcome["payments"].dtype == np.float64
    assert outcome["allocation"].shape == (24, num_bidders, num_items)
    assert outcome["payments"].shape == outcome["values"].shape == (24, num_bidders)
    assert_matches_oracle(outcome, expected)
    # The test is not vacuous: several entries and some positive payments occur.
    assert len(set(outcome["menu_index"].tolist())) > 1 or len(allocations) == 2
    if num_bidders > 1 or kind == "lottery":
        assert outcome["payments"].max() > 0


@pytest.mark.parametrize("num_bidders,num_items,demand", [(2, 2, "additive"), (2, 4, "unit_demand")])
def test_regret_certificate_matches_oracle(num_bidders, num_items, demand):
    rng = np.random.RandomState(5)
    allocations, boosts, bidder_weights = random_menu(rng, num_bidders, num_items, demand, "lottery")
    bids = random_bids(rng, 16, num_bidders, num_items)
    regret = mechanism.regret_certificate(bids, allocations, boosts, bidder_weights).numpy()
    expected = numpy_ama(bids, allocations, boosts, bidder_weights)["regret"]
    assert regret.shape == (16, num_bidders)
    np.testing.assert_allclose(regret, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("micro_batch_size", [1, 4, 7, 22, 23, 1000])
@pytest.mark.parametrize("with_certificate", [False, True])
@pytest.mark.parametrize("jit_compile", JIT)
def test_chunking_gives_identical_results(micro_batch_size, with_certificate, jit_compile):
    rng = np.random.RandomState(11)
    allocations, boosts, bidder_weights = random_menu(rng, 2, 3, "additive", "lottery")
    bids = random_bids(rng, 23, 2, 3)
    whole = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, with_certificate=with_certificate,
        jit_compile=jit_compile))
    chunked = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, micro_batch_size=micro_batch_size,
        with_certificate=with_certificate, jit_compile=jit_compile))
    assert chunked.keys() == whole.keys()
    for key in whole:
        assert chunked[key].shape == whole[key].shape, key
        np.testing.assert_array_equal(chunked[key], whole[key], err_msg=key)


@pytest.mark.parametrize("micro_batch_size", [None, 3])
@pytest.mark.parametrize("jit_compile", JIT)
@pytest.mark.slow
def test_exact_outcome_in_tf_function_with_unknown_batch(micro_batch_size, jit_compile):
    rng = np.random.RandomState(3)
    allocations, boosts, bidder_weights = random_menu(rng, 2, 2, "unit_demand", "lottery")

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 2], tf.float64)])
    def serve(bids):
        return mechanism.exact_outcome(
            bids, allocations, boosts, bidder_weights, micro_batch_size=micro_batch_size,
            with_certificate=True, jit_compile=jit_compile)

    for batch in (1, 7, 10):
        bids = random_bids(rng, batch, 2, 2)
        outcome = numpy_outcome(serve(tf.constant(bids)))
        assert outcome["allocation"].shape == (batch, 2, 2)
        assert_matches_oracle(outcome, numpy_ama(bids, allocations, boosts, bidder_weights))
    empty = serve(tf.zeros([0, 2, 2], tf.float64))
    assert empty["payments"].shape == (0, 2) and empty["menu_index"].shape == (0,)
    # Traced once: the batch dimension stays unknown.
    assert serve.experimental_get_tracing_count() == 1
    concrete = serve.get_concrete_function()
    assert concrete.structured_outputs["payments"].shape.as_list() == [None, 2]


@pytest.mark.parametrize("num_bidders,num_items,demand", [(2, 4, "unit_demand"), (3, 10, "additive")])
@pytest.mark.slow
def test_xla_and_plain_choose_the_same_entries_and_payments(num_bidders, num_items, demand):
    # Same formula, compiled differently: the same entries everywhere, payments equal up to
    # the last bits (XLA may fuse a multiply into an add), weights not all 1.
    rng = np.random.RandomState(21)
    allocations, boosts, bidder_weights = random_menu(
        rng, num_bidders, num_items, demand, "lottery", menu_size=512)
    bids = random_bids(rng, 3000, num_bidders, num_items, scale=3.0)
    plain, xla = (numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, with_certificate=True, jit_compile=jit))
        for jit in (False, True))
    np.testing.assert_array_equal(xla["menu_index"], plain["menu_index"])
    np.testing.assert_array_equal(xla["allocation"], plain["allocation"])
    for key in ("payments", "values", "regret"):
        np.testing.assert_allclose(xla[key], plain[key], rtol=0, atol=1e-13, err_msg=key)
    assert np.abs(xla["regret"]).max() <= 1e-12


@pytest.mark.slow
def test_xla_outcome_of_a_profile_does_not_depend_on_its_batch():
    rng = np.random.RandomState(22)
    allocations, boosts, bidder_weights = random_menu(rng, 3, 10, "additive", "lottery",
                                                      menu_size=256)
    bids = random_bids(rng, 64, 3, 10, scale=2.0)
    whole = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, jit_compile=True))
    for index in (0, 37, 63):
        alone = numpy_outcome(mechanism.exact_outcome(
            bids[index:index + 1], allocations, boosts, bidder_weights, jit_compile=True))
        for key in whole:
            np.testing.assert_array_equal(alone[key][0], whole[key][index], err_msg=key)


@pytest.mark.parametrize("function", ["exact_outcome", "regret_certificate"])
def test_chunk_size_is_a_deprecated_name_of_micro_batch_size(function):
    rng = np.random.RandomState(12)
    allocations, boosts, bidder_weights = random_menu(rng, 2, 3, "additive", "lottery")
    bids = random_bids(rng, 23, 2, 3)
    compute = getattr(mechanism, function)
    with pytest.warns(DeprecationWarning, match="`chunk_size` is deprecated.*`micro_batch_size`"):
        old = compute(bids, allocations, boosts, bidder_weights, chunk_size=7)
    new = compute(bids, allocations, boosts, bidder_weights, micro_batch_size=7)
    old, new = (numpy_outcome(result if isinstance(result, dict) else {"regret": result})
                for result in (old, new))
    assert old.keys() == new.keys()
    for key in new:
        np.testing.assert_array_equal(old[key], new[key], err_msg=key)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError,
                                                         match="Give `micro_batch_size` only"):
        compute(bids, allocations, boosts, bidder_weights, chunk_size=7, micro_batch_size=7)


def test_the_outcome_block_is_sized_for_the_cache_and_capped_for_one_profile():
    assert blocks.outcome_block_size(3, 4096) == 16
    assert blocks.outcome_block_size(1, 16) == 1024  # the served block's cap


def test_jit_compile_must_be_a_bool():
    rng = np.random.RandomState(23)
    allocations, boosts, bidder_weights = random_menu(rng, 2, 2, "additive", "lottery")
    with pytest.raises(ValueError, match="`jit_compile` must be True or False"):
        mechanism.exact_outcome(random_bids(rng, 2, 2, 2), allocations, boosts, bidder_weights,
                                jit_compile="yes")


def test_exact_outcome_with_tensors_and_variables():
    rng = np.random.RandomState(4)
    allocations, boosts, bidder_weights = random_menu(rng, 2, 2, "additive", "lottery")
    bids = random_bids(rng, 5, 2, 2)
    outcome = mechanism.exact_outcome(
        tf.constant(bids), tf.Variable(allocations), tf.Variable(boosts), tf.constant(bidder_weights))
    assert_matches_oracle(numpy_outcome(outcome),
                          numpy_ama(bids, allocations, boosts, bidder_weights))


# --- Hand-made fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("jit_compile", JIT)
def test_exact_tie_goes_to_the_lowest_index(jit_compile):
    # Entries 2 and 4 are identical and the best; entry 3 ties with them at these bids.
    allocations = np.array([
        [[0.0, 0.0]],
        [[0.2, 0.0]],
        [[0.5, 0.5]],
        [[1.0, 0.0]],
        [[0.5, 0.5]],
    ])
    boosts = np.array([0.0, 0.0, 0.25, 0.25, 0.25])
    bids = np.array([[[1.0, 1.0]]])
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, np.ones(1), jit_compile=jit_compile))
    assert outcome["menu_index"].tolist() == [2]
    assert numpy_ama(bids, allocations, boosts, np.ones(1))["menu_index"].tolist() == [2]
    np.testing.assert_array_equal(outcome["allocation"][0], allocations[2])
    # One bidder: p = max_k b_k - b_k* = 0.25 - 0.25.
    assert outcome["payments"].tolist() == [[0.0]]


@pytest.mark.parametrize("num_bidders,num_items,demand", SHAPES)
@pytest.mark.parametrize("jit_compile", JIT)
def test_all_zero_bids_choose_entry_zero_and_pay_nothing(num_bidders, num_items, demand, jit_compile):
    rng = np.random.RandomState(0)
    allocations, _, bidder_weights = random_menu(rng, num_bidders, num_items, demand, "lottery")
    boosts = np.zeros(len(allocations))  # every entry ties at welfare 0
    bids = np.zeros((3, num_bidders, num_items))
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, jit_compile=jit_compile))
    assert outcome["menu_index"].tolist() == [0, 0, 0]
    assert not outcome["allocation"].any()
    assert not outcome["payments"].any()


@pytest.mark.parametrize("jit_compile", JIT)
def test_ties_among_many_entries_at_a_high_index(jit_compile):
    # tf.argmax promises no tie-breaking; the AMA must take the lowest maximizer.
    menu_size = 64
    allocations = np.zeros((menu_size, 1, 1))
    boosts = np.zeros(menu_size)
    boosts[[37, 41, 50, 63]] = 2.0
    boosts[[5, 6]] = 1.0
    bids = np.zeros((4, 1, 1))
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, np.ones(1), jit_compile=jit_compile))
    assert outcome["menu_index"].tolist() == [37] * 4
    assert outcome["payments"].tolist() == [[0.0]] * 4


@pytest.mark.parametrize("num_bidders,num_items,demand", [(2, 2, "additive"), (2, 4, "unit_demand"),
                                                          (3, 1, "additive")])
@pytest.mark.parametrize("jit_compile", JIT)
def test_huge_bids(num_bidders, num_items, demand, jit_compile):
    rng = np.random.RandomState(8)
    allocations, boosts, bidder_weights = random_menu(rng, num_bidders, num_items, demand, "lottery")
    bids = 1e6 * random_bids(rng, 16, num_bidders, num_items) + 1e6
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, with_certificate=True, jit_compile=jit_compile))
    expected = numpy_ama(bids, allocations, boosts, bidder_weights)
    np.testing.assert_array_equal(outcome["menu_index"], expected["menu_index"])
    # Rounding is relative to the welfare (~1e6): compare at 1e-12 of it.
    np.testing.assert_allclose(outcome["payments"], expected["payments"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outcome["values"], expected["values"], rtol=1e-12)
    assert (outcome["payments"] >= 0).all()
    assert (outcome["values"] - outcome["payments"] >= 0).all()
    assert (outcome["regret"] <= 1e-12 * 1e6).all()  # relative to the welfare


@pytest.mark.parametrize("weight", [1.0, 2.5])
def test_single_bidder_pays_the_boost_difference(weight):
    # With one bidder W_-i[k] = b_k, so p = (max_k b_k - b_k*) / w.
    rng = np.random.RandomState(12)
    allocations, _, _ = random_menu(rng, 1, 2, "additive", "lottery", menu_size=9)
    boosts = rng.normal(size=9)
    boosts[0] = 0.0
    bids = random_bids(rng, 32, 1, 2, scale=3.0)
    outcome = numpy_outcome(mechanism.exact_outcome(bids, allocations, boosts, np.array([weight])))
    chosen = outcome["menu_index"]
    expected = (boosts.max() - boosts[chosen]) / weight
    np.testing.assert_allclose(outcome["payments"][:, 0], expected, rtol=0, atol=1e-12)
    # The chosen entry maximizes the bidder's utility u - p (a posted-price menu).
    utility = np.einsum("bij,kij->bk", bids, allocations) - (boosts.max() - boosts) / weight
    np.testing.assert_allclose(outcome["values"][:, 0] - outcome["payments"][:, 0],
                               utility.max(axis=1), rtol=0, atol=1e-12)
    assert len(set(chosen.tolist())) > 1


@pytest.mark.parametrize("num_bidders", [1, 2, 3])
def test_vcg_single_item_is_a_second_price_auction(num_bidders):
    # Deterministic menu, weights 1, boosts 0: the highest bidder wins and pays the
    # second-highest bid (0 if alone); everyone else pays 0.
    allocations = menus.deterministic_allocations(num_bidders, 1, "additive")
    rng = np.random.RandomState(num_bidders)
    bids = random_bids(rng, 20, num_bidders, 1)
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, np.zeros(len(allocations)), np.ones(num_bidders)))
    flat = bids[:, :, 0]
    winner = flat.argmax(axis=1)
    second = np.sort(flat, axis=1)[:, -2] if num_bidders > 1 else np.zeros(20)
    expected_payments = np.zeros_like(flat)
    expected_payments[np.arange(20), winner] = second
    expected_allocation = np.zeros_like(flat)
    expected_allocation[np.arange(20), winner] = 1.0
    np.testing.assert_array_equal(outcome["allocation"][:, :, 0], expected_allocation)
    np.testing.assert_allclose(outcome["payments"], expected_payments, rtol=0, atol=1e-15)


def test_vcg_additive_2x2_sells_each_item_by_second_price():
    allocations = menus.deterministic_allocations(2, 2, "additive")
    bids = np.array([[[0.9, 0.1], [0.3, 0.6]], [[0.2, 0.8], [0.5, 0.7]]])
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, np.zeros(len(allocations)), np.ones(2)))
    np.testing.assert_array_equal(outcome["allocation"], [[[1, 0], [0, 1]], [[0, 1], [1, 0]]])
    np.testing.assert_allclose(outcome["payments"], [[0.3, 0.1], [0.7, 0.2]], atol=1e-15)


# --- Properties over random menus and bids ------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_bidders,num_items,demand", SHAPES)
@pytest.mark.parametrize("jit_compile", JIT)
def test_payments_nonnegative_ir_and_zero_regret(num_bidders, num_items, demand, seed, jit_compile):
    rng = np.random.RandomState(1000 + seed)
    kind = "deterministic" if seed == 3 and num_items <= 4 else "lottery"
    allocations, boosts, bidder_weights = random_menu(
        rng, num_bidders, num_items, demand, kind, menu_size=64)
    bids = random_bids(rng, 256, num_bidders, num_items, scale=rng.choice([1.0, 10.0]))
    outcome = numpy_outcome(mechanism.exact_outcome(
        bids, allocations, boosts, bidder_weights, with_certificate=True, jit_compile=jit_compile))
    # Exactly, not up to a tolerance: rounding may never give a negative payment or utility.
    assert (outcome["payments"] >= 0).all()
    assert (outcome["values"] - outcome["payments"] >= 0).all()
    assert (outcome["regret"] <= 1e-9).all()
    assert (outcome["regret"] >= -1e-9).all()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_bidders,num_items,demand", SHAPES)
def test_no_profitable_misreport(num_bidders, num_items, demand, seed):
    rng = np.random.RandomState(2000 + seed)
    kind = "deterministic" if seed == 2 and num_items <= 4 else "lottery"
    allocations, boosts, bidder_weights = random_menu(
        rng, num_bidders, num_items, demand, kind, menu_size=64)
    num_profiles, num_misreports = 8, 64
    true_values = random_bids(rng, num_profiles, num_bidders, num_items)
    truthful = numpy_outcome(mechanism.exact_outcome(
        true_values, allocations, boosts, bidder_weights))
    deviators = rng.randint(num_bidders, size=num_profiles)
    rows = np.arange(num_profiles)
    own = true_values[rows, deviators]  # [profiles, items]
    quarter = num_misreports // 4
    misreports = np.concatenate([  # [profiles, misreports, items]
        rng.uniform(0, 1, size=(num_profiles, 2 * quarter, num_items)),
        own[:, None] * rng.uniform(0, 2, size=(num_profiles, quarter, 1)),  # shaded / inflated
        rng.uniform(0, 5, size=(num_profiles, quarter, num_items))
        * (rng.uniform(size=(num_profiles, quarter, num_items)) < 0.5),  # sparse, large
    ], axis=1)
    bids = np.repeat(true_values[:, None], num_misreports, axis=1)
    bids[rows, :, deviators] = misreports
    deviated = numpy_outcome(mechanism.exact_outcome(
        bids.reshape(-1, num_bidders, num_items), allocations, boosts, bidder_weights))
    allocation = deviated["allocation"].reshape(num_profiles, num_misreports, num_bidders, num_items)
    payments = deviated["payments"].reshape(num_profiles, num_misreports, num_bidders)
    # Utility of the deviating bidder with TRUE values.
    utility = (np.einsum("pmj,pj->pm", allocation[rows, :, deviators], own)
               - payments[rows, :, deviators])
    truthful_utility = truthful["values"][rows, deviators] - truthful["payments"][rows, deviators]
    assert (utility.max(axis=1) <= truthful_utility + 1e-9).all()
    # Not vacuous: some misreports change the outcome (a random 1-bidder deterministic
    # menu may offer one entry only in effect).
    assert kind == "deterministic" or (deviated["menu_index"].reshape(num_profiles, -1)
            != truthful["menu_index"][:, None]).any()


# --- soft_payments --------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("num_bidders,num_items,demand", [(1, 2, "additive"), (2, 2, "additive"),
                                                          (2, 4, "unit_demand")])
def test_soft_payments_match_numpy_oracle(num_bidders, num_items, demand, temperature):
    rng = np.random.RandomState(int(temperature))
    allocations, boosts, bidder_weights = random_menu(rng, num_bidders, num_items, demand, "lottery")
    valuations = random_bids(rng, 8, num_bidders, num_items)
    payments = relaxation.soft_payments(
        valuations, allocations, boosts, bidder_weights, temperature).numpy()
    expected = numpy_soft_payments(valuations, allocations, boosts, bidder_weights, temperature)
    assert payments.shape == (8, num_bidders)
    np.testing.assert_allclose(payments, expected, rtol=1e-10, atol=1e-12)


def test_soft_payments_tend_to_exact_payments_at_low_temperature():
    # Second price on one item with well-separated bids: the relaxation converges to VCG.
    allocations = menus.deterministic_allocations(3, 1, "additive")
    bids = np.array([[[0.9], [0.5], [0.1]], [[0.2], [0.7], [0.6]]])
    boosts, bidder_weights = np.zeros(len(allocations)), np.ones(3)
    exact = mechanism.exact_outcome(bids, allocations, boosts, bidder_weights)["payments"].numpy()
    soft = relaxation.soft_payments(bids, allocations, boosts, bidder_weights, 1e4).numpy()
    np.testing.assert_allclose(soft, exact, atol=1e-9)


def test_soft_payments_are_differentiable_in_float32():
    rng = np.random.RandomState(6)
    logits = tf.Variable(rng.normal(size=(7, 3, 2)).astype(np.float32))
    boosts = tf.Variable(np.zeros(8, np.float32))
    bidder_weights = tf.Variable(np.ones(2, np.float32))
    valuations = tf.constant(random_bids(rng, 16, 2, 2).astype(np.float32))
    with tf.GradientTape() as tape:
        revenue = tf.reduce_mean(tf.reduce_sum(relaxation.soft_payments(
            valuations, menus.additive_lottery(logits), boosts, bidder_weights, 100.0), axis=1))
    gradients = tape.gradient(revenue, [logits, boosts, bidder_weights])
    assert revenue.dtype == tf.float32
    for gradient in gradients:
        assert gradient is not None and np.all(np.isfinite(gradient.numpy()))
    assert np.abs(gradients[0].numpy()).max() > 0


@pytest.mark.parametrize("change,match", [
    (dict(valuations=np.ones((4, 2))), r"`valuations` must have shape"),
    (dict(valuations=np.ones((4, 3, 2))), r"disagree on \[num_bidders, num_items\]"),
    (dict(allocations=np.ones((5, 2))), r"`allocations` must have shape"),
    (dict(boosts=np.zeros(4)), r"`boosts` must have shape \[menu_size=5\]"),
    (dict(bidder_weights=np.ones(3)), r"`bidder_weights` must have shape \[num_bidders=2\]"),
    (dict(temperature=0.0), r"`temperature` must be a finite number > 0"),
    (dict(temperature=-1.0), r"`temperature` must be a finite number > 0"),
    (dict(temperature=float("nan")), r"`temperature` must be a finite number > 0"),
    (dict(temperature=True), r"`temperature` must be a finite number > 0"),
])
def test_soft_payments_refuse_bad_input(change, match):
    arguments = dict(valuations=np.ones((4, 2, 2)), allocations=np.full((5, 2, 2), 0.5),
                     boosts=np.zeros(5), bidder_weights=np.ones(2), temperature=100.0)
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        relaxation.soft_payments(**arguments)


# --- Bad input ------------------------------------------------------------------------------

GOOD = dict(
    bids=np.full((3, 2, 2), 0.5),
    allocations=menus.deterministic_allocations(2, 2, "additive"),
    boosts=np.zeros(9),
    bidder_weights=np.array([1.0, 2.0]),
)


def with_value(name, index, value):
    array = np.array(GOOD[name], copy=True)
    array[index] = value
    return {name: array}


INVALID = tf.errors.InvalidArgumentError
BAD_INPUT = [
    # (change to the good arguments, expected error type, message pattern)
    (with_value("bids", (1, 0, 1), np.nan), INVALID, r"`bids` must be finite \(no NaN or inf\)"),
    (with_value("bids", (0, 1, 0), np.inf), INVALID, r"`bids` must be finite"),
    (with_value("bids", (2, 1, 1), -np.inf), INVALID, r"`bids` must be finite"),
    (with_value("bids", (2, 0, 0), -1e-3), INVALID, r"`bids` must be >= 0 \(negative bid\)"),
    (dict(bids=np.ones((3, 3, 2))), ValueError, r"`bids` must have shape \[batch, num_bidders=2"),
    (dict(bids=np.ones((3, 2, 5))), ValueError, r"`bids` must have shape .*num_items=2"),
    (dict(bids=np.ones((2, 2))), ValueError, r"bids\[None\]"),
    (dict(bids=np.ones((1, 3, 2, 2))), ValueError, r"`bids` must have shape"),
    (dict(bids=np.ones((3, 2, 2), np.float32)), TypeError, r"`bids` must be float64.*float32"),
    (dict(bids=np.ones((3, 2, 2), np.int64)), TypeError, r"`bids` must be float64.*int64"),
    (dict(bids=np.full((3, 2, 2), "1")), TypeError, r"`bids` must be a numeric array"),
    # Nothing silently coerced (a list mixing True and floats was a float64 array of 1.0).
    (dict(bids=[[[True, 0.5], [0.5, 0.5]]] * 3), TypeError,
     r"`bids` must hold real numbers only; got True"),
    (dict(boosts=np.zeros(9, complex)), TypeError, r"`boosts` must be a numeric array of real"),
    (dict(allocations=GOOD["allocations"].astype(np.float32)), TypeError,
     r"`allocations` must be float64"),
    (dict(boosts=np.zeros(9, np.float32)), TypeError, r"`boosts` must be float64"),
    (dict(bidder_weights=tf.ones([2])), TypeError, r"`bidder_weights` must be float64"),
    (dict(allocations=np.zeros((0, 2, 2)), boosts=np.zeros(0)), ValueError, r"empty menu"),
    (dict(allocations=np.zeros((9, 4))), ValueError, r"`allocations` must have shape \[menu_size"),
    (with_value("allocations", (3, slice(None), 0), 0.6), INVALID,
     r"`allocations` is infeasible: an item is allocated more than once"),
    (with_value("allocations", (2, 0, 1), -0.1), INVALID, r"`allocations` must be >= 0"),
    (with_value("allocations", (2, 0, 1), np.nan), INVALID, r"`allocations` must be finite"),
    (dict(boosts=np.zeros(8)), ValueError, r"`boosts` must have shape \[menu_size=9\]"),
    (with_value("boosts", 4, np.inf), INVALID, r"`boosts` must be finite"),
    (dict(bidder_weights=np.ones(3)), ValueError, r"`bidder_weights` must have shape \[num_bidders=2\]"),
    (dict(bidder_weights=np.array([1.0, 0.0])), INVALID, r"`bidder_weights` must be >= 1e-06"),
    (dict(bidder_weights=np.array([-1.0, 1.0])), INVALID, r"`bidder_weights` must be >= 1e-06"),
    (dict(bidder_weights=np.array([1.0, np.nan])), INVALID, r"`bidder_weights` must be finite"),
    (dict(micro_batch_size=0), ValueError,
     r"`micro_batch_size` must be None or an int >= 1; got 0"),
    (dict(micro_batch_size=-2), ValueError, r"`micro_batch_size` must be None or an int >= 1"),
]


@pytest.mark.parametrize("change,error,match", BAD_INPUT)
def test_exact_outcome_refuses_bad_input(change, error, match):
    arguments = dict(GOOD, **change)
    with pytest.raises(error, match=match):
        mechanism.exact_outcome(**arguments)


@pytest.mark.parametrize("change,error,match", BAD_INPUT[:4] + BAD_INPUT[18:21])
def test_regret_certificate_refuses_bad_input(change, error, match):
    arguments = dict(GOOD, **change)
    with pytest.raises(error, match=match):
        mechanism.regret_certificate(**arguments)


def test_bad_values_are_refused_inside_a_graph():
    allocations, boosts, bidder_weights = GOOD["allocations"], GOOD["boosts"], GOOD["bidder_weights"]

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float64)])
    def serve(bids):  # fully unknown shape, as a loaded signature may be fed
        return mechanism.exact_outcome(bids, allocations, boosts, bidder_weights)["payments"]

    serve(tf.constant(GOOD["bids"]))
    with pytest.raises(INVALID, match=r"`bids` has the wrong shape: expected \[batch, num_bidders=2, "
                                      r"num_items=2\]"):
        serve(tf.ones([3, 2, 3], tf.float64))
    with pytest.raises(INVALID, match=r"`bids` must be finite"):
        serve(tf.constant([[[0.5, np.nan], [0.1, 0.2]]], tf.float64))
    with pytest.raises(INVALID, match=r"`bids` must be >= 0"):
        serve(tf.constant([[[0.5, -2.0], [0.1, 0.2]]], tf.float64))


def test_validate_bids():
    bids = np.random.RandomState(0).uniform(size=(4, 3, 2))
    np.testing.assert_array_equal(validation.validate_bids(bids, 3, 2).numpy(), bids)
    with pytest.raises(ValueError, match=r"`valuations` must have shape \[batch, num_bidders=2"):
        validation.validate_bids(bids, 2, 2, name="valuations")
    with pytest.raises(TypeError, match=r"`bids` must be float64"):
        validation.validate_bids(bids.astype(np.float32), 3, 2)
    with pytest.raises(INVALID, match=r"`bids` must be >= 0"):
        validation.validate_bids(-bids, 3, 2)
    with pytest.raises(INVALID, match=r"`bids` must be finite"):
        validation.validate_bids(np.full_like(bids, np.nan), 3, 2)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float64)])
    def check(value):
        return validation.validate_bids(value, 3, 2)

    check(tf.constant(bids))
    with pytest.raises(INVALID, match=r"`bids` has the wrong shape"):
        check(tf.ones([4, 2, 3], tf.float64))


def test_ir_excess_reports_a_payment_formula_above_the_value():
    """The IR check is live: outside the AMA's domain (a negative bid, bypassing validation)
    the formula's payment exceeds the value and `ir_excess` says by how much."""
    from tf_ama.core.mechanism import _outcome_block

    allocations = tf.constant([[[0.0]], [[1.0]]], tf.float64)  # 1 bidder, 1 item: empty / sell
    boosts = tf.constant([0.0, 0.5], tf.float64)
    weights = tf.constant([1.0], tf.float64)
    outcome = _outcome_block(tf.constant([[[-0.2]]], tf.float64), allocations, boosts, weights,
                             with_certificate=True)
    # W = [0, 0.3]: entry 1 wins, the price is max(b) - b[1] = 0, the value is -0.2.
    np.testing.assert_allclose(outcome["ir_excess"], [[0.2]])
    honest = mechanism.exact_outcome(np.array([[[0.7]]]), allocations, boosts, weights,
                                     with_certificate=True)
    assert float(honest["ir_excess"][0, 0]) == 0.0
