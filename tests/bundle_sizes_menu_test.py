"""The bundle-size family as a menu kind (`"bundle-sizes"`, issue 33): the layer, the model's
menu, its training relaxation, evaluation, pruning, Keras saving and export.

Oracles: the loop AMA over the enumerated family (`oracle.numpy_ama(..., c, g)`), the
softmax over the enumerated family for the relaxation's statistics, automatic
differentiation of `relaxation.soft_payments` for the training kernel, and the
item-separable kind at the same `c` for the family at its initialization.
"""

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracle import family_boosts, numpy_ama
from scipy.special import logsumexp, softmax

import tf_ama
from tf_ama.core import bundle_sizes
from tf_ama.core.relaxation import batched_revenue_and_gradients, soft_payments
from tf_ama.menus.layers import BundleSizesMenu
from tf_ama.serving.export import ExportError, export_saved_model, load_menu_model

A23 = "additive_2x3_uniform"


def _model(seed=2, **options):
    """A bundle-sizes model with `c` and `g` away from their start, so that bundles of
    every size win on uniform bids."""
    model = tf_ama.AffineMaximizerAuction(A23, menu="bundle-sizes", seed=seed, **options)
    rng = np.random.default_rng(seed)
    model.menu_layer.family_boosts.assign(0.2 * rng.normal(size=(3, 3)).astype(np.float32))
    model.menu_layer.bundle_size_boosts.assign(0.3 * rng.normal(size=(3, 4)).astype(np.float32))
    return model


def test_the_kind_starts_at_the_item_separable_family():
    model = tf_ama.AffineMaximizerAuction(A23, menu="bundle-sizes")
    separable = tf_ama.AffineMaximizerAuction(A23, menu="separable")
    menu = model.exact_menu()
    np.testing.assert_array_equal(menu.size_boosts, np.zeros((3, 4)))
    np.testing.assert_array_equal(menu.separable_boosts, separable.exact_menu().separable_boosts)
    bids = tf.constant(np.random.default_rng(0).uniform(size=(500, 2, 3)))
    got, want = model(bids), separable(bids)
    for key in ("menu_index", "allocation"):
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    # The program sums each welfare in another order than the item-separable family: the
    # last bit may differ (bit for bit on exact inputs: tests/bundle_sizes_test.py).
    np.testing.assert_allclose(got["payments"].numpy(), want["payments"].numpy(), rtol=0,
                               atol=1e-15)


def test_outcome_equals_the_loop_oracle_over_the_enumerated_family():
    model = _model()
    bids = np.random.default_rng(1).uniform(0, 1.5, size=(300, 2, 3))
    served = {k: v.numpy() for k, v in model(tf.constant(bids)).items()}
    oracle = numpy_ama(bids, *model.exact_menu())
    assert np.array_equal(served["menu_index"], oracle["menu_index"])
    np.testing.assert_allclose(served["payments"], oracle["payments"], rtol=0, atol=1e-13)
    sizes = served["allocation"].sum(axis=2)
    assert {0, 1, 2, 3} <= set(sizes.ravel().astype(int).tolist())  # every bundle size wins


@pytest.mark.parametrize("num_bidders,num_items", [(1, 3), (2, 3), (3, 2)])
def test_the_soft_statistics_are_the_softmax_over_the_enumerated_family(num_bidders, num_items):
    rng = np.random.default_rng(num_bidders + 7 * num_items)
    v = rng.uniform(size=(5, num_bidders, num_items))
    c = rng.normal(size=(num_bidders + 1, num_items))
    g = rng.normal(size=(num_bidders + 1, num_items + 1))
    w, lam = rng.uniform(0.5, 2.0, num_bidders), 3.0
    got = bundle_sizes.soft_family(tf.constant(v), tf.constant(w), tf.constant(c),
                                   tf.constant(g), lam)
    codes = np.array(list(itertools.product(range(num_bidders + 1), repeat=num_items)))
    allocations = (codes[:, None, :] == np.arange(1, num_bidders + 1)[None, :, None])
    values = np.einsum("kin,bin->bik", allocations.astype(float), v)
    welfare = np.einsum("i,bik->bk", w, values) + family_boosts(c, g=g)
    others = welfare[:, None, :] - w[None, :, None] * values
    want = (logsumexp(lam * welfare, axis=1),
            np.einsum("bk,bik->bi", softmax(lam * welfare, axis=1), others),
            logsumexp(lam * others, axis=2),
            np.einsum("bik,bik->bi", softmax(lam * others, axis=2), others))
    for name, got_value, want_value in zip(("log_z", "with", "log_z_others", "without"),
                                           got, want):
        np.testing.assert_allclose(got_value.numpy(), want_value, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_training_kernel_equals_automatic_differentiation(jit_compile):
    rng = np.random.default_rng(4)
    valuations = tf.constant(rng.uniform(size=(9, 2, 3)))
    allocations = tf.constant(np.concatenate([np.zeros((1, 2, 3)),
                                              rng.uniform(0, 0.5, size=(3, 2, 3))]))
    boosts = tf.constant(np.r_[0.0, 0.3 * rng.normal(size=3)])
    weights = tf.constant([1.0, 1.3], tf.float64)
    c, g = tf.constant(0.3 * rng.normal(size=(3, 3))), tf.constant(0.3 * rng.normal(size=(3, 4)))
    sample_weight = tf.constant(rng.uniform(size=9))
    menu = [allocations, boosts, weights, c, g]
    with tf.GradientTape() as tape:
        tape.watch(menu)
        per_profile = tf.reduce_sum(soft_payments(valuations, *menu[:3], 5.0, c, g), axis=1)
        expected = tf.reduce_sum(sample_weight * per_profile) / tf.reduce_sum(sample_weight)
    expected_gradients = tape.gradient(expected, menu)
    for micro in (4,) if jit_compile else (None, 4):  # (each XLA compilation takes seconds)
        revenue, gradients = batched_revenue_and_gradients(
            valuations, *menu[:3], 5.0, micro_batch_size=micro, jit_compile=jit_compile,
            sample_weight=sample_weight, separable_boosts=c, size_boosts=g)
        np.testing.assert_allclose(revenue.numpy(), expected.numpy(), rtol=1e-12)
        assert len(gradients) == 5
        for got, want in zip(gradients, expected_gradients, strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-13)


def test_fit_learns_the_size_boosts_deterministically():
    def trained():
        model = tf_ama.AffineMaximizerAuction(A23, menu="bundle-sizes", jit_objective=False)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        model.fit(tf_ama.fresh_valuations(128), epochs=1, steps_per_epoch=3, verbose=0)
        return model

    first, second = trained(), trained()
    after = first.exact_menu()
    assert np.any(after.size_boosts != 0) and np.all(np.isfinite(after.size_boosts))
    for got, want in zip(second.exact_menu(), after, strict=True):
        assert np.array_equal(got, want)


def test_layers_models_and_keras_files_round_trip(tmp_path):
    model = _model()
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = tf_ama.AffineMaximizerAuction.from_config(config)
    assert rebuilt.menu_layer.get_config() == model.menu_layer.get_config()
    path = str(tmp_path / "sizes.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.menu_layer) is BundleSizesMenu
    for got, want in zip(loaded.exact_menu(), model.exact_menu(), strict=True):
        assert np.array_equal(got, want)


def test_from_menu_takes_the_size_boosts_and_checks_them():
    menu = _model().exact_menu()
    fixed = tf_ama.AffineMaximizerAuction.from_menu(A23, *menu)
    assert fixed.menu_layer.bundle_sizes
    np.testing.assert_array_equal(fixed.exact_menu().size_boosts, menu.size_boosts)
    for bad, message in ((menu.size_boosts[:, :3], r"`size_boosts` must have shape \[num_bidders"
                                                   r" \+ 1=3, num_items \+ 1=4\]"),
                         (np.full((3, 4), np.nan), "`size_boosts` must be finite"),
                         (np.full((3, 4), 1e38), r"sum_o max_k \|g\[o, k\]\|")):
        with pytest.raises(ValueError, match=message):
            tf_ama.AffineMaximizerAuction.from_menu(A23, *menu[:4], bad)
    with pytest.raises(ValueError, match="give `separable_boosts` too"):
        tf_ama.AffineMaximizerAuction.from_menu(A23, *menu[:3], None, menu.size_boosts)


def test_unit_demand_and_too_many_count_states_are_refused():
    with pytest.raises(ValueError, match="for additive bidders"):
        tf_ama.AffineMaximizerAuction("unit_demand_2x2_uniform", menu="bundle-sizes")
    with pytest.raises(ValueError, match="count vectors"):
        BundleSizesMenu(12, 12)


def test_menu_usage_decodes_the_family_boosts():
    model = _model()
    entries = tf_ama.menu_usage(model, num_samples=2000, seed=5)
    menu = model.exact_menu()
    family = [e for e in entries if e.family]
    assert len(family) > 3
    for entry in family:
        allocation = np.asarray(entry.allocation)
        owners = [int(np.flatnonzero(allocation[:, j])[0]) if allocation[:, j].any() else 2
                  for j in range(3)]
        counts = allocation.sum(axis=1).astype(int)
        want = (menu.separable_boosts[owners, [0, 1, 2]].sum()
                + menu.size_boosts[[0, 1], counts].sum() + menu.size_boosts[2, 3 - counts.sum()])
        assert entry.boost == pytest.approx(want, abs=1e-12)


def test_the_polish_refuses_the_family_by_name():
    from tf_ama.training.polish import polish

    with pytest.raises(ValueError, match="does not cover the bundle-size family"):
        polish(_model(), np.zeros((4, 2, 3)))


def test_export_serves_the_family_and_loads_back(tmp_path):
    pytest.importorskip("tensorflow_serving.apis")
    model = _model()
    path = export_saved_model(model, tmp_path / "sizes", prune=False)
    loaded = tf.saved_model.load(str(path))
    menu = loaded.signatures["menu"](dummy=tf.constant(0))
    assert set(menu) == {"allocations", "boosts", "bidder_weights", "separable_boosts",
                         "size_boosts"}
    bids = np.random.default_rng(8).uniform(size=(100, 2, 3))
    served = loaded.signatures["serving_default"](bids=tf.constant(bids))
    oracle = numpy_ama(bids, *model.exact_menu())
    assert np.array_equal(served["menu_index"].numpy(), oracle["menu_index"])
    np.testing.assert_allclose(served["payments"].numpy(), oracle["payments"], rtol=0,
                               atol=1e-13)
    eager = model(tf.constant(bids))  # what the SavedModel serves, bit for bit
    for key in ("allocation", "payments", "menu_index"):
        np.testing.assert_array_equal(served[key].numpy(), eager[key].numpy(), err_msg=key)
    owners = served["owners"].numpy()
    allocation = served["allocation"].numpy()
    for profile in range(len(bids)):
        np.testing.assert_array_equal(
            allocation[profile], owners[profile][None, :] == np.arange(1, 3)[:, None])
    rebuilt = load_menu_model(path)
    assert rebuilt.menu_layer.bundle_sizes
    for got, want in zip(rebuilt.exact_menu(), model.exact_menu(), strict=True):
        assert np.array_equal(got, want)
    model.menu_layer.bundle_size_boosts.assign(np.full((3, 4), 5e37, np.float32))
    with pytest.raises(ExportError, match=r"Not exported: .*`size_boosts` must be finite"):
        export_saved_model(model, tmp_path / "huge")


def test_a_lottery_menu_joins_the_family_in_the_phases_of_lottery_separable():
    from tf_ama.training.joining import join, lottery_options

    joined = tf_ama.AffineMaximizerAuction(A23, menu="lottery+bundle-sizes", menu_size=8,
                                           seed=1, jit_objective=False)
    lottery = tf_ama.AffineMaximizerAuction(A23, menu="lottery", **{
        k: v for k, v in lottery_options(joined.menu_layer).items()
        if k in ("menu_size", "seed", "init_scale", "boost_init_scale")})
    join(joined, lottery, 0.25)
    menu = joined.exact_menu()
    np.testing.assert_array_equal(menu.size_boosts, 0.0)
    np.testing.assert_array_equal(menu.allocations, lottery.exact_menu().allocations)
    np.testing.assert_allclose(menu.boosts[1:], lottery.exact_menu().boosts[1:] + 0.25,
                               rtol=1e-6)
    bids = np.random.default_rng(3).uniform(size=(200, 2, 3))
    oracle = numpy_ama(bids, *menu)
    np.testing.assert_allclose(joined(tf.constant(bids))["payments"].numpy(),
                               oracle["payments"], rtol=0, atol=1e-13)
    joined.compile(optimizer=keras.optimizers.Adam(0.01))
    joined.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=2, verbose=0)
    assert np.any(joined.exact_menu().size_boosts != 0)
    # The report names the family the explicit entries are joined with.
    table = tf_ama.evaluate(joined, 200, seed=0, baselines=False).format_table()
    assert "and allocations of the bundle-size family" in table and "family chosen on" in table


def test_the_serving_client_checks_the_size_boosts():
    from tf_ama.serving.checks import ServingError, check_menu

    menu = {k: v.tolist() for k, v in _model().exact_menu()._asdict().items()}
    checked = check_menu(menu)
    np.testing.assert_array_equal(checked["size_boosts"], np.asarray(menu["size_boosts"]))
    for bad, message in (([[0.0] * 3] * 3, r"`size_boosts`.*shape \[3, 4\]"),
                         ([[float("nan")] * 4] * 3, "`size_boosts`.*finite"),
                         ([[1e38] * 4] * 3, r"sum_o max_k \|g\[o, k\]\|")):
        with pytest.raises(ServingError, match=message):
            check_menu({**menu, "size_boosts": bad})


def test_a_run_can_fall_back_to_its_start_at_separate_myerson():
    """The run's known-good start (`better_of_start_and_end` keeps it if training did not
    beat it on the validation sample) is the family at separate Myerson: g = 0."""
    from tf_ama.training.kinds import SettingRun

    model = _model()
    start = SettingRun(model.setting).start(model)()
    menu, fresh = start.exact_menu(), tf_ama.AffineMaximizerAuction(A23, menu="bundle-sizes",
                                                                    seed=2).exact_menu()
    np.testing.assert_array_equal(menu.size_boosts, 0.0)
    for got, want in zip(menu, fresh, strict=True):
        assert np.array_equal(got, want)


def test_the_training_step_cuts_a_large_program_into_small_micro_batches(monkeypatch):
    """5x10's program: a batch of 512 at once asked for 8.7 GB in one allocation; "auto"
    micro-batches hold `PROGRAM_TRAINING_ELEMENTS` (8 profiles at 5x10), whatever the
    batch. (Shown on 2x3 with the budget made small enough to cut it too.)"""
    from tf_ama.core import blocks, relaxation

    assert blocks.program_block_size(5, bundle_sizes.count_state_number(5, 10),
                                     blocks.PROGRAM_TRAINING_ELEMENTS) == 8
    cut = []
    original = relaxation.over_micro_batches
    monkeypatch.setattr(relaxation, "over_micro_batches", lambda kernel, arrays, micro, *rest: (
        cut.append(micro), original(kernel, arrays, micro, *rest))[1])
    monkeypatch.setattr(relaxation, "PROGRAM_TRAINING_ELEMENTS", 8 * 2 * 3 * 10)  # 2x3: 8
    menu = _model().menu(tf.float64)
    valuations = tf.constant(np.random.default_rng(5).uniform(size=(20, 2, 3)))
    options = dict(separable_boosts=menu.separable_boosts, size_boosts=menu.size_boosts)
    revenue, gradients = batched_revenue_and_gradients(valuations, *menu[:3], 5.0,
                                                       micro_batch_size="auto", **options)
    assert cut == [8]
    whole, whole_gradients = batched_revenue_and_gradients(valuations, *menu[:3], 5.0,
                                                           micro_batch_size=None, **options)
    np.testing.assert_allclose(revenue.numpy(), whole.numpy(), rtol=1e-12)
    for got, want in zip(gradients, whole_gradients, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-13)
