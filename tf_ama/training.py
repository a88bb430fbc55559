"""Training runs: a model trained with Keras `fit` into a resumable run directory.

`train_run(setting, out, ...)` is what `tf-ama train` calls. It writes the run directory of
`tf_ama.runs` (config, TensorBoard logs, CSV history, checkpoints, the final model). A
`"lottery+separable"` menu is trained in the phases of `tf_ama.joining`: its lottery menu
alone, as a run of its own in `out/lottery/`, then joined with the item-separable family at
the shift chosen on the validation sample (recorded in the config as `start`), then both
jointly for `joint_steps`. A menu with the family starts at a known-good mechanism (separate
Myerson, or that join) and ends as the better of its start and its trained state by exact
revenue on the validation sample (`selection.json` says which). Re-run
with the same `out` and arguments, an interrupted run resumes from its last completed epoch
and a finished run is loaded, not trained again. A run killed at any moment (even while
writing a checkpoint: `tf_ama.checkpoints` publishes each one atomically) resumes into the
bit-identical model an uninterrupted run ends with: valuations are drawn from a stateless
stream keyed by the optimizer step, and the checkpoint holds the optimizer's state and step.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import sys
import warnings
from typing import Optional

import keras

from tf_ama import checkpoints, checks, joining, runs, seeds
from tf_ama.annealing import TemperatureScheduler, annealing_schedule
from tf_ama.menu_layers import LotteryMenu, LotterySeparableMenu
from tf_ama.model import (AffineMaximizerAuction, expectation_dataset, fresh_valuations,
                          valuation_dataset)
from tf_ama.settings import get_setting


LOTTERY_RUN = "lottery"  # the run folder of a joined menu's lottery phase, inside its run


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained (the model's own arguments live in its `get_config`)."""

    steps: int = 2000
    batch_size: int = 4096
    learning_rate: float = 0.01
    steps_per_epoch: int = 100
    validation_samples: int = 10_000
    evaluation_samples: int = 100_000
    jit_compile: object = "auto"  # Keras: XLA on accelerators, off on CPU-only machines
    # Temperature annealing (tf_ama.annealing): over the last `anneal_fraction` of the epochs,
    # lambda rises geometrically from the model's temperature to `final_temperature`, the
    # learning rate falling in proportion. None: the temperature stays fixed.
    final_temperature: Optional[float] = None
    anneal_fraction: float = 0.4
    # Discrete settings: train and validate on every profile weighted by its probability
    # (tf_ama.expectation_dataset) instead of on samples; batch_size and
    # validation_samples are then unused.
    exact_expectation: bool = False
    # A "lottery+separable" menu (tf_ama.joining): after `steps` of its lottery menu alone,
    # `joint_steps` of both parts at `joint_learning_rate`, at the model's temperature.
    joint_steps: int = 1000
    joint_learning_rate: float = 0.001

    def __post_init__(self):
        def checked(field, check, *args, **kwargs):  # stored as a plain int / float / bool
            object.__setattr__(self, field, check(field, getattr(self, field), *args, **kwargs))

        for field in ("steps", "batch_size", "steps_per_epoch", "validation_samples",
                      "evaluation_samples", "joint_steps"):
            checked(field, checks.integer, minimum=1)
        self.check_epochs("steps")
        if not (isinstance(self.jit_compile, bool) or self.jit_compile == "auto"):
            raise ValueError(f"`jit_compile` must be 'auto', True or False; got {self.jit_compile!r}.")
        checked("learning_rate", checks.number, above=0)
        checked("joint_learning_rate", checks.number, above=0)
        checked("final_temperature", functools.partial(checks.optional, checks.number), above=0)
        checked("exact_expectation", checks.boolean)
        checked("anneal_fraction", checks.number, above=0, maximum=1)

    def check_epochs(self, field):
        """Refuses `steps` or `joint_steps` (`field`) if not whole epochs (the joint steps are
        checked only for a menu that uses them)."""
        if getattr(self, field) % self.steps_per_epoch:
            raise ValueError(
                f"`{field}` ({getattr(self, field)}) must be a multiple of `steps_per_epoch` "
                f"({self.steps_per_epoch}): checkpoints are taken at epoch ends.")

    @property
    def epochs(self) -> int:
        return self.steps // self.steps_per_epoch

    def annealing_callbacks(self, temperature):
        """`[TemperatureScheduler]` for this config from the model's `temperature`, or `[]`."""
        if self.final_temperature is None:
            return []
        annealed = max(1, round(self.anneal_fraction * self.epochs))
        return [TemperatureScheduler(annealing_schedule(
            temperature, self.final_temperature, self.epochs, self.epochs - annealed))]

    def to_dict(self):
        return dataclasses.asdict(self)


def train_run(setting, out, model_kwargs=None, training=None, verbose: Optional[int] = None,
              callbacks=()):
    """Trains (or resumes) a run in directory `out`; returns the trained model.

    Args:
      setting: a `Setting` or a built-in setting name.
      out: the run directory (created; re-running with the same arguments resumes).
      model_kwargs: keyword arguments of `AffineMaximizerAuction` (menu, menu_size, ...).
      training: a `TrainingConfig`.
      verbose: Keras verbosity (default: progress bar on a terminal, one line per epoch otherwise).
      callbacks: extra Keras callbacks (of both phases of a "lottery+separable" menu).
    """
    setting = get_setting(setting)
    training = TrainingConfig() if training is None else training
    if not isinstance(training, TrainingConfig):
        raise TypeError(f"`training` must be a tf_ama.TrainingConfig; got {type(training).__name__}.")
    model = AffineMaximizerAuction(setting, **(model_kwargs or {}))
    if training.exact_expectation:  # refused here, before any file is written, if not discrete
        validation = expectation_dataset(
            setting, replicas=model.distribute_strategy.num_replicas_in_sync)
        data = validation.repeat()
    else:
        data = fresh_valuations(training.batch_size)
        validation = valuation_dataset(setting, training.validation_samples,
                                       seed=seeds.validation_seed(model.seed))
    config = {
        "setting": setting.to_dict(),
        "model": model.own_config(),
        "training": training.to_dict(),
    }
    config_path = os.path.join(out, runs.CONFIG)
    backup = os.path.join(out, runs.BACKUP)
    previous = None
    if os.path.exists(config_path):
        previous = runs.read_config(out, repair=True)
        _check_same_run(out, {k: v for k, v in previous.items() if k != "start"}, config,
                        config_path)
        runs.remove_leftovers(out)  # of writes a kill interrupted
        model_path = os.path.join(out, runs.MODEL)
        if os.path.exists(model_path):
            try:
                runs.check_model_file(model_path)
            except ValueError as error:
                warnings.warn(f"{error} Training it again.", stacklevel=2)
            else:
                print(f"{out}: this run has finished; loading its model (nothing to train).")
                checkpoints.remove_all(backup)  # left if killed just before it was removed
                return runs.load_run(out)[0]
    epochs, learning_rate = training.epochs, training.learning_rate
    annealing = training.annealing_callbacks(model.temperature)
    start = None  # a menu with the family starts at a known-good mechanism: rebuilt by this
    if isinstance(model.menu_layer, LotterySeparableMenu):
        training.check_epochs("joint_steps")
        config["start"], start = _lottery_phase(setting, out, model, training, verbose,
                                                callbacks, previous)
        if previous is not None:
            _check_same_run(out, previous, config, config_path)
        epochs = training.joint_steps // training.steps_per_epoch
        learning_rate, annealing = training.joint_learning_rate, []
    elif model.menu().separable_boosts is not None:  # at separate Myerson (menu_layers)
        start = functools.partial(AffineMaximizerAuction.from_config, model.get_config())
    resume = checkpoints.latest(backup)
    if resume is not None and resume.config is not None:
        _check_same_run(out, resume.config, config, resume.metadata_path)
    if not os.path.exists(config_path):
        runs.remove_leftovers(out)
        runs.write_json_atomic(config_path, config)
    _trim_history(os.path.join(out, runs.HISTORY), resume.epoch if resume is not None else 0)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  jit_compile=training.jit_compile)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(
        data,
        epochs=epochs,
        steps_per_epoch=training.steps_per_epoch,
        validation_data=validation,
        callbacks=[
            # Before the loggers, which then see the epoch's `temperature` in the logs.
            *annealing,
            keras.callbacks.CSVLogger(os.path.join(out, runs.HISTORY), append=True),
            keras.callbacks.TensorBoard(os.path.join(out, runs.LOGS)),
            *callbacks,
            # Last: restores after every set_model, records an epoch after the other callbacks.
            checkpoints.EpochCheckpoint(backup, resume, config, attributes=("temperature",)),
        ],
        verbose=verbose,
        shuffle=False,  # the data is one repeated batch; there is nothing to shuffle
    )
    if start is not None:
        model = _better_of_start_and_end(out, start, model, training, learning_rate)
    runs.save_model_atomic(model, os.path.join(out, runs.MODEL))
    checkpoints.remove_all(backup)  # only now: a run killed before resumes from it
    return model


def _better_of_start_and_end(out, start, trained, training, learning_rate):
    """`trained`, or the model `start()` builds if its exact revenue on the validation sample
    is higher; the choice is written to `out/selection.json`.

    A menu with the item-separable family starts at a known-good mechanism (separate
    Myerson; the join of a trained lottery menu), where the relaxation's gradient is mostly
    sampling noise, which Adam's normalized steps turn into a random walk (the family alone
    on additive_2x2_uniform: 0.833 at the start, 0.79 after 400 steps at the default
    learning rate). Keeping the better of the two on validation makes such a run never
    worse than its start on the validation sample."""
    from tf_ama.evaluation import evaluate

    start = start()
    start.compile(optimizer=keras.optimizers.Adam(learning_rate))
    seed = seeds.validation_seed(trained.seed)
    revenues = {name: evaluate(model, training.validation_samples, seed, baselines=False).revenue
                for name, model in (("start", start), ("trained", trained))}
    kept = "trained" if revenues["trained"] >= revenues["start"] else "start"
    runs.write_json_atomic(os.path.join(out, runs.SELECTION), {
        "validation_revenue": revenues, "validation_samples": training.validation_samples,
        "seed": seed, "kept": kept})
    if kept == "start":
        print(f"{out}: training did not raise the exact validation revenue of the start "
              f"({revenues['trained']:.4f} vs {revenues['start']:.4f}); keeping the start.")
    return trained if kept == "trained" else start


def _lottery_phase(setting, out, model, training, verbose, callbacks, previous):
    """Trains (or loads) the lottery menu of `model` (a "lottery+separable" one) alone in
    `out/lottery/` and joins it into `model` at the shift chosen on the validation sample
    (`tf_ama.joining`), or at the shift recorded in `previous` (the run's config, when it
    resumes: the choice is not made again); returns what the run's config records as
    `start`, and a function that builds that start again."""
    lottery_kwargs = {**model.own_config(),
                      "menu": LotteryMenu.from_config(joining.lottery_options(model.menu_layer))}
    defaults = TrainingConfig()  # the joint phase's fields are not the lottery run's
    lottery_training = dataclasses.replace(training, joint_steps=defaults.joint_steps,
                                           joint_learning_rate=defaults.joint_learning_rate)
    lottery = train_run(setting, os.path.join(out, LOTTERY_RUN), lottery_kwargs,
                        lottery_training, verbose, callbacks)
    recorded = (previous or {}).get("start", {})
    if "shift" in recorded:
        shift = recorded["shift"]
        joining.join(model, lottery, shift)
    else:
        validation = setting.sample(training.validation_samples,
                                    seeds.validation_seed(model.seed))
        shift, revenues = joining.choose_shift(model, lottery, validation)
        print(f"{out}: the lottery menu of {LOTTERY_RUN}/ joined with the item-separable family "
              f"at separate Myerson, its boosts shifted by {shift:g} (exact validation revenue "
              f"{revenues[shift]:.4f}); training both for {training.joint_steps} steps.")
    initial = model.get_config()

    def start():
        joined = AffineMaximizerAuction.from_config(initial)
        joining.join(joined, lottery, shift)
        return joined

    return {"lottery_run": LOTTERY_RUN, "shift": shift}, start


def _check_same_run(out, previous, config, source):
    """Refuses to resume a run whose recorded config (`previous`, read from `source`) is not
    `config`, the arguments added since it was recorded counting as their defaults."""
    previous = _with_new_defaults(previous, config)
    if previous != config:
        raise ValueError(
            f"--out {out!r} already holds a run with a different configuration ({source}); "
            "resume it with the same arguments or choose another --out directory.\n"
            f"  existing: {previous}\n  requested: {config}"
        )


def _trim_history(path, epoch):
    """Keeps the rows of `history.csv` for the epochs before `epoch`, where training resumes.

    CSVLogger appends a row at each epoch end, before the checkpoint that makes the epoch
    final; a run killed in between wrote a row that the resumed run writes again. Rows of
    later epochs and a row cut by a kill are dropped (atomically); a fresh start removes it.
    """
    if not os.path.exists(path):
        return
    if epoch == 0:
        os.remove(path)
        return
    with open(path, newline="") as file:
        lines = file.read().splitlines(keepends=True)
    if not lines or not lines[0].endswith("\n"):
        os.remove(path)  # not even a complete header
        return
    header = next(csv.reader([lines[0]]))
    column = header.index("epoch") if "epoch" in header else 0
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if (line.endswith("\n") and len(row) == len(header) and row[column].isdigit()
                and int(row[column]) < epoch):
            kept.append(line)
    if kept != lines:
        with runs.atomic_file(path, ".csv") as temporary, open(temporary, "w", newline="") as file:
            file.writelines(kept)


def _with_new_defaults(previous, config):
    """`previous` (a run's config.json) in the form of this version, so that a run started
    by an older one still resumes: the model's arguments as the model built from them
    records them (0.1's flat menu options become the menu layer's config; arguments added
    since count as their defaults), the training fields added since as their defaults."""
    previous = dict(previous)
    if isinstance(previous.get("model"), dict) and isinstance(previous.get("setting"), dict):
        try:
            previous["model"] = AffineMaximizerAuction(previous["setting"],
                                                       **previous["model"]).own_config()
        except (TypeError, ValueError):
            pass  # not a model this version builds: it differs from `config`
    if isinstance(previous.get("training"), dict):
        missing = set(config["training"]) - set(previous["training"])
        defaults = TrainingConfig().to_dict()
        previous["training"] = {**{key: defaults[key] for key in missing},
                                **previous["training"]}
    return previous
