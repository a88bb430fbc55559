"""A trained lottery menu joined with the item-separable family (tf_ama.training.joining) and the
phased training of a "lottery+separable" run (tf_ama.training.run.train_run)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from interrupt import Stop, StopAt

import tf_ama
from tf_ama.training import joining
from tf_ama.cli.app import main
from tf_ama.core.mechanism import exact_outcome
from tf_ama.training.run import LOTTERY_RUN, TrainingConfig, train_run

SETTING = "additive_2x2_uniform"
KWARGS = {"menu": "lottery+separable", "menu_size": 16, "seed": 3, "reserves": [0.5, 0.5]}
TRAINING = TrainingConfig(steps=100, joint_steps=100, steps_per_epoch=50, batch_size=256,
                          validation_samples=1000)


@pytest.fixture(scope="module")
def lottery():
    model = tf_ama.AffineMaximizerAuction(SETTING, menu_size=16, seed=3, init_scale=2.0)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(tf_ama.fresh_valuations(256), epochs=1, steps_per_epoch=20, verbose=0)
    return model


def _outcome(bids, menu):
    return {k: v.numpy() for k, v in exact_outcome(bids, *menu).items()}


def test_join_is_the_lottery_menu_shifted_beside_the_family(lottery):
    joined = tf_ama.AffineMaximizerAuction(SETTING, **KWARGS)
    joining.join(joined, lottery, 0.25)
    mine, theirs = joined.exact_menu(), lottery.exact_menu()
    np.testing.assert_array_equal(mine.allocations, theirs.allocations)
    np.testing.assert_allclose(mine.boosts[1:], theirs.boosts[1:] + 0.25, rtol=0, atol=1e-6)
    assert mine.boosts[0] == 0.0
    np.testing.assert_array_equal(mine.separable_boosts, [[0, 0], [0, 0], [0.5, 0.5]])


def test_the_shift_moves_the_union_from_the_family_to_the_lottery(lottery):
    """At a shift above any welfare the family can reach, the union is its lottery part
    alone; far below, it is its family alone (separate Myerson): the same entries, payments
    to rounding."""
    bids = tf.constant(np.random.default_rng(1).uniform(size=(500, 2, 2)))
    joined = tf_ama.AffineMaximizerAuction(SETTING, **KWARGS)
    joining.join(joined, lottery, 10.0)
    menu = joined.menu(tf.float64)
    union, alone = _outcome(bids, menu), _outcome(bids, menu[:3])
    assert np.array_equal(union["menu_index"], alone["menu_index"])
    np.testing.assert_allclose(union["payments"], alone["payments"], rtol=0, atol=1e-12)
    joining.join(joined, lottery, -10.0)
    menu = joined.menu(tf.float64)
    family = (menu.allocations[:1], menu.boosts[:1], menu.bidder_weights, menu.separable_boosts)
    union, alone = _outcome(bids, menu), _outcome(bids, family)
    assert np.array_equal(union["menu_index"] - 15, alone["menu_index"])  # K = 16 vs 1
    np.testing.assert_allclose(union["payments"], alone["payments"], rtol=0, atol=1e-12)


def test_choose_shift_takes_the_best_exact_validation_revenue(lottery):
    joined = tf_ama.AffineMaximizerAuction(SETTING, **KWARGS)
    valuations = lottery.setting.sample(2000, 7)
    shift, revenues = joining.choose_shift(joined, lottery, valuations, fractions=(-0.1, 0, 0.3))
    assert list(revenues) == [-0.1, 0.0, 0.3]  # fractions of sum_j r_j = 1
    assert revenues[shift] == max(revenues.values())
    for candidate, revenue in revenues.items():  # each: the exact revenue of that join
        probe = tf_ama.AffineMaximizerAuction(SETTING, **KWARGS)
        joining.join(probe, lottery, candidate)
        paid = _outcome(tf.cast(valuations, tf.float64), probe.menu(tf.float64))["payments"]
        assert revenue == pytest.approx(paid.sum(axis=1).mean(), abs=1e-12)
    np.testing.assert_allclose(joined.exact_menu().boosts[1:],
                               lottery.exact_menu().boosts[1:] + shift, rtol=0, atol=1e-6)


def test_only_a_joined_menu_has_a_lottery_part():
    with pytest.raises(ValueError, match="Only a 'lottery\\+separable' or "
                                         "'lottery\\+bundle-sizes' menu .* is 'separable'"):
        joining.lottery_options(tf_ama.SeparableMenu(2, 2))


class _StopJoinedAt(StopAt):
    """Stops the joint phase (not the lottery phase) at the start of epoch `epoch`."""

    def on_epoch_begin(self, epoch, logs=None):
        if self.model.menu_layer.kind == "lottery+separable":
            super().on_epoch_begin(epoch, logs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("joined") / "run")
    return out, train_run(SETTING, out, KWARGS, TRAINING, verbose=0)


@pytest.mark.slow
def test_a_joined_run_trains_its_lottery_first_then_both(reference, tmp_path):
    out, model = reference
    with open(os.path.join(out, "config.json")) as file:
        config = json.load(file)
    assert config["start"]["lottery_run"] == LOTTERY_RUN and "shift" in config["start"]
    # The lottery phase is the plain lottery run of the same arguments, bit for bit.
    lottery_kwargs = {k: v for k, v in KWARGS.items() if k not in ("menu", "reserves")}
    plain = train_run(SETTING, str(tmp_path / "plain"), lottery_kwargs, TRAINING, verbose=0)
    phase = tf_ama.training.runs.load_run(os.path.join(out, LOTTERY_RUN))[0]
    for got, want in zip(phase.exact_menu(), plain.exact_menu(), strict=True):
        assert np.array_equal(got, want)
    # Both parts then trained together; the run keeps the better of the join (its start) and
    # the trained menu on the validation sample.
    with open(os.path.join(out, "selection.json")) as file:
        kept = json.load(file)["kept"]
    family_moved = not np.array_equal(model.exact_menu().separable_boosts[-1], [0.5, 0.5])
    assert family_moved == (kept == "trained")
    if kept == "start":
        np.testing.assert_allclose(model.exact_menu().boosts[1:],
                                   phase.exact_menu().boosts[1:] + config["start"]["shift"],
                                   rtol=0, atol=1e-6)
    with open(os.path.join(out, "history.csv")) as file:
        assert len(file.read().splitlines()) == 1 + 2  # the joint phase's 2 epochs


@pytest.mark.slow
@pytest.mark.parametrize("stop", [StopAt(1), _StopJoinedAt(1)], ids=["lottery", "joint"])
def test_an_interrupted_joined_run_resumes_bit_identically(reference, tmp_path, stop):
    out = str(tmp_path / "run")
    with pytest.raises(Stop):
        train_run(SETTING, out, KWARGS, TRAINING, verbose=0, callbacks=[stop])
    resumed = train_run(SETTING, out, KWARGS, TRAINING, verbose=0)
    for got, want in zip(resumed.exact_menu(), reference[1].exact_menu(), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.slow
def test_a_different_joint_phase_is_refused_before_anything_trains(reference):
    out, _ = reference
    other = TrainingConfig(**{**TRAINING.to_dict(), "joint_steps": 150})
    with pytest.raises(ValueError, match="already holds a run with a different configuration"):
        train_run(SETTING, out, KWARGS, other, verbose=0)


@pytest.mark.slow
def test_tf_ama_train_a_joined_menu(tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert main(["train", SETTING, "--menu", "lottery+separable", "--menu-size", "8",
                 "--steps", "50", "--joint-steps", "50", "--steps-per-epoch", "50",
                 "--batch-size", "128", "--validation-samples", "500", "--samples", "2000",
                 "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "joined with the item-separable family" in printed
    assert "family chosen on" in printed and "lottery+separable menu" in printed
    assert "its lottery menu alone" in printed
    assert os.path.exists(os.path.join(out, LOTTERY_RUN, "evaluation.json"))
    assert os.path.getsize(os.path.join(out, "separable_boosts.png")) > 0
    with open(os.path.join(out, "evaluation.json")) as file:
        assert 0 < json.load(file)["family_share"] < 1


@pytest.mark.slow
@pytest.mark.parametrize("learning_rate", [0.2, 0.001])
def test_a_family_run_ends_no_worse_than_its_start_on_validation(tmp_path, learning_rate):
    """The family alone starts at separate Myerson, where the gradient is mostly noise: the
    run keeps whichever of start and trained state has the higher exact validation revenue."""
    out = str(tmp_path / "family")
    training = TrainingConfig(steps=100, steps_per_epoch=50, batch_size=256,
                              validation_samples=3000, learning_rate=learning_rate)
    model = train_run(SETTING, out, {"menu": "separable", "reserves": [0.5, 0.5]}, training,
                      verbose=0)
    with open(os.path.join(out, "selection.json")) as file:
        selection = json.load(file)
    revenues = selection["validation_revenue"]
    assert selection["kept"] == max(revenues, key=revenues.get)
    report = tf_ama.evaluate(model, 3000, selection["seed"], baselines=False)
    assert report.revenue == revenues[selection["kept"]]
    if selection["kept"] == "start":
        np.testing.assert_array_equal(model.exact_menu().separable_boosts,
                                      [[0, 0], [0, 0], [0.5, 0.5]])


def test_joint_steps_are_whole_epochs_only_where_they_are_used(tmp_path):
    config = TrainingConfig(steps=600, steps_per_epoch=300)  # the default joint_steps (1000)
    assert config.epochs == 2  # is not checked for a menu without the joint phase
    with pytest.raises(ValueError, match=r"`joint_steps` \(1000\) must be a multiple of "
                                         r"`steps_per_epoch` \(300\)"):
        train_run(SETTING, str(tmp_path / "run"), KWARGS, config, verbose=0)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_a_resumed_joint_phase_keeps_its_recorded_shift(reference, tmp_path, monkeypatch):
    """The shift is chosen once; a resumed run joins at the one its config records."""
    out = str(tmp_path / "run")
    with pytest.raises(Stop):
        train_run(SETTING, out, KWARGS, TRAINING, verbose=0, callbacks=[_StopJoinedAt(1)])
    monkeypatch.setattr(joining, "choose_shift", None)  # would fail if called
    resumed = train_run(SETTING, out, KWARGS, TRAINING, verbose=0)
    for got, want in zip(resumed.exact_menu(), reference[1].exact_menu(), strict=True):
        assert np.array_equal(got, want)
