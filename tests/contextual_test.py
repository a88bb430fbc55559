"""Contextual auctions (issue 16): the menu network, the model, training, evaluation, export.

Strategyproofness is asserted, not assumed: the regret certificate is 0 up to rounding on
random contexts and bids, and no misreport gains a bidder anything; permuting bidders or
items permutes the menu; the untrained family is per-context Myerson; the exported model
serves bit for bit the exact outcome of the menu its `menu` signature returns.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from builders import run_listing
from tf_ama.core import exactness
from tf_ama.cli.app import main
from tf_ama.models.contextual import ContextualAuction, contextual_dataset
from tf_ama.evaluation.contextual import (SIGNIFICANCE, TRACED_FROM_BLOCKS, baseline_revenues,
                                         choose_sizes, evaluate_contextual)
from tf_ama.training.contextual import choose_per_size, contextual_training
from tf_ama.core.mechanism import exact_outcome

SMALL = dict(menu_size=12, hidden=8, heads=2, blocks=1, jit_objective=False)


def small_model(sizes=("2x3",), **kwargs):
    return ContextualAuction("contextual_a", sizes=list(sizes), **{**SMALL, **kwargs})


@pytest.mark.parametrize("bundles", [False, True])
@pytest.mark.slow
def test_the_menu_is_feasible_in_float64_for_any_size(bundles):
    model = small_model(bundles=bundles)
    for size in ("1x1", "2x3", "4x7"):
        _, x, y = model.setting.sample(16, 0, size, tf.float64)
        menu = model.menu(x, y, tf.float64)
        m, n = x.shape[1], y.shape[1]
        entries = 12 + (m if bundles else 0)
        assert model.menu_layer.entries(m) == entries
        assert menu.allocations.shape == (16, entries, m, n)
        assert menu.boosts.shape == (16, entries)
        assert np.all(menu.allocations.numpy() >= 0)
        assert np.all(menu.allocations.numpy().sum(axis=2) <= 1.0)
        np.testing.assert_array_equal(menu.allocations[:, 0], 0.0)
        np.testing.assert_array_equal(menu.boosts[:, 0], 0.0)
        weights = menu.bidder_weights.numpy()
        assert np.all((weights >= exactness.MIN_BIDDER_WEIGHT)
                      & (weights <= exactness.MAX_BIDDER_WEIGHT))
        assert menu.separable_boosts.shape == (16, m + 1, n)


@pytest.mark.parametrize("size_features", [(), ("bidders", "items")])
def test_permuting_bidders_and_items_permutes_the_menu(size_features):
    model = small_model(bundles=True, size_features=size_features)
    for layer in (model.menu_layer.bundle_head, model.menu_layer.family_head):
        layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, [5, 6]))
    _, x, y = model.setting.sample(8, 1, "3x4", tf.float64)
    bidders, items = np.array([2, 0, 1]), np.array([3, 1, 0, 2])
    menu = model.menu(x, y, tf.float64)
    permuted = model.menu(tf.gather(x, bidders, axis=1), tf.gather(y, items, axis=1), tf.float64)
    entries = np.append(np.arange(12), 12 + bidders)  # bidder i's grand bundle follows i
    want = menu.allocations.numpy()[:, entries][:, :, bidders][:, :, :, items]
    np.testing.assert_allclose(permuted.allocations, want, atol=1e-5)
    np.testing.assert_allclose(permuted.boosts, menu.boosts.numpy()[:, entries], atol=1e-5)
    np.testing.assert_allclose(permuted.bidder_weights, tf.gather(menu.bidder_weights, bidders,
                                                                  axis=1), atol=1e-5)
    rows = np.append(bidders, 3)  # nobody stays last
    np.testing.assert_allclose(permuted.separable_boosts,
                               menu.separable_boosts.numpy()[:, rows][:, :, items], atol=1e-5)


def test_the_untrained_family_is_per_context_myerson():
    model = small_model(menu_size=1, bundles=False)
    bids, x, y = model.setting.sample(400, 2, "2x3", tf.float64)
    np.testing.assert_array_equal(model.menu(x, y, tf.float64).separable_boosts,
                                  model.setting.separate_myerson_boosts(x, y))
    _, myerson = baseline_revenues(model.setting, bids, x, y)
    np.testing.assert_array_equal(tf.reduce_sum(model((bids, x, y))["payments"], axis=1),
                                  myerson)


def _damaged(model):
    """`model` with its family's correction drawn at random: a menu that earns less than
    per-context Myerson (its boosts moved away from Myerson's, lotteries untrained)."""
    kernel = model.menu_layer.family_head.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [3, 4], stddev=0.3))
    return model


def test_myerson_sizes_serve_per_context_myerson_bit_for_bit_and_only_there(tmp_path):
    model = _damaged(small_model(sizes=("2x3", "3x2"), bundles=True))
    served = small_model(sizes=("2x3", "3x2"), bundles=True, myerson_sizes=["3x2"])
    served.set_weights(model.get_weights())
    bids, x, y = model.setting.sample(300, 2, "2x3", tf.float64)
    for key, value in served((bids, x, y)).items():  # the menu where it is served
        np.testing.assert_array_equal(value, model((bids, x, y))[key], err_msg=key)
    bids, x, y = model.setting.sample(300, 2, "3x2", tf.float64)
    outcome = served((bids, x, y), with_certificate=True)
    _, myerson = baseline_revenues(model.setting, bids, x, y)
    np.testing.assert_array_equal(tf.reduce_sum(outcome["payments"], axis=1), myerson)
    assert float(tf.reduce_max(outcome["regret"])) <= 1e-12
    assert float(tf.reduce_min(outcome["values"] - outcome["payments"])) >= 0.0
    assert not np.array_equal(myerson, tf.reduce_sum(model((bids, x, y))["payments"], axis=1))
    menu = served.served_menu(x, y)
    assert menu.allocations.shape == (300, 1, 3, 2) and served.served_entries(3, 2) == 1
    np.testing.assert_array_equal(menu.separable_boosts,
                                  model.setting.separate_myerson_boosts(x, y))
    # Saved, loaded and configured as it serves; training is unchanged (the network's step).
    served.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.myerson_sizes == ((3, 2),) and served.get_config()["myerson_sizes"] == ["3x2"]
    np.testing.assert_array_equal(loaded((bids, x, y))["payments"], outcome["payments"])
    with pytest.raises(ValueError, match="`myerson_sizes` serve per-context Myerson"):
        small_model(separable=False, myerson_sizes=["2x3"])
    for bad in (5, ["abc"], ["0x2"], [None]):
        with pytest.raises(ValueError, match=r"`myerson_sizes` must be a list of sizes"):
            small_model(myerson_sizes=bad)
    with pytest.raises(ValueError, match=r"`sizes` must be a list of sizes"):
        ContextualAuction("contextual_a", sizes=7, **SMALL)
    assert small_model(myerson_sizes="3x2,2x3,3x2").myerson_sizes == ((2, 3), (3, 2))
    assert small_model().serve_myerson_at("3x2").myerson_sizes == ((3, 2),)
    with pytest.raises(ValueError, match="`myerson_sizes` serve per-context Myerson"):
        small_model(separable=False).serve_myerson_at(["2x3"])
    for bad, match in (({"bundle_discount": 1.5}, "bundle_discount"),
                       ({"bundle_discount": -0.1}, "bundle_discount"),
                       ({"bundle_discount": 0.2, "bundles": False}, "it needs bundles=True")):
        with pytest.raises(ValueError, match=match):
            small_model(**bad)
    assert small_model(bundles=False).menu_layer.bundle_discount == 0.0


@pytest.mark.slow
def test_choose_sizes_keeps_a_menu_only_above_two_paired_standard_errors():
    model = _damaged(small_model(sizes=("2x3",), bundle_discount=0.0))
    choices = choose_sizes(model, ["2x3", "3x2"], 200, seed=11)
    reports = evaluate_contextual(model, ["2x3", "3x2"], num_samples=200, seed=11)
    for size, choice in choices.items():
        report = reports[size]
        assert report.gain < -2 * report.gain_stderr  # the damaged menu loses
        assert choice == {"kept": "myerson", "revenue": report.revenue,
                          "myerson": report.myerson, "gain": report.gain,
                          "gain_stderr": report.gain_stderr, "samples": 200}
    # The bundles' discount alone, untrained, beats Myerson at 2x10 by many standard errors;
    # a threshold above the gain, not the gain's sign, is what keeps Myerson.
    discounted = small_model(sizes=("2x10",), bundle_discount=0.3)
    won = choose_sizes(discounted, ["2x10"], 300, seed=11)["2x10"]
    assert won["kept"] == "trained" and won["gain"] > 4 * won["gain_stderr"]
    threshold = won["gain"] / won["gain_stderr"] + 1
    assert choose_sizes(discounted, ["2x10"], 300, seed=11,
                        significance=threshold)["2x10"]["kept"] == "myerson"
    for bad, match in (({"num_samples": 1}, "selection_samples"),
                       ({"significance": -1.0}, "significance")):
        with pytest.raises(ValueError, match=match):
            choose_sizes(discounted, ["2x10"], **{"num_samples": 5, "seed": 1, **bad})
    # The untrained menu's outcome is Myerson's, its payments rounded apart: no gain.
    untrained = choose_sizes(small_model(bundle_discount=0.0), ["2x3"], 50, seed=1)["2x3"]
    assert untrained["kept"] == "myerson" and abs(untrained["gain"]) <= 1e-15
    with pytest.raises(ValueError, match="Per-context Myerson is known only"):
        choose_sizes(small_model(separable=False), ["2x3"], 10, seed=1)


def test_a_run_serves_myerson_at_each_size_its_menu_does_not_beat(tmp_path, monkeypatch):
    """The run's choice, size by size (`choose_per_size`): the sizes where the menu loses
    serve Myerson, the others the menu; every size lost: Myerson itself."""
    from tf_ama.training import contextual

    def won_at(*won):
        def fake(model, sizes, num_samples, seed):
            assert num_samples == 7 and seed == model.seed + 4
            return {f"{m}x{n}": {"kept": "trained" if f"{m}x{n}" in won else "myerson",
                                 "gain": 0.0, "gain_stderr": 0.0} for m, n in sizes}
        return fake

    training = contextual_training(selection_samples=7)
    myerson = contextual.ContextualRun("contextual_a").start(small_model(sizes=("2x3", "3x2")))
    for won, kept, sizes, menu_size in (("2x3",), "per size", ((3, 2),), 12), (
            ("2x3", "3x2"), "trained", (), 12), ((), "myerson", (), 1):
        monkeypatch.setattr(contextual, "choose_sizes", won_at(*won))
        model = choose_per_size(tmp_path, myerson, small_model(sizes=("2x3", "3x2")), training)
        selection = json.loads((tmp_path / "selection.json").read_text())
        assert selection["kept"] == kept and selection["significance"] == SIGNIFICANCE
        assert sorted(selection["sizes"]) == ["2x3", "3x2"]
        assert model.myerson_sizes == sizes and model.menu_size == menu_size
        assert model.chosen_sizes == ((2, 3), (3, 2))  # an export does not choose again
        assert selection["myerson_sizes"] == [s for s in ("2x3", "3x2") if s not in won]


@pytest.mark.slow
@pytest.mark.parametrize("discount", [0.0, 0.3])
def test_grand_bundles_start_at_the_family_boost_extended_to_them_and_discounted(discount):
    model = small_model(menu_size=1, bundles=True, bundle_discount=discount)
    bids, x, y = model.setting.sample(400, 2, "3x4", tf.float64)
    menu = model.menu(x, y, tf.float64)
    np.testing.assert_array_equal(menu.allocations[:, 1:], np.broadcast_to(
        np.eye(3)[None, :, :, None], (400, 3, 3, 4)))
    spared = 1.0 - np.float64(np.float32(discount))  # the learned scalar is float32
    np.testing.assert_array_equal(menu.boosts[:, 1:], tf.reduce_sum(
        menu.separable_boosts[:, :-1], axis=2) * spared)
    assert [v.path for v in model.trainable_variables].count(
        "contextual_menu/bundle_discount") == (1 if discount else 0)
    alone = small_model(menu_size=1, bundles=False)((bids, x, y))
    with_bundles = model((bids, x, y), with_certificate=True)
    assert np.max(with_bundles["regret"]) <= 1e-14
    assert np.min(with_bundles["values"] - with_bundles["payments"]) >= 0.0
    index = with_bundles["menu_index"].numpy()
    won = (index >= 1) & (index <= 3)  # a grand bundle (the family's entries come after)
    if discount == 0.0:
        # They score at most as the family: the untrained menu's outcome is per-context Myerson.
        np.testing.assert_array_equal(with_bundles["allocation"], alone["allocation"])
        np.testing.assert_allclose(with_bundles["payments"], alone["payments"], rtol=0,
                                   atol=1e-14)
    else:  # spared part of the family's reserve, they win auctions where the family did not
        assert won.any() and not np.array_equal(with_bundles["allocation"], alone["allocation"])
    with pytest.raises(ValueError, match="bundles"):
        small_model(separable=False, bundles=True)


def test_a_menu_saved_before_its_options_existed_loads_as_it_was():
    config = small_model().menu_layer.get_config()
    assert config.pop("bundle_discount") == 0.3  # today's default; none before it existed
    undiscounted = tf_ama.ContextualMenu.from_config(config)
    assert undiscounted.bundle_discount == 0.0 and undiscounted.discount is None
    for option in ("bundles", "linear_family_boosts"):  # today's defaults: on
        assert config.pop(option)
        assert not getattr(tf_ama.ContextualMenu.from_config(config), option)


@pytest.mark.slow
def test_the_same_seed_builds_the_same_network():
    first, second, other = small_model(seed=3), small_model(seed=3), small_model(seed=4)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))


@pytest.mark.parametrize("scale", [pytest.param(1e-3, marks=pytest.mark.slow), 1.0,
                                   pytest.param(1e4, marks=pytest.mark.slow)])
def test_no_misreport_gains_and_the_regret_certificate_is_zero(scale):
    model = small_model(bundles=True)
    _, x, y = model.setting.sample(64, 4, "2x3", tf.float64)
    rng = np.random.default_rng(0)
    values = scale * rng.uniform(size=(64, 2, 3))
    truthful = model((tf.constant(values), x, y), with_certificate=True)
    menu = model.menu(x, y, tf.float64)
    bound = max(float(np.max(exactness.regret_error_bound(
        values[b:b + 1], menu.boosts[b].numpy(), menu.bidder_weights[b].numpy(),
        menu.separable_boosts[b].numpy()))) for b in range(64))
    assert np.max(truthful["regret"]) <= bound
    utility = truthful["values"].numpy() - truthful["payments"].numpy()
    assert np.all(utility >= 0)
    for _ in range(5):  # bidder i reports something else; utility at the true values
        for i in range(2):
            report = values.copy()
            report[:, i] = scale * rng.uniform(0, 2, size=(64, 3)) * (rng.uniform(size=(64, 1)) < .8)
            lied = model((tf.constant(report), x, y))
            gained = (np.einsum("bj,bj->b", lied["allocation"].numpy()[:, i], values[:, i])
                      - lied["payments"].numpy()[:, i])
            assert np.all(gained <= utility[:, i] + bound)


@pytest.mark.slow
def test_fit_trains_on_fresh_auctions_of_several_sizes_and_validates_on_both():
    model = small_model(sizes=("2x2", "3x2"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.copy() for w in model.get_weights()]
    validation = contextual_dataset("contextual_a", "2x2", 64, seed=1, batch_size=32).concatenate(
        contextual_dataset("contextual_a", "3x2", 64, seed=1, batch_size=32))
    history = model.fit(tf_ama.fresh_valuations(32), epochs=2, steps_per_epoch=3,
                        validation_data=validation, verbose=0)
    assert all(np.isfinite(history.history["loss"])) and len(history.history["val_revenue"]) == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    exact = np.mean([tf.reduce_sum(model(inputs)["payments"]).numpy() / 32
                     for (inputs,) in validation])
    np.testing.assert_allclose(model.evaluate(validation, verbose=0, return_dict=True)["revenue"],
                               exact, rtol=1e-5)
    # (The same seed trains the same weights, bit for bit: the contextual_runs fixture's two
    # runs, below.)


@pytest.mark.slow
def test_a_size_unknown_in_the_graph_must_be_one_of_the_models():
    model = small_model(sizes=("2x2",))
    serve = tf.function(lambda b, x, y: model((b, x, y))["payments"], input_signature=[
        tf.TensorSpec([None, None, None], tf.float64),
        tf.TensorSpec([None, None, 10], tf.float64), tf.TensorSpec([None, None, 10], tf.float64)])
    bids, x, y = model.setting.sample(3, 0, "2x2", tf.float64)
    np.testing.assert_array_equal(serve(bids, x, y), model((bids, x, y))["payments"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a size served here \(2x2\)"):
        serve(*model.setting.sample(3, 0, "3x2", tf.float64))


@pytest.mark.parametrize("change,error,match", [
    (lambda b, x, y: (b, tf.cast(x, tf.float32), y), TypeError, "`bidder_context` must be float64"),
    (lambda b, x, y: (b, x[:, :1], y), tf.errors.InvalidArgumentError,
     "`bidder_context` has the wrong shape"),
    (lambda b, x, y: (b, x, y[..., :4]), tf.errors.InvalidArgumentError,
     "`item_context` has the wrong shape"),
    (lambda b, x, y: (b, x * np.nan, y), tf.errors.InvalidArgumentError,
     "`bidder_context` must be finite"),
    (lambda b, x, y: (-b, x, y), tf.errors.InvalidArgumentError, "negative bid"),
    (lambda b, x, y: (b, x), ValueError, r"\(bids, bidder_context, item_context\)"),
])
def test_bad_contexts_are_refused_like_bad_bids(change, error, match):
    model = small_model()
    with pytest.raises(error, match=match):
        model(change(*model.setting.sample(2, 0, "2x3", tf.float64)))


def test_no_auctions_give_empty_outcomes_and_huge_contexts_are_named():
    """A batch of 0 auctions failed in a reshape (the fixed menu's model returns empty
    outcomes); contexts of 1e30 were refused as a NaN `allocations` of the menu."""
    model = small_model()
    bids, x, y = model.setting.sample(2, 0, "2x3", tf.float64)
    empty = model((bids[:0], x[:0], y[:0]))
    assert empty["payments"].shape == (0, 2) and empty["allocation"].shape == (0, 2, 3)
    with pytest.raises(ValueError, match=r"`bids` must have at least one bidder and one item"):
        model((bids[:, :0], x[:, :0], y))  # was a StridedSlice error from the network
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"menu is not finite for these "
                       r"contexts \(largest \|context\|:(.|\n)*e\+29(.|\n)*trained on "
                       r"contexts in \[-1, 1\]"):
        model((bids, x * 1e30, y))


@pytest.mark.parametrize("block", [128, 50])  # 3 blocks, eager; 6, traced (TRACED_FROM_BLOCKS)
def test_evaluation_reports_exact_revenues_and_paired_gains_per_size(block):
    model = small_model(sizes=("2x2",))
    reports = evaluate_contextual(model, sizes=["2x2", "3x3"], num_samples=300, seed=7,
                                  block=block)
    assert (300 > TRACED_FROM_BLOCKS * block) == (block == 50)
    with pytest.raises(ValueError, match="`num_samples` must be an int >= 2"):
        evaluate_contextual(model, num_samples=1)  # (a standard error needs two)
    bids, x, y = model.setting.sample(300, 7, "3x3", tf.float64)
    revenue = tf.reduce_sum(model((bids, x, y))["payments"], axis=1).numpy()
    vcg, myerson = baseline_revenues(model.setting, bids, x, y)
    report = reports["3x3"]
    np.testing.assert_allclose(report.revenue, revenue.mean(), rtol=1e-12)
    np.testing.assert_allclose([report.vcg, report.myerson], [vcg.mean(), myerson.mean()],
                               rtol=1e-12)
    np.testing.assert_allclose(report.gain, (revenue - myerson).mean(), rtol=1e-9)
    assert report.max_regret <= 1e-12 and report.min_utility >= 0


def test_the_export_serves_the_exact_outcome_of_its_menu_bit_for_bit(tmp_path):
    # A menu that loses to Myerson everywhere; its run chose at 2x3 (and kept it, say), so
    # the export chooses at 4x3 only, and serves Myerson there. Its network sees the size
    # (`size_features`), which the export's graph computes per traced size.
    model = _damaged(small_model(sizes=("2x3",), bundle_discount=0.0,
                                 size_features=["bidders", "items"])
                     ).chose_at(["2x3"])
    path = tf_ama.export_saved_model(model, tmp_path / "models", sizes=["2x3", "4x3"],
                                     selection_samples=64)
    loaded = tf.saved_model.load(path)
    serve, menu = loaded.signatures["serving_default"], loaded.signatures["menu"]
    for size in ("2x3", "4x3"):
        bids, x, y = model.setting.sample(21, 9, size, tf.float64)
        served = serve(bids=bids, bidder_context=x, item_context=y)
        served_menu = menu(bidder_context=x, item_context=y)
        direct = exact_outcome(bids, served_menu["allocations"], served_menu["boosts"],
                               served_menu["bidder_weights"], served_menu["separable_boosts"])
        for key in ("allocation", "payments", "menu_index"):
            np.testing.assert_array_equal(served[key], direct[key], err_msg=key)
        empty = serve(bids=bids[:0], bidder_context=x[:0], item_context=y[:0])
        assert empty["payments"].shape == (0, int(size[0])) and empty["owners"].shape[0] == 0
        alone = serve(bids=bids[4:5], bidder_context=x[4:5], item_context=y[4:5])
        for key in ("allocation", "payments", "menu_index", "owners"):
            np.testing.assert_array_equal(alone[key][0], served[key][4], err_msg=key)
        if size == "2x3":  # the network's menu (float32 rounded apart in the graph)
            np.testing.assert_allclose(served["payments"], model((bids, x, y))["payments"],
                                       atol=1e-5)
        else:  # per-context Myerson, bit for bit
            _, myerson = baseline_revenues(model.setting, bids, x, y)
            np.testing.assert_array_equal(tf.reduce_sum(served["payments"], axis=1), myerson)
            assert served_menu["allocations"].shape[1] == 1
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"served here \(2x3, 4x3\)"):
        serve(**dict(zip(("bids", "bidder_context", "item_context"),
                         model.setting.sample(1, 0, "4x4", tf.float64))))
    bids, x, y = model.setting.sample(2, 0, "2x3", tf.float64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`item_context` must be finite"):
        serve(bids=bids, bidder_context=x, item_context=y * np.inf)
    config = json.loads((tmp_path / "models" / "1" / "assets.extra" / "tf_ama_config.json")
                        .read_text())
    assert config["serving"]["sizes"] == ["2x3", "4x3"] and config["contextual"]
    # 4x3 met per-context Myerson at export (seed: the model's seed + 4), and lost.
    assert config["serving"]["myerson_sizes"] == ["4x3"]
    chosen = config["serving"]["chosen_at_export"]
    assert list(chosen) == ["4x3"] and chosen["4x3"]["kept"] == "myerson"
    assert chosen["4x3"]["gain"] < 0 and chosen["4x3"]["samples"] == 64
    assert chosen["4x3"]["seed"] == model.seed + 4
    assert config["model"]["myerson_sizes"] == ["4x3"] and model.myerson_sizes == ()
    assert config["model"]["chosen_sizes"] == ["2x3", "4x3"]
    # A model that never chose (e.g. trained by `fit`): the export chooses at every size.
    from tf_ama.serving.contextual_export import choices

    never = _damaged(small_model(sizes=("2x3",), bundle_discount=0.0))
    chosen = choices(never, ((2, 3), (4, 3)), 64, 3)
    assert list(chosen) == ["2x3", "4x3"] and chosen["2x3"]["seed"] == 3
    for bad, match in (({"selection_samples": 1}, "selection_samples"), ({"seed": -1}, "seed"),
                       ({"sizes": 5}, "`sizes` must be a list of sizes")):
        with pytest.raises(ValueError, match=match):
            tf_ama.export_saved_model(model, tmp_path / "models", **bad)
    assert (tmp_path / "models" / "1" / "assets.extra" / "tf_serving_warmup_requests").exists()
    with pytest.raises(ValueError, match="prune"):
        tf_ama.export_saved_model(model, tmp_path / "models", prune=True)
    with pytest.raises(ValueError, match="is a contextual auction"):
        tf_ama.load_menu_model(path)


# One contextual run, trained once by the library and once by the command line with the same
# arguments: restarts, the active set and the fused kernel on menus per auction.
RUN_MODEL = dict(sizes=["2x2"], menu_size=3, hidden=4, heads=1, blocks=1, active_margin=25.0,
                 active_refresh_steps=2)
RUN_TRAINING = dict(steps=4, steps_per_epoch=2, batch_size=16, validation_samples=32,
                    evaluation_samples=64, selection_samples=48, restarts=2, restart_steps=2,
                    final_temperature=400.0, anneal_fraction=0.5)
RUN_FLAGS = ["--sizes", "2x2", "--menu-size", "3", "--hidden", "4", "--heads", "1", "--blocks",
             "1", "--active-margin", "25", "--active-refresh-steps", "2", "--steps", "4",
             "--steps-per-epoch", "2", "--batch-size", "16", "--validation-samples", "32",
             "--samples", "64", "--selection-samples", "48", "--restarts", "2",
             "--restart-steps", "2", "--final-temperature", "400", "--anneal-fraction", "0.5"]


@pytest.fixture(scope="module")
def contextual_runs(tmp_path_factory):
    """`(root, model, kernel_shapes)`: the library's run in root/library (the returned model),
    the command line's in root/command, and the shapes the fused kernel was traced on."""
    from tf_ama.core import relaxation

    root = tmp_path_factory.mktemp("contextual_runs")
    shapes = []
    kernel = relaxation.batched_revenue_and_gradients
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relaxation, "batched_revenue_and_gradients",
                      lambda *args, **kwargs: shapes.append(args[1].shape) or kernel(
                          *args, **kwargs))
        model = tf_ama.train_run("contextual_a", root / "library", RUN_MODEL,
                                 contextual_training(**RUN_TRAINING), verbose=0)
    assert main(["train", "contextual_a", *RUN_FLAGS, "--out", str(root / "command")]) == 0
    return root, model, shapes


@pytest.mark.slow
def test_the_library_and_the_command_line_leave_the_same_contextual_run(contextual_runs):
    """`tf_ama.train_run` writes the whole run directory; `tf-ama train` with the same
    arguments writes the same files, the same report and bit for bit the same weights (the
    same seed trains the same network)."""
    from tf_ama.training import runs

    root, model, _ = contextual_runs

    assert run_listing(root / "library") == run_listing(root / "command")
    assert {runs.CONFIG, runs.MODEL, runs.HISTORY, runs.EVALUATION} <= set(
        run_listing(root / "library"))
    # The same reports, to the last digit: the restarts' validation revenues (config.json;
    # the command line's records its recipe too), the trained menu's and Myerson's
    # (selection.json), the curves (history.csv).
    library, command = (runs.read_config(str(root / run)) for run in ("library", "command"))
    recipe = command.pop("recipe")
    assert library == command and "recipe" not in library
    assert recipe["training"] == {"steps": 1000, "batch_size": 512, "learning_rate": 0.001}
    assert set(recipe["overridden"]) >= {"sizes", "menu_size", "steps", "final_temperature"}
    for name in (runs.EVALUATION, "selection.json", runs.HISTORY):
        assert (root / "library" / name).read_text() == (root / "command" / name).read_text()
    # The same weights: of the run, and of each trained restart (the run keeps Myerson when
    # its trained menu is not significantly better, so the restarts are what trained).
    for restart in ("", "restarts/0", "restarts/1"):
        library, _ = runs.load_run(str(root / "library" / restart))
        command, _ = runs.load_run(str(root / "command" / restart))
        for a, b in zip(library.get_weights(), command.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_contextual_run_trains_with_restarts_and_the_active_set(contextual_runs):
    """Restarts, the active set and the fused kernel are the auction model's, for a menu per
    auction too."""
    root, model, shapes = contextual_runs
    run = root / "library"
    config = json.loads((run / "config.json").read_text())
    assert config["contextual"] and config["model"]["active_margin"] == 25.0
    assert config["start"]["kept"] in (0, 1)
    assert [row["run"] for row in config["start"]["restarts"]] == ["restarts/0", "restarts/1"]
    for restart in ("0", "1"):
        assert (run / "restarts" / restart / "model.keras").exists()
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"active_entries", "neglected_mass", "val_revenue"} <= set(header)
    # The fused kernel was traced on menus per auction: [batch, K, m, n].
    assert shapes and all(len(shape) == 4 for shape in shapes)
    assert json.loads((run / "evaluation.json").read_text())["2x2"]["max_regret"] <= 1e-9
    assert model.sizes == ((2, 2),)


@pytest.mark.slow
def test_a_run_keeps_the_better_of_its_menu_and_myerson_and_resumes_as_finished(
        contextual_runs):
    root, model, _ = contextual_runs
    run = root / "library"
    assert not (run / "backup").exists() or not os.listdir(run / "backup")
    selection = json.loads((run / "selection.json").read_text())
    choice = selection["sizes"]["2x2"]
    assert list(selection["sizes"]) == ["2x2"] and choice["samples"] == 48
    significant = choice["gain"] > SIGNIFICANCE * choice["gain_stderr"]
    assert choice["kept"] == ("trained" if significant else "myerson")
    assert selection["kept"] == choice["kept"]
    assert selection["myerson_sizes"] == ([] if significant else ["2x2"])
    np.testing.assert_allclose(choice["revenue"] - choice["myerson"], choice["gain"],
                               rtol=1e-9, atol=1e-12)
    # The kept mechanism earns the kept revenue on the selection auctions (seed + 4).
    assert selection["seed"] == model.seed + 4
    kept = evaluate_contextual(model, num_samples=48, seed=selection["seed"])["2x2"]
    np.testing.assert_allclose(kept.revenue, choice["revenue" if significant else "myerson"],
                               rtol=1e-12)
    assert model.menu_size == (3 if significant else 1)
    training = contextual_training(**RUN_TRAINING)
    again = tf_ama.train_run("contextual_a", run, RUN_MODEL, training, verbose=0)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds a run with a different configuration"):
        tf_ama.train_run("contextual_a", run, {**RUN_MODEL, "menu_size": 5}, training,
                         verbose=0)


@pytest.mark.slow
def test_the_command_line_evaluates_and_exports_a_contextual_run(contextual_runs, capsys):
    root, _, _ = contextual_runs
    run = str(root / "command")
    assert main(["evaluate", run, "--sizes", "3x2", "--samples", "100"]) == 0
    assert "3x2" in capsys.readouterr().out
    assert main(["export", run, "--to", str(root / "models"), "--sizes", "2x2,4x2",
                 "--selection-samples", "40"]) == 0
    assert (root / "models" / "1" / "saved_model.pb").exists()
    serving = json.loads((root / "models" / "1" / "assets.extra" / "tf_ama_config.json")
                         .read_text())["serving"]
    selection = json.loads((root / "command" / "selection.json").read_text())
    # 2x2 as the run chose it; 4x2, unseen in training, chosen at export on 40 auctions.
    assert list(serving["chosen_at_export"]) == ["4x2"]
    for size, choice in serving["chosen_at_export"].items():
        assert choice["samples"] == 40
        assert (size in serving["myerson_sizes"]) == (choice["kept"] == "myerson")
    # One trained size: the run served its menu there, or ended as Myerson itself.
    assert "2x2" not in serving["myerson_sizes"] and selection["kept"] != "per size"


@pytest.mark.slow
def test_a_contextual_run_anneals_its_temperature_along_its_cosine_learning_rate(
        contextual_runs):
    import csv

    root, _, _ = contextual_runs
    with open(root / "library" / "history.csv") as file:
        rows = list(csv.DictReader(file))
    np.testing.assert_allclose([float(row["temperature"]) for row in rows], [100.0, 400.0])
    # (The learning rate stays the run's cosine: a schedule, which the temperature scheduler
    # would refuse to rescale.)


def test_a_contextual_run_refuses_the_polish_and_the_exact_expectation(tmp_path):
    for field, value in (("polish", True), ("exact_expectation", True)):
        with pytest.raises(ValueError, match=f"`{field}` is not supported for contextual"):
            tf_ama.train_run("contextual_a", tmp_path / field, RUN_MODEL,
                             contextual_training(**{field: value}), verbose=0)


def test_the_command_line_refuses_contextual_flags_where_they_do_not_apply(tmp_path, capsys):
    assert main(["train", "additive_2x2_uniform", "--sizes", "2x2", "--out",
                 str(tmp_path / "x")]) == 2
    assert "only for contextual settings" in capsys.readouterr().err
    assert main(["train", "contextual_a", "--boost-init-scale", "1", "--out",
                 str(tmp_path / "y")]) == 2
    assert "Not for a contextual setting" in capsys.readouterr().err


@pytest.mark.slow
def test_the_contextual_step_is_the_gradient_of_the_soft_revenue():
    """The fused kernel's gradient, carried through the menu network by the tape, is the
    gradient of `soft_payments` through the network (automatic differentiation)."""
    model = tf_ama.ContextualAuction("contextual_a", sizes=["2x3"], **SMALL)
    bids, bidder_context, item_context = model.setting.sample(24, 3, (2, 3))
    loss, gradients = model._gradients(bids, None, None, (bidder_context, item_context))
    with tf.GradientTape() as tape:
        menu = model.menu(bidder_context, item_context)
        revenue = tf.reduce_mean(tf.reduce_sum(tf_ama.soft_payments(
            bids, *menu[:3], model.temperature, separable_boosts=menu.separable_boosts), axis=1))
    expected = [None if g is None else -g
                for g in tape.gradient(revenue, model.trainable_variables)]
    np.testing.assert_allclose(float(loss), -float(revenue), rtol=1e-5)
    for got, want, variable in zip(gradients, expected, model.trainable_variables):
        assert (got is None) == (want is None), variable.path
        if want is None:  # not in this size's menu (e.g. heads of other sizes' entries)
            continue
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3,
                                   atol=2e-4 * float(tf.reduce_max(tf.abs(want))) + 1e-7,
                                   err_msg=variable.path)


def test_linear_family_boosts_extend_the_familys_boost_to_lotteries():
    from tf_ama.menus.contextual import ContextualMenu, _linear_family_boosts
    from tf_ama.core.separable import family_entries

    rng = np.random.default_rng(1)
    c = rng.normal(size=(3, 4, 2))  # [B, m + 1, n], m = 3 bidders
    lotteries = rng.dirichlet(np.ones(4), size=(3, 5, 2)).transpose(0, 1, 3, 2)[:, :, :3]
    allocations = np.concatenate([np.zeros((3, 1, 3, 2)), lotteries], axis=1)
    got = _linear_family_boosts(tf.constant(allocations), tf.constant(c)).numpy()
    for b in range(3):
        assert got[b, 0] == 0.0
        for k in range(1, 6):
            want = sum(allocations[b, k, i, j] * c[b, i, j] for i in range(3) for j in range(2))
            want += sum((1 - allocations[b, k, :, j].sum()) * c[b, 3, j] for j in range(2))
            assert abs(got[b, k] - want) <= 1e-12
    ranks = np.arange(16)  # every 0/1 allocation scores as the family's entry
    deterministic, family = family_entries(ranks, c[0])
    got = _linear_family_boosts(tf.constant(np.concatenate([np.zeros((1, 3, 2)), deterministic])[None]),
                                tf.constant(c[:1])).numpy()[0, 1:]
    np.testing.assert_allclose(got, family, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="needs separable=True"):
        ContextualMenu(10, 10, separable=False, linear_family_boosts=True)


@pytest.mark.slow
def test_evaluate_is_the_one_entry_point_for_contextual_models_too():
    model = ContextualAuction("contextual_a", sizes=["2x2"], **SMALL)
    reports = tf_ama.evaluate(model, num_samples=64, seed=5, sizes=["2x2", "3x2"])
    assert reports == evaluate_contextual(model, ["2x2", "3x2"], num_samples=64, seed=5)
    with pytest.raises(ValueError, match=r"\['outcomes'\]: not for a contextual model"):
        tf_ama.evaluate(model, num_samples=64, outcomes="x.npz")
    with pytest.raises(ValueError, match="no one menu to count or prune"):
        tf_ama.menu_usage(model, num_samples=64)
    with pytest.raises(ValueError, match=r"a menu per auction: model.served_menu"):
        model.exact_menu()
    with pytest.raises(ValueError, match="Only a lottery menu has winning tickets; this menu "
                                         "is 'contextual'"):
        model.winning_ticket([1])
    with pytest.raises(ValueError, match="`sizes` is for a contextual model"):
        tf_ama.evaluate(tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=2),
                        num_samples=64, sizes=["2x2"])
