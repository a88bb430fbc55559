"""The active set (`tf_ama.models.active_set`): its gaps against a NumPy loop, its step against the
full step within the stated bound, the full path when every entry is in play, resume,
replicas, XLA and bad input."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from builders import lottery_menu

import tf_ama
from tf_ama.core import allocations as menus
from tf_ama.models.active_set import ActiveSet, capacities, entry_gaps
from tf_ama.core.relaxation import batched_revenue_and_gradients


def numpy_gaps(valuations, allocations, boosts, weights):
    """Each entry's smallest gap to the best, over profiles and the m + 1 maximizations."""
    gaps = np.full(len(boosts), np.inf)
    for v in valuations:
        values = np.einsum("ij,kij->ik", v, allocations)  # [m, K]
        welfare = weights @ values + boosts
        rows = [welfare] + [welfare - weights[i] * values[i] for i in range(len(weights))]
        for row in rows:
            gaps = np.minimum(gaps, row.max() - row)
    return gaps


def far_menu(seed, num_bidders=2, num_items=2, menu_size=256, near=24):
    """A random lottery menu whose entries past `near` have boosts 20 below: out of play."""
    rng = np.random.RandomState(seed)
    allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size, 0.3)
    boosts[near:] -= 20.0
    weights = rng.uniform(0.5, 2.0, num_bidders)
    valuations = rng.uniform(0, 2, (300, num_bidders, num_items))
    return valuations, allocations, boosts, weights


def test_capacities_are_powers_of_two_from_64_to_a_quarter_of_the_menu():
    assert capacities(255) == []
    assert capacities(256) == [64]
    assert capacities(4096) == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize("micro", [None, 7, 64, 300, 1000])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_entry_gaps_equal_a_numpy_loop(micro, scale):
    valuations, allocations, boosts, weights = far_menu(1, num_bidders=3, num_items=2,
                                                        menu_size=40, near=40)
    valuations, boosts = valuations * scale, boosts * scale
    got = entry_gaps(*(tf.constant(x) for x in (valuations, allocations, boosts, weights)),
                     micro_batch_size=micro)
    np.testing.assert_allclose(got, numpy_gaps(valuations, allocations, boosts, weights),
                               rtol=0, atol=1e-12 * scale)


def chosen_set(valuations, allocations, boosts, weights, temperature, margin):
    layer = ActiveSet(len(boosts), margin=margin)
    previous, chosen = layer.refresh(*(tf.constant(x) for x in (
        valuations, allocations, boosts, weights)), temperature, micro_batch_size=64,
        jit_compile=False).numpy()
    return layer, float(previous), float(chosen)


def test_the_step_over_the_active_set_is_the_full_step_within_the_stated_bound():
    valuations, allocations, boosts, weights = far_menu(2)
    temperature = 1.5  # soft, so that the neglected mass is small but measurable
    layer, previous, bound = chosen_set(valuations, allocations, boosts, weights,
                                        temperature, margin=12.0)
    assert previous == 0.0  # the whole menu, before the first choice
    assert int(layer.size()) == 64 and 1e-12 < bound < 1e-6
    gaps = numpy_gaps(valuations, allocations, boosts, weights)
    kept = np.asarray(layer.entries)[:64]
    assert set(np.flatnonzero(gaps <= 12.0 / temperature)) <= set(kept)
    np.testing.assert_allclose(bound, np.exp(-temperature * np.delete(gaps, kept)).sum(),
                               rtol=1e-9)

    menu = menus.Menu(*(tf.constant(x) for x in (allocations, boosts, weights)), None)
    batch = tf.constant(valuations)
    active_revenue, active = layer.revenue_and_gradients(
        batch, menu, temperature, micro_batch_size=50, jit_compile=False, sample_weight=None)
    full_revenue, full = batched_revenue_and_gradients(batch, *menu[:3], temperature,
                                                       micro_batch_size=50)
    # Each softmax neglects a mass eps <= bound: an expectation of O_i moves by at most
    # eps times O_i's range, a payment by 2 eps range / w_i.
    values = np.einsum("bij,kij->bik", valuations, allocations)
    welfare = np.einsum("i,bik->bk", weights, values) + boosts
    spread = np.ptp(welfare[:, None] - weights[None, :, None] * values, axis=-1).max()
    assert abs(float(active_revenue - full_revenue)) <= 2 * bound * spread * np.sum(1 / weights)
    assert float(active_revenue) != float(full_revenue)  # an approximation, not a copy
    # Gradients: each softmax's derivatives move by O(eps (1 + lambda range)).
    gradient_bound = 8 * bound * (1 + temperature * spread) * np.sum(1 / weights) * 2.0
    for a, f in zip(active, full):
        assert np.abs(a - f).max() <= gradient_bound
    left_out = np.setdiff1d(np.arange(len(boosts)), kept)
    assert not np.any(np.asarray(active[1])[left_out])  # no gradient for the left-out entries


@pytest.mark.slow
def test_a_menu_with_every_entry_in_play_takes_the_full_path_bit_for_bit():
    def trained(active_margin):
        model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=256, seed=3,
                                              temperature=1.0, active_margin=active_margin,
                                              active_refresh_steps=2)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        history = model.fit(tf_ama.fresh_valuations(128), epochs=1, steps_per_epoch=3,
                            verbose=0)
        return model, history.history

    full, _ = trained(None)
    active, logs = trained(25.0)
    assert logs["active_entries"] == [256.0] and logs["neglected_mass"] == [0.0]
    for a, b in zip(full.menu_layer.get_weights(), active.menu_layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def train_far(epochs=3, callbacks=(), strategy=None, jit_compile=False, data=None,
              optimizer="adam", active_margin=25.0, **options):
    """A 2x2 lottery model (K = 256) whose entries past 24 start with boosts 20 below the
    others (out of play), trained with the active set: 4 steps per epoch, refreshed every 3
    (so that an epoch ends between refreshes)."""
    with (strategy or tf.distribute.get_strategy()).scope():
        model = tf_ama.AffineMaximizerAuction(
            "additive_2x2_uniform", menu_size=256, seed=4, boost_init_scale=0.1,
            temperature=10.0, active_margin=active_margin, active_refresh_steps=3, **options)
        boosts = model.menu_layer.boosts
        boosts.assign(boosts - np.where(np.arange(1, 256) >= 24, 20.0, 0.0))
        model.compile(optimizer=keras.optimizers.get({"class_name": optimizer, "config": {
            "learning_rate": 0.01}}), jit_compile=jit_compile)
    history = model.fit(tf_ama.fresh_valuations(96) if data is None else data, epochs=epochs, steps_per_epoch=4,
                        verbose=0, callbacks=list(callbacks))
    return model, history.history


@pytest.mark.slow
def test_training_uses_the_active_set_and_reports_its_size_and_neglected_mass():
    model, logs = train_far()
    assert all(size == 64.0 for size in logs["active_entries"])
    assert all(0.0 <= mass <= 192 * np.exp(-25.0) for mass in logs["neglected_mass"])
    assert int(model.active_set.size()) == 64


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_resumed_run_takes_the_same_steps_and_sets(tmp_path):
    straight, _ = train_far()
    backup = os.path.join(tmp_path, "backup")
    with pytest.raises(KeyboardInterrupt):
        train_far(callbacks=[keras.callbacks.BackupAndRestore(backup), StopAfter(2)])
    resumed, _ = train_far(callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert int(resumed.optimizer.iterations) == 12
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_saved_model_keeps_its_active_set(tmp_path):
    model, _ = train_far(epochs=1)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.active_margin == 25.0 and loaded.active_refresh_steps == 3
    np.testing.assert_array_equal(loaded.active_set.entries, model.active_set.entries)
    assert int(loaded.active_set.size()) == 64


@pytest.mark.slow
def test_two_replicas_choose_the_set_of_the_whole_batch():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    valuations = tf_ama.get_setting("additive_2x2_uniform").sample(96, seed=5)
    data = tf.data.Dataset.from_tensors(valuations).repeat()  # the same batch, split in two
    single, _ = train_far(epochs=1, data=data,
                          strategy=tf.distribute.OneDeviceStrategy(devices[0]))
    mirrored, logs = train_far(epochs=1, data=data, strategy=tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()))
    assert logs["active_entries"] == [64.0]
    np.testing.assert_array_equal(mirrored.active_set.entries, single.active_set.entries)
    for a, b in zip(mirrored.menu_layer.get_weights(), single.menu_layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("active_margin", [None, 25.0])
@pytest.mark.parametrize("micro_batch_size", ["auto", 7, 1000])
def test_the_whole_step_compiles_with_xla_for_every_batch_and_micro_batch(micro_batch_size,
                                                                          active_margin):
    # SGD: Adam would turn the rounding noise of the padding entries' ~0 gradients into steps.
    # Given valuations (XLA draws other ones than TensorFlow's kernels from the same seed).
    valuations = tf_ama.get_setting("additive_2x2_uniform").sample(96, seed=6)
    options = dict(epochs=1, micro_batch_size=micro_batch_size, optimizer="sgd",
                   active_margin=active_margin,
                   data=tf.data.Dataset.from_tensors(valuations).repeat())
    default, logs = train_far(**options)
    compiled, compiled_logs = train_far(**options, jit_compile=True)
    np.testing.assert_allclose(compiled_logs["loss"], logs["loss"], rtol=1e-5)
    if active_margin is not None:
        assert int(compiled.active_set.size()) == int(default.active_set.size()) == 64
        # the same 24 entries in play first; the order of the far ones, which only pad the
        # set to its capacity, may differ where XLA rounds their gaps apart
        assert set(np.asarray(compiled.active_set.entries)[:24]) == set(
            np.asarray(default.active_set.entries)[:24])
    for a, b in zip(compiled.menu_layer.get_weights(), default.menu_layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"active_margin": 0.0}, "active_margin"),
    ({"active_margin": float("nan")}, "active_margin"),
    ({"active_margin": "25"}, "active_margin"),
    ({"active_margin": 25.0, "active_refresh_steps": 0}, "active_refresh_steps"),
    ({"active_refresh_steps": 2.5}, "active_refresh_steps"),
])
def test_bad_active_set_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=16, **kwargs)


@pytest.mark.slow
def test_tf_ama_train_takes_the_active_set_flags_and_logs_its_metrics(tmp_path, capsys):
    import csv
    import json

    from tf_ama.cli.app import main

    out = str(tmp_path / "run")
    assert main(["train", "additive_2x2_uniform", "--menu", "lottery", "--menu-size", "256",
                 "--steps", "4", "--steps-per-epoch", "2", "--batch-size", "64",
                 "--validation-samples", "200", "--samples", "300", "--restarts", "1",
                 "--no-polish", "--active-margin", "25", "--active-refresh-steps", "3",
                 "--out", out]) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"]["active_margin"] == 25.0
    assert config["model"]["active_refresh_steps"] == 3
    with open(os.path.join(out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(
        1 <= float(r["active_entries"]) <= 256 and float(r["neglected_mass"]) >= 0 for r in rows)
