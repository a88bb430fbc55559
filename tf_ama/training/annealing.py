"""Temperature annealing: raise the relaxation's inverse temperature during training.

The soft revenue at `lambda = 100` (the paper's value) is a smooth stand-in for the exact
revenue; training converges to a menu that is good for that stand-in. Raising `lambda`
afterwards sharpens the relaxation towards the exact argmax and moves the menu to where the
exact revenue is higher (on unit_demand_2x4_spherical, in every run: benchmarks/README.md,
"Spherical training"). Each change costs one retrace.

    model.fit(..., epochs=50, callbacks=[tf_ama.TemperatureScheduler(
        tf_ama.annealing_schedule(100.0, 1000.0, epochs=50, start_epoch=30))])

`TemperatureScheduler` mirrors `keras.callbacks.LearningRateScheduler`: `schedule(epoch,
temperature) -> temperature` is called at the start of every epoch. A schedule that depends
only on the epoch also holds after a run resumes from its checkpoint (`tf_ama.training.checkpoints`,
which also restores the temperature).
"""

from __future__ import annotations

import keras

from tf_ama.utils import checks


def annealing_schedule(start_temperature, final_temperature, epochs, start_epoch):
    """`schedule(epoch, temperature)`: `start_temperature` before `start_epoch`, then a
    geometric rise, one step per epoch from `start_epoch` on, reaching `final_temperature` at
    the last epoch (`epochs - 1`)."""
    start_temperature = checks.number("start_temperature", start_temperature, above=0)
    final_temperature = checks.number("final_temperature", final_temperature, above=0)
    epochs = checks.integer("epochs", epochs, minimum=0)
    start_epoch = checks.integer("start_epoch", start_epoch, minimum=0)
    if not start_epoch < epochs:
        raise ValueError(f"`start_epoch` ({start_epoch}) must be < `epochs` ({epochs}): "
                         "annealing needs at least one epoch.")
    span = epochs - start_epoch
    ratio = final_temperature / start_temperature

    def schedule(epoch, temperature=None):
        if epoch < start_epoch:
            return start_temperature
        return start_temperature * ratio ** min(1.0, (epoch - start_epoch + 1) / span)

    return schedule


def warmup_schedule(initial_temperature, temperature, warmup_epochs, then=None):
    """`schedule(epoch, current=None)`: a soft start, lambda rising geometrically from
    `initial_temperature` at epoch 0 to `temperature` at epoch `warmup_epochs` (one step per
    epoch), then `then(epoch, current)` (e.g. an `annealing_schedule` from `temperature`),
    or `temperature` if None."""
    initial_temperature = checks.number("initial_temperature", initial_temperature, above=0)
    temperature = checks.number("temperature", temperature, above=0)
    warmup_epochs = checks.integer("warmup_epochs", warmup_epochs, minimum=1)

    def schedule(epoch, current=None):
        if epoch < warmup_epochs:
            return initial_temperature * (temperature / initial_temperature) ** (
                epoch / warmup_epochs)
        return temperature if then is None else then(epoch, current)

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
    phase_epochs = [checks.integer(f"phase_epochs[{index}]", epochs, minimum=0)
                    for index, epochs in enumerate(phase_epochs)]
    values = [checks.number(f"values[{index}]", value, above=0)  # numpy numbers too
              for index, value in enumerate(values)]
    ends = [sum(phase_epochs[:index + 1]) for index in range(len(values))]

    def schedule(epoch, current=None):
        return next((value for end, value in zip(ends, values) if epoch < end), values[-1])

    return schedule


class TemperatureScheduler(keras.callbacks.Callback):
    """Sets `model.temperature` to `schedule(epoch, model.temperature)` at each epoch start.

    Args:
      schedule: a function `(epoch, temperature) -> temperature` (e.g. `annealing_schedule`).
      scale_learning_rate: also set the optimizer's learning rate to
        `initial_lr * min(1, initial_temperature / temperature)`. The relaxation's gradients
        grow like `lambda`; with this, Adam's step in the soft payments stays the same size
        as lambda rises (a soft start below the initial temperature keeps the initial rate).
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
        returned = self.schedule(epoch, self.model.temperature)
        try:
            temperature = checks.number("temperature", returned, above=0)
        except ValueError:
            raise ValueError(f"The temperature schedule returned {returned!r} at epoch "
                             f"{epoch}; it must return a finite number > 0.") from None
        if self.scale_learning_rate:
            initial_temperature, initial_rate = self._initial
            self.model.optimizer.learning_rate.assign(
                initial_rate * min(1.0, initial_temperature / temperature))
        if temperature != self.model.temperature:
            self.model.temperature = temperature
            self.model.make_train_function(force=True)
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: TemperatureScheduler setting temperature to "
                      f"{temperature:g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = self.model.temperature
