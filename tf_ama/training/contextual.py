"""Training runs of contextual auctions: `tf-ama train contextual_a --sizes 2x5`.

`train_contextual_run(setting, out, ...)` writes the same run directory as `train_run`
(`tf_ama.training.runs`: config, TensorBoard logs, CSV history, atomic checkpoints, the final model)
and resumes the same way: the auctions of a step are drawn from a stateless stream keyed by
the optimizer step, and the checkpoint holds the optimizer's state and step, so a run killed
at any moment resumes into the model an uninterrupted run ends with.

The learning rate decays along a cosine from `learning_rate` to a tenth of it over the run
(Keras `CosineDecay`, a function of the step: resumable), so that the run ends on a settled
menu rather than on one noisy step. Validation is the exact revenue on `validation_samples`
fresh auctions of every trained size (seed + 1). A menu with the item-separable family, on a
value model with `uniform_bounds`, ends as its trained state only if that beats Myerson's
optimal separate auction per context (the family alone, untrained: a `ContextualAuction` of
`menu_size=1`) on those auctions by more than `SIGNIFICANCE` paired standard errors, else as
Myerson; `selection.json` records both revenues, the paired gain with its standard error and
the one kept, so a run does not end below per-context Myerson by a choice made on noise.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Optional

import keras

from tf_ama.training import checkpoints, runs
from tf_ama.utils import checks, files, seeds
from tf_ama.data.contexts import get_contextual_setting
from tf_ama.models.contextual import ContextualAuction, contextual_dataset
from tf_ama.evaluation.contextual import SizeReport, evaluate_contextual
from tf_ama.data.datasets import fresh_valuations
from tf_ama.training.config import TrainingConfig

# The defaults of a contextual run where `TrainingConfig`'s (made for one fixed menu) do not
# fit a network: smaller batches at a smaller learning rate. From the Myerson start (with
# bundles) 2x5 is within 0.003 of its end after 200 steps (docs/design.md §10).
CONTEXTUAL_TRAINING = dict(steps=1000, batch_size=512, learning_rate=0.001)
FINAL_LEARNING_RATE_FRACTION = 0.1
# A run keeps its trained menu over per-context Myerson only if its paired gain on the
# validation auctions exceeds this many standard errors: a gain within noise is not one.
SIGNIFICANCE = 2.0
# TrainingConfig fields a contextual run does not implement, with their neutral values.
_UNSUPPORTED = dict(final_temperature=None, initial_temperature=None, exact_expectation=False,
                    restarts=1, restart_steps=None, polish=False, polish_perturbations=0)


def contextual_training(**overrides):
    """The `TrainingConfig` of a contextual run: `CONTEXTUAL_TRAINING` and `overrides`."""
    return TrainingConfig(**{**CONTEXTUAL_TRAINING, **overrides})


def default_menu_size(sizes):
    """64 entries; 128 when a trained size has 20 or more bidder-item pairs (3x10)."""
    return 128 if max(m * n for m, n in sizes) >= 20 else 64


# `tf-ama train --menu` for a contextual menu: whether the family joins, and whether there
# are lotteries (menu_size 1: the family alone).
_MENU_KINDS = {"lottery+separable": True, "lottery": False, "separable": True}


def contextual_defaults(setting, given):
    """`(model_kwargs, TrainingConfig)` of `tf-ama train` for a contextual setting: the
    command line's `given` arguments (names as in `AffineMaximizerAuction`, `TrainingConfig`
    and `ContextualAuction`) over the defaults; arguments that have no meaning for a
    contextual menu are refused by name."""
    setting = get_contextual_setting(setting)
    given = dict(given)
    kind = given.pop("menu", "lottery+separable")
    if kind not in _MENU_KINDS:
        raise ValueError(f"--menu {kind}: a contextual menu is one of {sorted(_MENU_KINDS)}.")
    training_fields = {f for f in TrainingConfig.__dataclass_fields__}
    training = {k: given.pop(k) for k in list(given) if k in training_fields}
    model = {"separable": _MENU_KINDS[kind]}
    if given.get("micro_batch_size") == "auto":
        given["micro_batch_size"] = None
    for name in ("sizes", "menu_size", "seed", "temperature", "learn_bidder_weights",
                 "micro_batch_size", "hidden", "heads", "blocks", "linear_family_boosts",
                 "bundles"):
        if name in given:
            model[name] = given.pop(name)
    if given:
        raise ValueError(f"Not for a contextual setting: {sorted(given)}.")
    sizes = model.setdefault("sizes", setting.sizes)
    model["menu_size"] = 1 if kind == "separable" else model.get("menu_size",
                                                                 default_menu_size(sizes))
    for option in ("linear_family_boosts", "bundles"):  # with lotteries and the family
        model.setdefault(option, kind == "lottery+separable")
    if model.get("learn_bidder_weights") is None:
        model.pop("learn_bidder_weights", None)
    return model, contextual_training(**training)


def check_training(training):
    """Refuses the `TrainingConfig` fields a contextual run does not implement."""
    for field, neutral in _UNSUPPORTED.items():
        if getattr(training, field) != neutral:
            raise ValueError(f"`{field}` is not supported for contextual settings (got "
                             f"{getattr(training, field)!r}); leave it at {neutral!r}.")
    return training


def validation_dataset(model, num_samples, seed):
    """Fresh auctions of each of the model's sizes, one size per batch, concatenated."""
    dataset = None
    for size in model.sizes:
        part = contextual_dataset(model.setting, size, num_samples, seed)
        dataset = part if dataset is None else dataset.concatenate(part)
    return dataset


def train_contextual_run(setting, out, model_kwargs=None, training=None,
                         verbose: Optional[int] = None, callbacks=()):
    """Trains (or resumes, or loads if finished) a contextual run in directory `out`.

    Args:
      setting: a `ContextualSetting` or a built-in name (`contextual_a`, `contextual_b`).
      out: the run directory.
      model_kwargs: keyword arguments of `ContextualAuction` (sizes, menu_size, ...).
      training: a `TrainingConfig` (default `contextual_training()`).
    """
    setting = get_contextual_setting(setting)
    out = checks.directory("out", out)
    training = check_training(contextual_training() if training is None else training)
    model = ContextualAuction(setting, **(model_kwargs or {}))
    config = {"setting": setting.to_dict(), "model": model.own_config(),
              "training": training.to_dict(), "contextual": True}
    config_path = os.path.join(out, runs.CONFIG)
    backup = os.path.join(out, runs.BACKUP)
    if os.path.exists(config_path):
        previous = _in_this_version(runs.read_config(out, repair=True))
        if {k: previous.get(k) for k in config} != config:
            raise ValueError(f"{out!r} holds another run ({config_path} differs from these "
                             "arguments): use another --out, or the same arguments to resume.")
        files.remove_leftovers(out)
        if os.path.exists(os.path.join(out, runs.MODEL)):
            print(f"{out}: this run has finished; loading its model (nothing to train).")
            checkpoints.remove_all(backup)
            model = runs.load_run(out)[0]
            write_reports(out, model, training)  # if a kill came before it was written
            return model
    else:
        os.makedirs(out, exist_ok=True)
        files.remove_leftovers(out)
        files.write_json_atomic(config_path, config)
    validation = validation_dataset(model, training.validation_samples,
                                    seeds.validation_seed(model.seed))
    schedule = keras.optimizers.schedules.CosineDecay(
        training.learning_rate, training.steps, alpha=FINAL_LEARNING_RATE_FRACTION)
    model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=False)
    resume = checkpoints.latest(backup)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(
        fresh_valuations(training.batch_size),
        epochs=training.epochs,
        steps_per_epoch=training.steps_per_epoch,
        validation_data=validation,
        callbacks=[
            keras.callbacks.CSVLogger(os.path.join(out, runs.HISTORY), append=True),
            keras.callbacks.TensorBoard(os.path.join(out, runs.LOGS)),
            *callbacks,
            checkpoints.EpochCheckpoint(backup, resume, config),
        ],
        verbose=verbose,
        shuffle=False,
    )
    model = _trained_unless_myerson_is_as_good(out, model, training)
    runs.save_model_atomic(model, os.path.join(out, runs.MODEL))
    checkpoints.remove_all(backup)
    write_reports(out, model, training)
    return model


def write_reports(out, model, training):
    """Writes `out/evaluation.json`, the exact evaluation of each trained size
    (`evaluate_contextual` on `training.evaluation_samples` auctions), unless it is there."""
    path = os.path.join(out, runs.EVALUATION)
    if not os.path.isfile(path):
        reports = evaluate_contextual(model, num_samples=training.evaluation_samples)
        files.write_json_atomic(path, {size: report.to_dict() for size, report in reports.items()})


def read_reports(out):
    """`{size: SizeReport}` of the finished run `out` (`write_reports`)."""
    return {size: SizeReport(**fields) for size, fields in
            files.load_json(os.path.join(out, runs.EVALUATION)).items()}


def _in_this_version(previous):
    """A run's recorded config with the model's arguments as this version records them (the
    arguments added since counting as their defaults), so that an older run resumes."""
    try:
        model = ContextualAuction(previous["setting"], **previous["model"])
    except (KeyError, TypeError, ValueError):
        return previous  # not a model this version builds: it differs from the arguments
    return {**previous, "model": model.own_config()}


def _trained_unless_myerson_is_as_good(out, model, training):
    """`model`, or per-context Myerson (the family alone at its start) unless the model's
    exact revenue beats it on the validation auctions by more than `SIGNIFICANCE` paired
    standard errors; writes `out/selection.json`."""
    if not (model.menu_layer.separable and model.setting.has_uniform_bounds):
        return model
    reports = evaluate_contextual(model, num_samples=training.validation_samples,
                                  seed=seeds.validation_seed(model.seed)).values()
    gain = sum(r.gain for r in reports) / len(reports)  # the sizes weigh equally
    stderr = math.sqrt(sum(r.gain_stderr ** 2 for r in reports)) / len(reports)
    kept = "trained" if gain > SIGNIFICANCE * stderr else "myerson"
    files.write_json_atomic(os.path.join(out, runs.SELECTION), {
        "kept": kept, "trained_revenue": sum(r.revenue for r in reports) / len(reports),
        "myerson_revenue": sum(r.myerson for r in reports) / len(reports),
        "gain": gain, "gain_stderr": stderr})
    if kept == "trained":
        return model
    myerson = ContextualAuction(model.setting, model.sizes, menu_size=1, bundles=False,
                                learn_bidder_weights=False, seed=model.seed,
                                micro_batch_size=model.micro_batch_size)
    myerson.compile(optimizer=keras.optimizers.Adam())  # saved and loaded like the trained
    return myerson


def is_contextual(setting):
    """Whether `setting` names (or is) a contextual setting."""
    from tf_ama.data.contexts import ContextualSetting, list_contextual_settings

    return (isinstance(setting, ContextualSetting)
            or (isinstance(setting, dict) and "sizes" in setting)
            or setting in list_contextual_settings())

