"""The relative loss of a contextual model (issue 32): each step descends minus the log of its
soft revenue, so that every size counts by its relative gain; off by default, on by the
argument and the `--relative-loss` flag."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.cli.app import main
from tf_ama.models.contextual import ContextualAuction

SMALL = dict(menu_size=12, hidden=8, heads=2, blocks=1, jit_objective=False)


def test_the_relative_loss_is_the_gradient_of_minus_the_log_soft_revenue():
    """With `relative_loss` the step's gradient is automatic differentiation of
    `-log(soft revenue)` through the network; the logged loss is minus the soft revenue."""
    model = ContextualAuction("contextual_a", sizes=["2x3"], relative_loss=True, **SMALL)
    bids, bidder_context, item_context = model.setting.sample(24, 3, (2, 3))
    loss, gradients = model._gradients(bids, None, None, (bidder_context, item_context))
    gradients = model._relative(loss, gradients)
    with tf.GradientTape() as tape:
        menu = model.menu(bidder_context, item_context)
        revenue = tf.reduce_mean(tf.reduce_sum(tf_ama.soft_payments(
            bids, *menu[:3], model.temperature, separable_boosts=menu.separable_boosts), axis=1))
        objective = -tf.math.log(revenue)
    expected = tape.gradient(objective, model.trainable_variables)
    np.testing.assert_allclose(float(loss), -float(revenue), rtol=1e-5)
    compared = 0
    for got, want, variable in zip(gradients, expected, model.trainable_variables):
        assert (got is None) == (want is None), variable.path
        if want is None:
            continue
        compared += 1
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3,
                                   atol=2e-4 * float(tf.reduce_max(tf.abs(want))) + 1e-7,
                                   err_msg=variable.path)
    assert compared
    # Without it, the same step is the plain revenue's gradient: R times larger.
    plain = ContextualAuction("contextual_a", sizes=["2x3"], relative_loss=False, **SMALL)
    plain.set_weights(model.get_weights())
    plain_loss, unscaled = plain._gradients(bids, None, None, (bidder_context, item_context))
    assert plain._relative(plain_loss, unscaled) is unscaled
    for got, want in zip(unscaled, gradients):
        if want is not None:
            np.testing.assert_allclose(got.numpy(), want.numpy() * -float(loss), rtol=1e-5,
                                       atol=1e-9)


def test_the_option_is_recorded_checked_and_given_by_the_command_line(tmp_path, capsys):
    assert not ContextualAuction("contextual_a", sizes=["2x3"], **SMALL).relative_loss
    model = ContextualAuction("contextual_a", sizes=["2x3"], relative_loss=True, **SMALL)
    config = model.get_config()
    assert config["relative_loss"] is True
    assert ContextualAuction.from_config(config).relative_loss
    del config["relative_loss"]  # a model saved before the option: as it was trained
    assert not ContextualAuction.from_config(config).relative_loss
    with pytest.raises(ValueError, match="relative_loss"):
        ContextualAuction("contextual_a", sizes=["2x3"], relative_loss="yes", **SMALL)
    model_kwargs, _, record = resolve_contextual("--relative-loss")
    assert model_kwargs["relative_loss"] is True and "relative_loss" in str(record)
    assert "relative_loss" not in resolve_contextual()[0]
    assert main(["train", "additive_2x2_uniform", "--relative-loss", "--out",
                 str(tmp_path / "run")]) == 2
    assert "--relative-loss: only for contextual settings" in capsys.readouterr().err


def resolve_contextual(*flags):
    """The recipe `tf-ama train contextual_a --sizes 2x3 FLAGS` resolves to."""
    from tf_ama.cli.app import build_parser
    from tf_ama.cli.commands import contextual_recipe

    return contextual_recipe(build_parser().parse_args([
        "train", "contextual_a", "--sizes", "2x3", *flags, "--out", "unused"]))


@pytest.mark.slow
def test_two_replicas_train_on_fresh_auctions_of_several_sizes():
    """Under a MirroredStrategy of two (logical CPU) replicas: each size's step runs in a
    branch of its own, where replicas cannot synchronize, so the replicas' shares and the
    relative loss's revenue are taken outside it; the active set, which must synchronize
    inside, is refused by name."""
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in devices], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = ContextualAuction("contextual_a", sizes=["2x2", "2x3"],
                                  relative_loss=True, **SMALL)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(tf_ama.fresh_valuations(16), epochs=1, steps_per_epoch=3, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and history.history["loss"][-1] < 0
    assert int(model.optimizer.iterations.numpy()) == 3
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with strategy.scope():
        active = ContextualAuction("contextual_a", sizes=["2x2"], active_margin=25.0, **SMALL)
        active.compile(optimizer=keras.optimizers.Adam(1e-2))
    with pytest.raises(ValueError, match="active_margin"):
        active.fit(tf_ama.fresh_valuations(16), epochs=1, steps_per_epoch=1, verbose=0)
