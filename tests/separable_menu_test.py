"""The item-separable family as menu kinds (issue 14): `"separable"` and `"lottery+separable"`
layers, the model's menu, training, evaluation and pruning with the family.

Oracles: the loop AMA over the enumerated family (`oracle.numpy_ama(..., separable_boosts)`),
automatic differentiation of `relaxation.soft_payments` for the training kernel, and the
separate-Myerson baseline for the family at its initialization.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracle import numpy_ama

import tf_ama
from tf_ama.core import allocations as menus
from tf_ama.data.reserves import separate_reserves
from tf_ama.evaluation.baselines import baseline_details
from tf_ama.core.relaxation import soft_payments
from tf_ama.menus.layers import LotterySeparableMenu, SeparableMenu
from tf_ama.core.relaxation import batched_revenue_and_gradients

A22 = "additive_2x2_uniform"


def _joined(setting=A22, **options):
    """A lottery+separable model whose two parts both win on uniform bids."""
    options = {"menu_size": 16, "seed": 1, "init_scale": 2.0, **options}
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery+separable", **options)
    size = model.menu_size - 1
    model.menu_layer.boosts.assign(np.linspace(-0.2, 0.5, size))
    return model


@pytest.mark.slow
def test_the_family_alone_starts_at_separate_myerson():
    """c[nobody, j] = the item's separate-Myerson reserve, c[bidder, j] = 0: on the
    baseline's own sample the auction earns the baseline's revenue."""
    model = tf_ama.AffineMaximizerAuction(A22, menu="separable")
    reserves = separate_reserves(A22)
    assert model.menu_layer.reserves == reserves
    c = model.exact_menu().separable_boosts
    np.testing.assert_array_equal(c[:-1], 0.0)
    np.testing.assert_array_equal(c[-1], np.float32(reserves))
    report = tf_ama.evaluate(model, num_samples=100_000, seed=1, baselines=False)
    baseline = baseline_details(A22, num_samples=100_000, seed=1)["separate_myerson"]
    # The reserves are the baseline's up to float32 (a profile between the two would differ).
    assert abs(report.revenue - baseline.revenue) < 1e-6
    assert report.family_share == 1.0 and report.ir_violations == 0
    assert report.max_regret <= 1e-9


def test_outcome_equals_the_loop_oracle_over_the_enumerated_family():
    model = _joined()
    bids = np.random.default_rng(0).uniform(0, 1.5, size=(300, 2, 2))
    served = {k: v.numpy() for k, v in model(tf.constant(bids)).items()}
    oracle = numpy_ama(bids, *model.exact_menu())
    assert np.array_equal(served["menu_index"], oracle["menu_index"])
    assert np.array_equal(served["allocation"], oracle["allocation"])
    np.testing.assert_allclose(served["payments"], oracle["payments"], rtol=0, atol=1e-13)
    family = served["menu_index"] >= model.menu_size
    assert 0.1 < family.mean() < 0.9


@pytest.mark.parametrize("kind", ["separable", "lottery+separable"])
def test_unit_demand_is_refused_by_name(kind):
    with pytest.raises(ValueError, match="for additive bidders.*matchings"):
        tf_ama.AffineMaximizerAuction("unit_demand_2x2_uniform", menu=kind)


@pytest.mark.parametrize("reserves, message", [
    ([0.5], r"one value per item \(2\)"),
    ([0.5, float("nan")], r"`reserves\[1\]` must be a finite number"),
    ([0.5, "0.5"], r"`reserves\[1\]` must be a finite number"),
])
def test_bad_reserves_are_refused_by_name(reserves, message):
    with pytest.raises(ValueError, match=message):
        SeparableMenu(2, 2, reserves=reserves)


def test_a_layer_without_reserves_starts_at_vcg():
    np.testing.assert_array_equal(SeparableMenu(2, 3).family_boosts.numpy(), 0.0)


@pytest.mark.parametrize("kind", ["separable", "lottery+separable"])
def test_layers_and_models_round_trip(kind, tmp_path):
    model = tf_ama.AffineMaximizerAuction(A22, menu=kind, menu_size=8, seed=3,
                                          reserves=[0.4, 0.6])
    model.menu_layer.family_boosts.assign([[0.1, -0.2], [0.0, 0.3], [0.4, 0.6]])
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = tf_ama.AffineMaximizerAuction.from_config(config)
    assert rebuilt.menu_layer.get_config() == model.menu_layer.get_config()
    path = str(tmp_path / "joined.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.menu_layer) is type(model.menu_layer)
    for got, want in zip(loaded.exact_menu(), model.exact_menu(), strict=True):
        assert np.array_equal(got, want)


def test_from_menu_takes_the_family_and_checks_it():
    allocations, boosts = np.zeros((1, 2, 2)), np.zeros(1)
    c = np.array([[0.0, 0.1], [0.2, 0.0], [0.5, 0.5]])
    model = tf_ama.AffineMaximizerAuction.from_menu(A22, allocations, boosts, np.ones(2), c)
    assert model.menu_layer.separable
    np.testing.assert_array_equal(model.exact_menu().separable_boosts, c)
    with pytest.raises(ValueError, match=r"`separable_boosts` must have shape \[num_bidders "
                                         r"\+ 1=3, num_items=2\]"):
        tf_ama.AffineMaximizerAuction.from_menu(A22, allocations, boosts, np.ones(2), c[:2])
    for bad, message in ((np.where(c > 0.4, np.nan, c), "`separable_boosts` must be finite"),
                         ([[0, 1], [0, True], [0, 0]], "`separable_boosts` must hold real numbers"),
                         (np.full((3, 2), 1e38), r"sum_j max_o \|c\[o, j\]\| <= 1e\+38; got 2e\+38")):
        with pytest.raises(ValueError, match=message):
            tf_ama.AffineMaximizerAuction.from_menu(A22, allocations, boosts, np.ones(2), bad)
    with pytest.raises(ValueError, match="the item-separable family is for additive bidders"):
        tf_ama.AffineMaximizerAuction.from_menu("unit_demand_2x2_uniform", allocations, boosts,
                                                np.ones(2), c)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
@pytest.mark.parametrize("num_bidders, num_items, menu_size, temperature", [
    (2, 3, 5, 3.0), (3, 2, 7, 30.0), (1, 3, 4, 100.0), (2, 2, 1, 10.0)])
def test_the_training_kernel_with_the_family_equals_autodiff(num_bidders, num_items, menu_size,
                                                             temperature, jit_compile):
    """`relaxation.joined_revenue_and_gradients` (explicit part by hand, family by autodiff)
    against automatic differentiation of the plain `soft_payments`, float64, with sample
    weights, micro-batches and a remainder."""
    rng = np.random.default_rng(num_bidders * 10 + num_items)
    valuations = tf.constant(rng.uniform(size=(17, num_bidders, num_items)))
    allocations = (menus.additive_lottery(tf.constant(
        rng.normal(size=(menu_size - 1, num_bidders + 1, num_items)))) if menu_size > 1
        else tf.zeros([1, num_bidders, num_items], tf.float64))
    boosts = tf.constant(np.r_[0.0, 0.3 * rng.normal(size=menu_size - 1)])
    weights = tf.constant(np.exp(0.3 * rng.normal(size=num_bidders)))
    c = tf.constant(0.3 * rng.normal(size=(num_bidders + 1, num_items)))
    sample_weight = tf.constant(rng.uniform(size=17))
    menu = [allocations, boosts, weights, c]
    with tf.GradientTape() as tape:
        tape.watch(menu)
        per_profile = tf.reduce_sum(
            soft_payments(valuations, allocations, boosts, weights, temperature, c), axis=1)
        expected = tf.reduce_sum(sample_weight * per_profile) / tf.reduce_sum(sample_weight)
    expected_gradients = tape.gradient(expected, menu)
    for micro in (4,) if jit_compile else (None, 4):  # (each XLA compilation takes seconds)
        revenue, gradients = batched_revenue_and_gradients(
            valuations, allocations, boosts, weights, temperature, micro_batch_size=micro,
            jit_compile=jit_compile, sample_weight=sample_weight, separable_boosts=c)
        np.testing.assert_allclose(revenue.numpy(), expected.numpy(), rtol=1e-12, atol=1e-14)
        assert len(gradients) == 4
        for got, want in zip(gradients, expected_gradients, strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-13)


@pytest.mark.slow
def test_a_joined_model_trains_deterministically_and_learns_its_family():
    def trained():
        model = _joined(jit_objective=False)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        model.fit(tf_ama.fresh_valuations(256), epochs=1, steps_per_epoch=4, verbose=0)
        return model

    first, second = trained(), trained()
    before = _joined().exact_menu()
    after = first.exact_menu()
    assert not np.array_equal(after.separable_boosts, before.separable_boosts)
    assert not np.array_equal(after.boosts, before.boosts)
    for got, want in zip(second.exact_menu(), after, strict=True):
        assert np.array_equal(got, want)
    assert all(np.all(np.isfinite(t)) for t in after if t is not None)


@pytest.mark.slow
def test_evaluate_menu_usage_and_prune_with_the_family():
    model = _joined()
    report = tf_ama.evaluate(model, num_samples=4000, seed=5, baselines=False)
    entries = tf_ama.menu_usage(model, num_samples=4000, seed=5)
    family = [e for e in entries if e.family]
    assert family and len(family) < len(entries)
    assert report.family_share == pytest.approx(sum(e.share for e in family))
    assert report.entries_used == len(entries) and report.ir_violations == 0
    assert "of the profiles" in report.format_table()
    c = model.exact_menu().separable_boosts
    for entry in family:  # a 0/1 allocation whose boost is sum_j c[owner_j, j]
        allocation = np.asarray(entry.allocation)
        owners = [int(np.flatnonzero(allocation[:, j])[0]) if allocation[:, j].any() else 2
                  for j in range(2)]
        assert entry.boost == pytest.approx(c[owners, [0, 1]].sum(), abs=1e-15)
        assert not entry.is_lottery
    assert "(separable family)" in tf_ama.format_menu_table(entries)
    pruned = tf_ama.prune(model, num_samples=4000, seed=5)
    assert pruned.menu_size < model.menu_size
    np.testing.assert_array_equal(pruned.exact_menu().separable_boosts, c)
    bids = tf.cast(model.setting.sample(4000, 5), tf.float64)
    full, small = model(bids), pruned(bids)
    index = small["menu_index"].numpy()
    kept = pruned.kept_indices
    mapped = np.where(index < len(kept), kept[np.minimum(index, len(kept) - 1)],
                      index - len(kept) + model.menu_size)
    assert np.array_equal(mapped, full["menu_index"].numpy())
    np.testing.assert_allclose(small["payments"].numpy(), full["payments"].numpy(), rtol=0,
                               atol=1e-12)


def test_a_joined_menu_is_a_lottery_menu_with_the_family():
    layer = LotterySeparableMenu(2, 2, menu_size=4, reserves=[0.5, 0.5])
    names = [v.name for v in layer.trainable_variables]
    assert names == ["allocation_logits", "boosts", "separable_boosts"]
    ticket = tf_ama.AffineMaximizerAuction(A22, menu=layer).winning_ticket([2])
    assert ticket.menu_layer.kind == "lottery+separable" and ticket.menu_size == 2
