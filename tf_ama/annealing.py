"""Temperature annealing: raise the relaxation's inverse temperature during training.

The soft revenue at `lambda = 100` (the paper's value) is a smooth stand-in for the exact
revenue; training converges to a menu that is good for that stand-in. Raising `lambda`
afterwards sharpens the relaxation towards the exact argmax and moves the menu to where the
exact revenue is higher (measured on unit_demand_2x4_spherical: +0.04 to +0.12 over the
plateau at `lambda = 100`, every run; benchmarks/README.md). Each change costs one retrace.

    model.fit(..., epochs=50, callbacks=[tf_ama.TemperatureScheduler(
        tf_ama.annealing_schedule(100.0, 1000.0, epochs=50, start_epoch=30))])

`TemperatureScheduler` mirrors `keras.callbacks.LearningRateScheduler`: `schedule(epoch,
temperature) -> temperature` is called at the start of every epoch. A schedule that depends
only on the epoch also holds after a run resumes from its checkpoint (`tf_ama.checkpoints`,
which also restores the temperature).
"""

from __future__ import annotations

import math
import numbers

import keras


def is_positive_finite(value):
    """True for a (non-bool) int or float that is finite and > 0: a valid temperature."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def annealing_schedule(start_temperature, final_temperature, epochs, start_epoch):
    """`schedule(epoch, temperature)`: `start_temperature` before `start_epoch`, then a
    geometric rise, one step per epoch from `start_epoch` on, reaching `final_temperature` at
    the last epoch (`epochs - 1`)."""
    for name, value in (("start_temperature", start_temperature),
                        ("final_temperature", final_temperature)):
        if not is_positive_finite(value):
            raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    for name, value in (("epochs", epochs), ("start_epoch", start_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an int >= 0; got {value!r}.")
    if not start_epoch < epochs:
        raise ValueError(f"`start_epoch` ({start_epoch}) must be < `epochs` ({epochs}): "
                         "annealing needs at least one epoch.")
    span = epochs - start_epoch
    ratio = float(final_temperature) / float(start_temperature)

    def schedule(epoch, temperature=None):
        if epoch < start_epoch:
            return float(start_temperature)
        return float(start_temperature) * ratio ** min(1.0, (epoch - start_epoch + 1) / span)

    return schedule


def phase_schedule(phase_epochs, values):
    """`schedule(epoch, current=None)`: `values[i]` during phase `i`, phases of
    `phase_epochs[i]` epochs one after the other (a phase may have 0 epochs); the last value
    after the last phase. For `TemperatureScheduler` and `keras.callbacks.LearningRateScheduler`
    alike, e.g. lambda 10, 30, 100 then 300 with the learning rate falling at the end:

        epochs = [4, 4, 4, 2]
        TemperatureScheduler(phase_schedule(epochs, [10, 30, 100, 300]), scale_learning_rate=False)
        keras.callbacks.LearningRateScheduler(phase_schedule(epochs, [0.01, 0.01, 0.01, 0.003]))
    """
    phase_epochs, values = list(phase_epochs), list(values)  # lists, tuples or numpy arrays
    if len(phase_epochs) != len(values) or not values:
        raise ValueError(f"`phase_epochs` and `values` must be non-empty and of the same length; "
                         f"got {len(phase_epochs)} and {len(values)}.")
    for epochs in phase_epochs:
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"`phase_epochs` must be ints >= 0; got {phase_epochs}.")
    for value in values:  # numpy numbers too
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(value) or value <= 0):
            raise ValueError(f"`values` must be finite numbers > 0; got {values}.")
    ends = [sum(phase_epochs[:index + 1]) for index in range(len(values))]
    values = [float(value) for value in values]

    def schedule(epoch, current=None):
        return next((value for end, value in zip(ends, values) if epoch < end), values[-1])

    return schedule


class TemperatureScheduler(keras.callbacks.Callback):
    """Sets `model.temperature` to `schedule(epoch, model.temperature)` at each epoch start.

    Args:
      schedule: a function `(epoch, temperature) -> temperature` (e.g. `annealing_schedule`).
      scale_learning_rate: also set the optimizer's learning rate to
        `initial_lr * initial_temperature / temperature`. The relaxation's gradients grow
        like `lambda`; with this, Adam's step in the soft payments stays the same size.
      verbose: print each change.

    The temperature is a Python number in the traced step, so each change retraces the
    training function once. The epoch's temperature is logged as `temperature` (History,
    CSVLogger and TensorBoard see it).
    """

    def __init__(self, schedule, scale_learning_rate=True, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"`schedule` must be callable (epoch, temperature) -> temperature; "
                            f"got {schedule!r}.")
        self.schedule = schedule
        self.scale_learning_rate = bool(scale_learning_rate)
        self.verbose = verbose
        self._initial = None

    def set_model(self, model):
        super().set_model(model)
        # Read once, before the checkpoint callback (at train begin) can restore an annealed rate.
        if self._initial is None:
            if self.scale_learning_rate and not hasattr(model.optimizer.learning_rate, "assign"):
                raise ValueError("The optimizer's learning rate is a schedule, which this "
                                 "callback cannot rescale; pass scale_learning_rate=False.")
            self._initial = (model.temperature,
                             float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))

    def on_epoch_begin(self, epoch, logs=None):
        temperature = self.schedule(epoch, self.model.temperature)
        if not is_positive_finite(temperature):
            raise ValueError(f"The temperature schedule returned {temperature!r} at epoch "
                             f"{epoch}; it must return a finite number > 0.")
        temperature = float(temperature)
        if self.scale_learning_rate:
            initial_temperature, initial_rate = self._initial
            self.model.optimizer.learning_rate.assign(
                initial_rate * initial_temperature / temperature)
        if temperature != self.model.temperature:
            self.model.temperature = temperature
            self.model.make_train_function(force=True)
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: TemperatureScheduler setting temperature to "
                      f"{temperature:g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = self.model.temperature
