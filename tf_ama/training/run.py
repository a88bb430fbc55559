"""Training runs: a model trained with Keras `fit` into a resumable run directory.

`train_run(setting, out, ...)` is what `tf-ama train` calls. It writes the run directory of
`tf_ama.training.runs` (config, TensorBoard logs, CSV history, checkpoints, the final model). A
`"lottery+separable"` menu is trained in the phases of `tf_ama.training.joining`: its lottery menu
alone, as a run of its own in `out/lottery/`, then joined with the item-separable family at
the shift chosen on the validation sample (recorded in the config as `start`), then both
jointly for `joint_steps`. A menu with the family starts at a known-good mechanism (separate
Myerson, or that join) and ends as the better of its start and its trained state by exact
revenue on the validation sample (`selection.json` says which). Re-run
with the same `out` and arguments, an interrupted run resumes from its last completed epoch
and a finished run is loaded, not trained again. A run killed at any moment (even while
writing a checkpoint: `tf_ama.training.checkpoints` publishes each one atomically) resumes into the
bit-identical model an uninterrupted run ends with: valuations are drawn from a stateless
stream keyed by the optimizer step, and the checkpoint holds the optimizer's state and step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import warnings
from typing import Optional

import keras

from tf_ama.data.datasets import validation_sample
from tf_ama.menus.layers import LotteryMenu, LotterySeparableMenu
from tf_ama.models.auction import AffineMaximizerAuction
from tf_ama.training import checkpoints, joining, runs
from tf_ama.training.config import TrainingConfig
from tf_ama.training.history import copy_history, trim_history
from tf_ama.training.kinds import run_kind
from tf_ama.training.resume import check_same_run
from tf_ama.training.selection import exact_revenue, polish_run
from tf_ama.utils import checks, distributed, files, seeds

LOTTERY_RUN = "lottery"  # the run folder of a joined menu's lottery phase, inside its run
RESTARTS = "restarts"  # the folder of a run's restarts (restarts/0, restarts/1, ...)


def train_run(setting, out, model_kwargs=None, training=None, verbose: Optional[int] = None,
              callbacks=(), recipe=None):
    """Trains (or resumes) a run in directory `out`, then reports it there
    (`tf_ama.training.report`: the exact evaluation, `evaluation.json`, and the figures);
    returns the trained model.

    Args:
      setting: a `Setting` or a built-in setting name; or a contextual one
        (`ContextualSetting`, `"contextual_a"`: `tf_ama.training.contextual`).
      out: the run directory (created; re-running with the same arguments resumes).
      model_kwargs: keyword arguments of `AffineMaximizerAuction` (menu, menu_size, ...), or
        of `ContextualAuction` (sizes, menu_size, ...) for a contextual setting.
      training: a `TrainingConfig` (default: `TrainingConfig()`, or the contextual recipe's
        for the sizes of `model_kwargs`, `tf_ama.training.contextual.contextual_training`).
      verbose: Keras verbosity (default: progress bar on a terminal, one line per epoch otherwise).
      callbacks: extra Keras callbacks (of both phases of a "lottery+separable" menu).
      recipe: the record of the recipe these arguments come from (`tf_ama.training.recipes.resolve`),
        printed at start and kept in the run's config (not compared on resume).

    Trains under the `tf.distribute` strategy in scope. Under a MultiWorkerMirroredStrategy
    every worker calls it with the same arguments and only the chief writes `out`; the others
    train in a copy of it (`tf_ama.utils.distributed.run_directory`).
    """
    out = checks.directory("out", out)
    kind = run_kind(setting)
    training = kind.default_training(model_kwargs) if training is None else training
    with distributed.run_directory(out) as directory:
        model = _train_run(setting, directory, model_kwargs, training, verbose, callbacks, recipe)
        if distributed.is_chief():  # the one worker that writes the run directory
            kind.report(directory, model, training)
    return model


def train_contextual_run(setting, out, model_kwargs=None, training=None, verbose=None,
                         callbacks=()):
    """Deprecated: `train_run`, which trains contextual settings too."""
    warnings.warn("tf_ama.train_contextual_run is deprecated: tf_ama.train_run trains "
                  "contextual settings too (same arguments).", DeprecationWarning, stacklevel=2)
    return train_run(setting, out, model_kwargs, training, verbose, callbacks)


def _train_run(setting, out, model_kwargs, training, verbose, callbacks, recipe=None,
               restart=False):
    """`train_run` in `out`, the run directory this worker writes (`restart`: one of a run's
    restarts, `_restart_phase`)."""
    kind = run_kind(setting)
    training = kind.default_training(model_kwargs) if training is None else training
    if not isinstance(training, TrainingConfig):
        raise TypeError(f"`training` must be a tf_ama.TrainingConfig; got {type(training).__name__}.")
    model = kind.model(model_kwargs or {})
    kind.check(model, training)
    data, validation = kind.data(model, training)
    config = {
        "setting": kind.setting.to_dict(),
        "model": model.own_config(),
        "training": training.to_dict(),
        **({"contextual": True} if kind.contextual else {}),
    }
    if recipe is not None:
        config["recipe"] = recipe
        print(_describe(out, recipe, model, training))
    config_path = os.path.join(out, runs.CONFIG)
    backup = os.path.join(out, runs.BACKUP)
    previous = None
    if os.path.exists(config_path):
        previous = runs.read_config(out, repair=True)
        check_same_run(out, {k: v for k, v in previous.items() if k != "start"}, config,
                       config_path)
        files.remove_leftovers(out)  # of writes a kill interrupted
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
    annealing = training.annealing_callbacks(model.temperature,
                                             scale_learning_rate=not kind.contextual)
    start = None  # a menu with the family starts at a known-good mechanism: rebuilt by this
    if isinstance(model.menu_layer, LotterySeparableMenu):
        training.check_epochs("joint_steps")
        config["start"], start = _lottery_phase(kind.setting, out, model, training, verbose,
                                                callbacks, previous)
        if previous is not None:
            check_same_run(out, previous, config, config_path)
        epochs = training.joint_steps // training.steps_per_epoch
        learning_rate, annealing = training.joint_learning_rate, []
    else:  # a menu with the family starts at a known-good mechanism
        start = kind.start(model)
    chosen, initial_epoch = None, 0
    if training.restarts > 1 and not isinstance(model.menu_layer, LotterySeparableMenu):
        config["start"], chosen = _restart_phase(kind.setting, out, model, training, validation,
                                                 verbose, callbacks, previous)
        initial_epoch = training.selection_steps // training.steps_per_epoch
        if previous is not None:
            check_same_run(out, previous, config, config_path)
    resume = checkpoints.latest(backup)
    if resume is not None and resume.config is not None:
        check_same_run(out, resume.config, config, resume.metadata_path)
    if not os.path.exists(config_path):
        files.remove_leftovers(out)
        files.write_json_atomic(config_path, config)
    history = os.path.join(out, runs.HISTORY)
    if chosen is not None and resume is None:  # the curves start with the kept restart's
        kept = config["start"]["restarts"][config["start"]["kept"]]["run"]
        copy_history(os.path.join(out, kept, runs.HISTORY), history,
                      {"temperature": model.temperature} if annealing else {})
    trim_history(history, resume.epoch if resume is not None else initial_epoch)

    model.compile(optimizer=keras.optimizers.Adam(kind.learning_rate(training, learning_rate)),
                  jit_compile=kind.jit_compile(training))
    if chosen is not None:  # continues the chosen restart: its parameters and Adam's state
        _continue_from(model, chosen)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    with _refusing_divergence(model, out):
        model.fit(
            data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=training.steps_per_epoch,
            validation_data=validation,
            callbacks=[
                # Before the loggers, which then see the epoch's `temperature` in the logs.
                *annealing,
                keras.callbacks.CSVLogger(os.path.join(out, runs.HISTORY), append=True),
                keras.callbacks.TensorBoard(os.path.join(out, runs.LOGS)),
                *callbacks,
                # Last: restores after every set_model, records an epoch after the others.
                checkpoints.EpochCheckpoint(backup, resume, config, attributes=("temperature",)),
            ],
            verbose=verbose,
            shuffle=False,  # the data is one repeated batch; there is nothing to shuffle
        )
    if start is not None and not (restart and kind.contextual):
        # (A contextual restart is continued, not served: its start, per-context Myerson, is
        # another architecture, chosen only at the end of the run.)
        model = kind.select(out, start, model, training, learning_rate)
    if training.polish:
        polish_run(out, kind.setting, model, training, validation)
    runs.save_model_atomic(model, os.path.join(out, runs.MODEL))
    checkpoints.remove_all(backup)  # only now: a run killed before resumes from it
    return model


@contextlib.contextmanager
def _refusing_divergence(model, out):
    """Turns a training run whose parameters became NaN or inf (float32 overflow: values far
    beyond the temperature's scale) into one ValueError that says so and gives the fix,
    instead of the exact outcome's refusal of a non-finite menu deep in the graph."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError:
        if all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables):
            raise
        raise ValueError(
            f"{out}: training diverged: the menu's parameters overflowed float32 (the dtype "
            f"training computes in) at temperature {model.temperature:g}. Values far from their "
            "typical size, or a temperature far above 100 / (their size), make the "
            "relaxation's gradients overflow: scale the values down (an AMA is "
            "scale-equivariant: train on values / s, then boosts and payments scale by s) or "
            "lower --temperature.") from None


def _restart_phase(setting, out, model, training, validation, verbose, callbacks, previous):
    """Trains (or loads) `training.restarts` initializations of `model` for
    `training.selection_steps`, each in `out/restarts/r` (model seed `seed + 1000 r`, the
    model's own for r = 0; the same training data), and returns what the run's config
    records as `start` (every restart's exact validation revenue, the one kept) and the
    kept restart's model. A resumed run keeps its recorded choice."""
    epochs = training.selection_steps // training.steps_per_epoch
    early = dataclasses.replace(  # the same soft start, no annealing, no polish
        training, steps=training.selection_steps, restarts=1, restart_steps=None,
        polish=False, final_temperature=None,
        warmup_fraction=min(1.0, max(training.warmup_epochs, 1) / epochs))
    recorded = (previous or {}).get("start", {})
    trained, rows = [], []
    for restart in range(training.restarts):
        seed = seeds.restart_seed(model.seed, restart)
        run = os.path.join(RESTARTS, str(restart))
        print(f"{out}: restart {restart + 1} of {training.restarts} (model seed {seed}), "
              f"{early.steps} steps in {run}/")
        trained.append(_train_run(setting, os.path.join(out, run), _reseeded(model, seed),
                                  early, verbose, callbacks, restart=True))
        rows.append({"run": run, "seed": seed})
    if "kept" in recorded:
        rows, kept = recorded["restarts"], recorded["kept"]
    else:
        for row, restart in zip(rows, trained):
            row["validation_revenue"] = exact_revenue(restart, validation)
        kept = max(range(len(rows)), key=lambda r: rows[r]["validation_revenue"])
        print(f"{out}: exact validation revenue of the restarts "
              f"{[round(row['validation_revenue'], 4) for row in rows]}; training restart "
              f"{kept} on to {training.steps} steps.")
    return {"restarts": rows, "kept": kept}, trained[kept]


def _reseeded(model, seed):
    """The arguments of `model` with `seed` as the seed of its initial parameters (its
    menu's too), its training data seeded as before."""
    kwargs = model.own_config()
    menu = copy.deepcopy(kwargs["menu"])
    menu["config"]["seed"] = seed
    return {**kwargs, "menu": menu, "seed": seed, "data_seed": model.data_seed}


def _continue_from(model, restart):
    """Sets `model`'s parameters and optimizer state (Adam's moments and step, so that the
    training data goes on where the restart stopped) to those of `restart`."""
    model.set_weights(restart.get_weights())
    model.optimizer.build(model.trainable_variables)
    if len(model.optimizer.variables) == len(restart.optimizer.variables):
        for variable, value in zip(model.optimizer.variables, restart.optimizer.variables):
            variable.assign(value)


def _lottery_phase(setting, out, model, training, verbose, callbacks, previous):
    """Trains (or loads) the lottery menu of `model` (a "lottery+separable" one) alone in
    `out/lottery/` and joins it into `model` at the shift chosen on the validation sample
    (`tf_ama.training.joining`), or at the shift recorded in `previous` (the run's config, when it
    resumes: the choice is not made again); returns what the run's config records as
    `start`, and a function that builds that start again."""
    lottery_kwargs = {**model.own_config(),
                      "menu": LotteryMenu.from_config(joining.lottery_options(model.menu_layer))}
    defaults = TrainingConfig()  # the joint phase's fields are not the lottery run's
    lottery_training = dataclasses.replace(training, joint_steps=defaults.joint_steps,
                                           joint_learning_rate=defaults.joint_learning_rate)
    lottery = _train_run(setting, os.path.join(out, LOTTERY_RUN), lottery_kwargs,
                         lottery_training, verbose, callbacks)
    recorded = (previous or {}).get("start", {})
    if "shift" in recorded:
        shift = recorded["shift"]
        joining.join(model, lottery, shift)
    else:
        validation = validation_sample(setting, training.validation_samples,
                                       seeds.validation_seed(model.seed))
        shift, revenues = joining.choose_shift(model, lottery, validation)
        family = ("bundle-size" if model.menu_layer.size_boosts("float32") is not None
                  else "item-separable")
        print(f"{out}: the lottery menu of {LOTTERY_RUN}/ joined with the {family} family "
              f"at separate Myerson, its boosts shifted by {shift:g} (exact validation revenue "
              f"{revenues[shift]:.4f}); training both for {training.joint_steps} steps.")
    initial = model.get_config()

    def start():
        joined = AffineMaximizerAuction.from_config(initial)
        joining.join(joined, lottery, shift)
        return joined

    return {"lottery_run": LOTTERY_RUN, "shift": shift}, start


def _describe(out, recipe, model, training):
    """What a run with a recipe prints at start: the recipe and every field it sets."""
    model_config = model.own_config()
    menu_options = model_config.pop("menu")["config"]
    fields = {**{k: v for k, v in menu_options.items() if k not in ("name", "trainable",
                                                                    "dtype", "num_bidders",
                                                                    "num_items", "demand")},
              **model_config, **training.to_dict()}
    overridden = recipe["overridden"]
    lines = [f"{out}: recipe {recipe['name']!r}: {recipe['summary']}",
             "  " + ", ".join(f"{k}={v}" + ("*" if k in overridden else "")
                              for k, v in fields.items())]
    if overridden:
        lines.append("  (* given, overriding the recipe)")
    return "\n".join(lines)


