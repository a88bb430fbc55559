"""Tests of the Keras model: training, determinism, save/load, resume, micro-batches, replicas."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from builders import compiled_model
from tf_ama.core import allocations as menus, exactness
from tf_ama.data import datasets as data
from tf_ama.core.mechanism import exact_outcome
from tf_ama.core.relaxation import soft_payments

from interrupt import Stop, StopAt
from oracle import numpy_ama

SHAPES = [
    ("additive_1x2_uniform", "lottery"),
    ("additive_2x2_uniform", "lottery"),
    ("unit_demand_2x4_spherical", "lottery"),
    ("additive_3x1_exponential", "deterministic"),
    ("unit_demand_2x2_uniform", "deterministic"),
]


SPHERICAL = "unit_demand_2x4_spherical"


_model = compiled_model


def _mirrored(devices):
    """A MirroredStrategy reducing on one device: several strategies with collective ops in
    one process can reuse each other's collective instance keys (a TF limitation that a
    training process, with its one strategy, does not meet)."""
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _parameters(model):
    return [v.numpy() for v in model.trainable_variables]


def _bids(setting, num=64, seed=3):
    return tf.cast(tf_ama.get_setting(setting).sample(num, seed), tf.float64)


@pytest.mark.parametrize("setting,menu", SHAPES)
def test_call_is_the_exact_outcome_of_the_float64_menu(setting, menu):
    model = _model(setting, menu=menu)
    bids = _bids(setting)
    outcome = model(bids)
    expected = exact_outcome(bids, *model.menu(tf.float64))
    for key in ("allocation", "payments", "menu_index"):
        np.testing.assert_array_equal(outcome[key], expected[key])
    allocations = model.exact_menu()[0]
    assert not allocations[0].any(), "entry 0 must be the empty allocation"
    assert allocations.sum(axis=1).max() <= 1 + 1e-12


def test_menu_is_built_in_float64_before_the_softmax():
    model = _model(menu_size=8, init_scale=3.0)
    allocations64 = model.menu(tf.float64)[0].numpy()
    logits = model.menu_layer.allocation_logits[0].numpy().astype(np.float64)
    shares = np.exp(logits - logits.max(axis=1, keepdims=True))
    shares /= shares.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(allocations64[1:], shares[:, :-1], rtol=1e-14, atol=1e-15)


def test_fit_traces_the_training_step_once(monkeypatch):
    """The optimizer is built before the first trace (`make_train_function`): a step that
    created Adam's variables was traced twice by `tf.function`, in every `fit`."""
    traced = []
    step = tf_ama.AffineMaximizerAuction.train_step
    monkeypatch.setattr(tf_ama.AffineMaximizerAuction, "train_step",
                        lambda self, data: traced.append(data) or step(self, data))
    model = compiled_model(menu_size=4)
    model.fit(tf_ama.fresh_valuations(32), epochs=2, steps_per_epoch=2, verbose=0)
    assert len(traced) == 1 and int(model.optimizer.iterations) == 4


@pytest.mark.slow
@pytest.mark.parametrize("setting,menu", [("additive_2x2_uniform", "lottery"),
                                          ("unit_demand_2x4_spherical", "deterministic")])
def test_revenue_rises_on_a_short_run(setting, menu):
    model = _model(setting, menu=menu, menu_size=64, seed=1)
    validation = tf_ama.valuation_dataset(setting, 4000, seed=9)
    before = model.evaluate(validation, verbose=0, return_dict=True)["revenue"]
    history = model.fit(tf_ama.fresh_valuations(512), epochs=2, steps_per_epoch=40,
                        validation_data=validation, verbose=0)
    assert history.history["val_revenue"][-1] > before + 0.02
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.slow
def test_same_seed_gives_the_same_run_and_another_seed_does_not():
    runs = []
    for seed in (5, 5, 6):
        model = _model(seed=seed)
        model.fit(tf_ama.fresh_valuations(128), epochs=1, steps_per_epoch=5, verbose=0)
        runs.append(_parameters(model))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(runs[0], runs[2]))


@pytest.mark.parametrize("setting,menu", SHAPES[:3] + SHAPES[4:])
@pytest.mark.slow
def test_keras_save_and_load_gives_bit_identical_outcomes(tmp_path, setting, menu):
    model = _model(setting, menu=menu, seed=2)
    model.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=3, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    bids = _bids(setting, 200)
    for key in ("allocation", "payments", "menu_index"):
        np.testing.assert_array_equal(loaded(bids)[key], model(bids)[key])


def test_from_menu_builds_a_fixed_ama_that_round_trips(tmp_path):
    # VCG with a reserve of 0.3 per allocated item: boosts = -0.3 * number of items allocated.
    allocations = menus.deterministic_allocations(2, 2, "additive")
    boosts = -0.3 * allocations.sum(axis=(1, 2))
    candidates = np.random.RandomState(0).uniform(0.1, 10, 100)
    rounded = tf.exp(tf.constant(np.log(candidates))).numpy() != candidates
    weights = np.array([1.0, candidates[rounded][0]])  # a weight that exp(log(w)) does not return
    model = tf_ama.AffineMaximizerAuction.from_menu("additive_2x2_uniform", allocations, boosts, weights)
    assert model.trainable_variables == []
    got = [np.asarray(t) for t in model.menu(tf.float64)]
    np.testing.assert_array_equal(got[0], allocations)
    np.testing.assert_array_equal(got[1], boosts)
    np.testing.assert_array_equal(got[2], weights)  # served exactly, not exp(log(w))
    path = os.path.join(tmp_path, "fixed.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    bids = _bids("additive_2x2_uniform", 100)
    np.testing.assert_array_equal(loaded(bids)["payments"], model(bids)["payments"])
    # One bidder values item 0 at 1, the other nothing: weighted welfare 1 - 0.3 wins,
    # the payment is the reserve 0.3.
    outcome = model(np.array([[[1.0, 0.0], [0.0, 0.0]]]))
    np.testing.assert_allclose(outcome["payments"], [[0.3, 0.0]], atol=1e-15)


def test_from_menu_refuses_an_infeasible_menu():
    allocations = np.zeros((2, 2, 2))
    allocations[1, :, 0] = 0.7  # item 0 allocated 1.4 times
    with pytest.raises(ValueError, match="infeasible"):
        tf_ama.AffineMaximizerAuction.from_menu("additive_2x2_uniform", allocations,
                                                 np.zeros(2), np.ones(2))


def test_from_menu_refuses_weights_outside_the_exactness_contract():
    # Issue #12: a weight of 5e-324 was accepted, and every request to its export refused.
    allocations = menus.deterministic_allocations(2, 2, "additive")
    with pytest.raises(ValueError, match=r"`bidder_weights` must lie in \[1e-06, 1e\+06\]"):
        tf_ama.AffineMaximizerAuction.from_menu("additive_2x2_uniform", allocations,
                                                 np.zeros(len(allocations)), [5e-324, 1.0])


def test_learned_weights_stay_in_the_exactness_contract():
    # exp(log w) is clipped to [MIN, MAX]_BIDDER_WEIGHT: a drifted weight is never refused.
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=8,
                                          learn_bidder_weights=True)
    model.bidder_weights_layer.log_weights.assign([-30.0, 20.0])
    weights = model.menu(tf.float64)[2].numpy()
    assert weights.tolist() == [exactness.MIN_BIDDER_WEIGHT, exactness.MAX_BIDDER_WEIGHT]
    model.bidder_weights_layer.log_weights.assign([0.3, -0.2])  # inside the range: exactly exp(log w)
    np.testing.assert_array_equal(model.menu(tf.float64)[2].numpy(),
                                  np.exp(np.array([0.3, -0.2], np.float32).astype(np.float64)))
    assert np.isfinite(model(np.ones((2, 2, 2)))["payments"].numpy()).all()


@pytest.mark.parametrize("setting", ["additive_2x2_uniform", "unit_demand_2x4_spherical"])
@pytest.mark.slow
def test_micro_batch_gradient_equals_full_batch_gradient(setting):
    valuations = tf_ama.get_setting(setting).sample(96, seed=4)
    dataset = tf.data.Dataset.from_tensors(valuations)
    updated = []
    for micro in (None, 40):  # 96 = 40 + 40 + 16: unequal micro-batches
        model = tf_ama.AffineMaximizerAuction(setting, menu_size=16, seed=3,
                                              micro_batch_size=micro, learn_bidder_weights=True)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        before = _parameters(model)
        model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
        updated.append([b - a for a, b in zip(_parameters(model), before)])  # = gradient
    for full, accumulated in zip(*updated):
        np.testing.assert_allclose(accumulated, full, rtol=2e-4, atol=1e-6)
    assert any(np.abs(g).max() > 1e-4 for g in updated[0])


def test_soft_payments_match_the_formula_in_float64():
    rng = np.random.RandomState(0)
    m, n, k, b = 3, 2, 7, 5
    values = rng.rand(b, m, n)
    allocations = menus.additive_lottery(tf.constant(rng.randn(k - 1, m + 1, n))).numpy()
    boosts = np.concatenate([[0.0], rng.randn(k - 1) * 0.1])
    weights = rng.rand(m) + 0.5
    lam = 50.0
    got = soft_payments(values, allocations, boosts, weights, lam).numpy()
    for s in range(b):
        u = np.einsum("ij,kij->ik", values[s], allocations)
        welfare = weights @ u + boosts
        pi = np.exp(lam * (welfare - welfare.max()))
        pi /= pi.sum()
        for i in range(m):
            others = welfare - weights[i] * u[i]
            pi_i = np.exp(lam * (others - others.max()))
            pi_i /= pi_i.sum()
            assert got[s, i] == pytest.approx((pi_i @ others - pi @ others) / weights[i], abs=1e-12)


def test_resume_after_interruption_ends_where_an_uninterrupted_run_does(tmp_path):
    def fit(callbacks):
        model = _model(seed=7)
        model.fit(tf_ama.fresh_valuations(64), epochs=4, steps_per_epoch=3, verbose=0,
                  callbacks=callbacks)
        return model

    straight = fit([])
    backup = keras.callbacks.BackupAndRestore(os.path.join(tmp_path, "backup"))
    with pytest.raises(Stop):
        fit([backup, StopAt(2)])  # stops after epoch 2 of 4 was backed up
    resumed = fit([keras.callbacks.BackupAndRestore(os.path.join(tmp_path, "backup"))])
    assert int(resumed.optimizer.iterations.numpy()) == 12
    for a, b in zip(_parameters(straight), _parameters(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_mirrored_strategy_trains_and_replicas_draw_different_samples():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py configures two logical CPU devices"
    strategy = _mirrored([d.name for d in devices[:2]])
    with strategy.scope():
        model = _model(menu_size=16, seed=1, micro_batch_size=32)
    history = model.fit(tf_ama.fresh_valuations(128), epochs=1, steps_per_epoch=3, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert int(model.optimizer.iterations.numpy()) == 3

    per_replica = strategy.run(tf.function(lambda: data.step_valuations(
        tf.zeros([8, 0]), model.setting, model.valuation_distribution, model.data_seed, 0)[0]))
    first, second = strategy.experimental_local_results(per_replica)
    assert first.shape == second.shape == (8, 2, 2)
    assert not np.array_equal(first.numpy(), second.numpy())


@pytest.mark.parametrize("kwargs,match", [
    ({"menu": "neural"}, "menu"),
    ({"menu_size": 0}, "menu_size"),
    ({"menu_size": 1}, "menu_size"),
    ({"init_scale": float("nan")}, "init_scale"),
    ({"boost_init_scale": -1.0}, "boost_init_scale"),
    ({"boost_init_scale": True}, "boost_init_scale"),
    ({"temperature": -1.0}, "temperature"),
    ({"micro_batch_size": 0}, "micro_batch_size"),
    ({"seed": "zero"}, "seed"),
])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tf_ama.AffineMaximizerAuction("additive_2x2_uniform", **kwargs)


def test_unknown_setting_and_bad_bids_are_refused():
    with pytest.raises(ValueError, match="Unknown setting"):
        tf_ama.AffineMaximizerAuction("additive_9x9_uniform")
    model = _model()
    with pytest.raises(TypeError, match="float64"):
        model(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        model(-np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="batch_size"):
        tf_ama.fresh_valuations(0)


@pytest.mark.slow
def test_initial_logits_are_rebuilt_from_the_seed_and_the_winning_ticket_uses_them():
    model = _model(menu_size=12, seed=4)
    initial = [v.numpy() for v in model.menu_layer.allocation_logits]
    model.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=3, verbose=0)
    assert not np.array_equal(model.menu_layer.allocation_logits[0].numpy(), initial[0])
    for rebuilt, original in zip(model.initial_allocation_logits(), initial):
        np.testing.assert_array_equal(rebuilt, original)
    ticket = model.winning_ticket([0, 7, 3], seed=11)
    assert ticket.menu_size == 3 and ticket.data_seed == 11
    np.testing.assert_array_equal(ticket.menu_layer.allocation_logits[0].numpy(), initial[0][[2, 6]])
    with pytest.raises(ValueError, match="entries"):
        model.winning_ticket([12])


@pytest.mark.slow
def test_random_initial_boosts_are_seeded_and_the_winning_ticket_keeps_them():
    assert not _model(seed=4).menu_layer.boosts.numpy().any()  # default: every boost starts at 0
    model = _model(menu_size=400, seed=4, boost_init_scale=2.0)
    boosts = model.menu_layer.boosts.numpy()
    np.testing.assert_array_equal(boosts, _model(menu_size=400, seed=4,
                                                 boost_init_scale=2.0).menu_layer.boosts.numpy())
    assert not np.array_equal(boosts, _model(menu_size=400, seed=5,
                                             boost_init_scale=2.0).menu_layer.boosts.numpy())
    assert abs(boosts.std() - 2.0) < 0.3 and abs(boosts.mean()) < 0.3
    # The logits do not depend on the boosts' scale: same seed, same initial lotteries.
    np.testing.assert_array_equal(model.menu_layer.allocation_logits[0].numpy(),
                                  _model(menu_size=400, seed=4).menu_layer.allocation_logits[0].numpy())
    model.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=2, verbose=0)
    ticket = model.winning_ticket([5, 9])
    np.testing.assert_array_equal(ticket.menu_layer.boosts.numpy(), boosts[[4, 8]])
    assert ticket.menu_layer.boost_init_scale == 2.0


@pytest.mark.slow
def test_data_seed_changes_the_samples_but_not_the_initialization():
    a, b = _model(seed=3, data_seed=1), _model(seed=3, data_seed=2)
    np.testing.assert_array_equal(a.menu_layer.allocation_logits[0].numpy(), b.menu_layer.allocation_logits[0].numpy())
    for model in (a, b):
        model.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=2, verbose=0)
    assert not np.array_equal(a.menu_layer.allocation_logits[0].numpy(), b.menu_layer.allocation_logits[0].numpy())


def test_a_deterministic_menu_too_large_to_enumerate_is_refused_with_its_size():
    with pytest.raises(ValueError, match="60,466,176"):
        tf_ama.AffineMaximizerAuction("additive_5x10_uniform", menu="deterministic")


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_two_replicas_take_the_same_step_as_one_device_on_the_global_batch(weighted):
    """Gradients are summed across replicas, so each replica's mean counts with its share of
    the global batch: one SGD step on a fixed global batch must not depend on the replica
    count, also with sample weights that give the two halves very different totals."""
    valuations = tf_ama.get_setting("additive_2x2_uniform").sample(64, seed=5)
    data = (valuations, (), tf.range(64.0) ** 2 / 1e3) if weighted else valuations
    _assert_two_replicas_match_one_device("additive_2x2_uniform", tf.data.Dataset.from_tensors(data))


def _assert_two_replicas_match_one_device(setting, dataset):
    """One SGD step and its reported loss and val_revenue do not depend on the replicas."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    updates, metrics = [], []
    for strategy in (tf.distribute.OneDeviceStrategy(devices[0]),
                     _mirrored(devices)):
        with strategy.scope():
            model = tf_ama.AffineMaximizerAuction(setting, menu_size=16, seed=2,
                                                  micro_batch_size=None)
            model.compile(optimizer=keras.optimizers.SGD(1.0))
        before = _parameters(model)
        history = model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0,
                            validation_data=dataset)
        updates.append([b - a for a, b in zip(_parameters(model), before)])
        metrics.append([history.history["loss"][0], history.history["val_revenue"][0]])
    for single, mirrored in zip(*updates):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(metrics[1], metrics[0], rtol=1e-5)


@pytest.mark.slow
def test_two_replicas_train_and_validate_on_the_expectation_dataset_like_one_device():
    _assert_two_replicas_match_one_device(SPHERICAL,
                                          tf_ama.expectation_dataset(SPHERICAL, replicas=2))


@pytest.mark.slow
def test_the_expectation_dataset_validates_to_the_exact_expected_revenue():
    model = _model(SPHERICAL, seed=1)
    dataset = tf_ama.expectation_dataset(SPHERICAL)
    model.fit(dataset.repeat(), epochs=1, steps_per_epoch=5, verbose=0)
    revenue = model.evaluate(dataset, verbose=0, return_dict=True)["revenue"]
    # Oracle: the probability-weighted sum of the loop AMA's payments over every profile.
    profiles, probabilities = tf_ama.data.distributions.finite_support(
        tf_ama.get_setting(SPHERICAL).distribution_fn(tf.float64))
    payments = numpy_ama(profiles, *model.exact_menu())["payments"]
    expected = float(np.sum(probabilities * payments.sum(axis=1)))
    assert expected > 0.1
    assert revenue == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_a_step_on_the_expectation_dataset_equals_one_on_every_profile_repeated():
    """Base 2: the probabilities are multiplicities / 961, so the 961 profiles with their
    multiplicities are the same expectation; one SGD step must be the same."""
    profiles, probabilities = tf_ama.data.distributions.finite_support(
        tf_ama.get_setting(SPHERICAL).distribution_fn(tf.float64))
    counts = np.rint(probabilities * 961).astype(int)
    assert counts.sum() == 961 and np.allclose(counts / 961, probabilities, rtol=1e-12, atol=0)
    datasets = (tf_ama.expectation_dataset(SPHERICAL),
                tf.data.Dataset.from_tensors(tf.constant(np.repeat(profiles, counts, 0), tf.float32)))
    updates = []
    for dataset in datasets:
        model = tf_ama.AffineMaximizerAuction(SPHERICAL, menu_size=16, seed=3)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        before = _parameters(model)
        history = model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
        updates.append([b - a for a, b in zip(_parameters(model), before)])
        updates[-1].append(history.history["loss"])
    for weighted, repeated in zip(*updates):
        np.testing.assert_allclose(weighted, repeated, rtol=1e-4, atol=1e-7)
    assert max(np.abs(u).max() for u in updates[0]) > 1e-4


@pytest.mark.slow
def test_a_weightless_step_under_xla_changes_nothing():
    """XLA drops the asserts; the step must then be a no-op, not write NaN."""
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=16, seed=1,
                                          micro_batch_size=None)
    model.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=True)
    before = _parameters(model)
    dataset = tf.data.Dataset.from_tensors((tf.ones([8, 2, 2]), (), tf.zeros([8])))
    model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
    for a, b in zip(_parameters(model), before):
        np.testing.assert_array_equal(a, b)
