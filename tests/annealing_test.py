"""Tests of tf_ama.training.annealing: the schedule, the callback's effect on training, resume."""

import os

import keras
import numpy as np
import pytest

import tf_ama
from tf_ama.training import annealing
from tf_ama.training.run import TrainingConfig


def _model(temperature=100.0, seed=5):
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=16, seed=seed,
                                          temperature=temperature)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def _parameters(model):
    return [v.numpy() for v in model.trainable_variables]


def _fit(model, callbacks=(), epochs=3):
    return model.fit(tf_ama.fresh_valuations(64), epochs=epochs, steps_per_epoch=2, verbose=0,
                     callbacks=list(callbacks))


def test_annealing_schedule_is_flat_then_geometric():
    schedule = annealing.annealing_schedule(100.0, 1000.0, epochs=6, start_epoch=3)
    values = [schedule(epoch) for epoch in range(6)]
    np.testing.assert_allclose(values, [100, 100, 100, 100 * 10 ** (1 / 3),
                                        100 * 10 ** (2 / 3), 1000], rtol=1e-12)
    single = annealing.annealing_schedule(100.0, 300.0, epochs=4, start_epoch=3)
    assert [single(epoch) for epoch in range(4)] == [100.0, 100.0, 100.0, 300.0]


@pytest.mark.parametrize("kwargs,match", [
    (dict(start_temperature=0.0), "start_temperature"),
    (dict(final_temperature=float("inf")), "final_temperature"),
    (dict(epochs=2.5), "epochs"),
    (dict(start_epoch=-1), "start_epoch"),
    (dict(start_epoch=6), "must be < `epochs`"),
])
def test_annealing_schedule_refuses_bad_arguments(kwargs, match):
    arguments = dict(start_temperature=100.0, final_temperature=1000.0, epochs=6, start_epoch=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        annealing.annealing_schedule(**arguments)


def test_phase_schedule_steps_through_the_phases():
    schedule = annealing.phase_schedule([2, 0, 1, 3], [10, 20, 30.0, 300])
    assert [schedule(epoch) for epoch in range(8)] == [10, 10, 30, 300, 300, 300, 300, 300]
    assert all(isinstance(schedule(epoch), float) for epoch in range(8))
    from_numpy = annealing.phase_schedule(np.array([2, 0, 1, 3]), np.array([10.0, 20, 30, 300]))
    assert [from_numpy(epoch) for epoch in range(8)] == [schedule(epoch) for epoch in range(8)]
    for phase_epochs, values, match in [
            ([1, 2], [10.0], "same length"), ([], [], "non-empty"),
            ([1, -1], [1.0, 2.0], r"`phase_epochs\[1\]` must be an int >= 0"),
            ([1, 1.5], [1.0, 2.0], r"`phase_epochs\[1\]` must be an int"),
            ([1, 1], [1.0, 0.0], r"`values\[1\]` must be a finite number > 0")]:
        with pytest.raises(ValueError, match=match):
            annealing.phase_schedule(phase_epochs, values)


@pytest.mark.slow
def test_phase_schedules_set_temperature_and_learning_rate_per_epoch():
    model = _model()
    history = _fit(model, [
        annealing.TemperatureScheduler(annealing.phase_schedule([1, 2], [30.0, 300.0]),
                                       scale_learning_rate=False),
        keras.callbacks.LearningRateScheduler(annealing.phase_schedule([1, 2], [0.01, 0.002]))])
    assert history.history["temperature"] == [30.0, 300.0, 300.0]
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.002, 0.002])


@pytest.mark.slow
def test_scheduled_temperature_is_the_temperature_trained_with():
    # A schedule that sets 1000 from the first epoch trains exactly like a model built with
    # temperature 1000 (same seeds); the default temperature trains differently.
    constant = _model(temperature=1000.0)
    _fit(constant)
    scheduled = _model(temperature=100.0)
    history = _fit(scheduled, [annealing.TemperatureScheduler(lambda epoch, t: 1000.0,
                                                              scale_learning_rate=False)])
    plain = _model(temperature=100.0)
    _fit(plain)
    for a, b in zip(_parameters(constant), _parameters(scheduled)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b)
               for a, b in zip(_parameters(plain), _parameters(scheduled)))
    assert scheduled.temperature == 1000.0
    assert history.history["temperature"] == [1000.0] * 3


@pytest.mark.slow
def test_learning_rate_scales_inversely_with_the_temperature():
    model = _model()
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        (model.temperature, float(model.optimizer.learning_rate.numpy()))))
    schedule = annealing.annealing_schedule(100.0, 400.0, epochs=3, start_epoch=1)
    _fit(model, [annealing.TemperatureScheduler(schedule), record])
    np.testing.assert_allclose(seen, [(100, 0.01), (200, 0.005), (400, 0.0025)], rtol=1e-6)


@pytest.mark.slow
def test_resume_after_interruption_follows_the_schedule(tmp_path):
    schedule = annealing.annealing_schedule(100.0, 1000.0, epochs=4, start_epoch=1)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    straight = _model()
    _fit(straight, [annealing.TemperatureScheduler(schedule)], epochs=4)
    backup = os.path.join(tmp_path, "backup")
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), [keras.callbacks.BackupAndRestore(backup),
                        annealing.TemperatureScheduler(schedule), Interrupt()], epochs=4)
    resumed = _model()
    _fit(resumed, [keras.callbacks.BackupAndRestore(backup),
                   annealing.TemperatureScheduler(schedule)], epochs=4)
    assert resumed.temperature == straight.temperature == 1000.0
    np.testing.assert_allclose(float(resumed.optimizer.learning_rate.numpy()), 0.001, rtol=1e-6)
    for a, b in zip(_parameters(straight), _parameters(resumed)):
        np.testing.assert_array_equal(a, b)


def test_scheduler_refuses_a_bad_schedule():
    with pytest.raises(TypeError, match="`schedule` must be callable"):
        annealing.TemperatureScheduler(100.0)
    with pytest.raises(ValueError, match="returned -1.0 at epoch 0"):
        _fit(_model(), [annealing.TemperatureScheduler(lambda epoch, t: -1.0)], epochs=1)


def test_training_config_builds_the_scheduler():
    assert TrainingConfig().annealing_callbacks(100.0) == []
    config = TrainingConfig(steps=1000, steps_per_epoch=100, final_temperature=1000.0,
                            anneal_fraction=0.3)
    (callback,) = config.annealing_callbacks(100.0)
    assert [callback.schedule(epoch) for epoch in (0, 6, 9)] == [100.0, 100.0, 1000.0]
    assert callback.schedule(7) > 100.0  # the last 3 of 10 epochs anneal
    for kwargs, match in ((dict(final_temperature=0.0), "final_temperature"),
                          (dict(anneal_fraction=0.0), "anneal_fraction")):
        with pytest.raises(ValueError, match=match):
            TrainingConfig(**kwargs)
