"""Training runs of contextual auctions: `tf-ama train contextual_a --sizes 2x5`, or
`tf_ama.train_run("contextual_a", out, {"sizes": ["2x5"]})`.

`tf_ama.train_run` runs them as any other (the run directory, resuming, restarts, the
active set with `active_margin`); `ContextualRun` holds what differs. The defaults are the
contextual recipe's (`tf_ama.training.recipes`; `contextual_training`).

The learning rate decays along a cosine from `learning_rate` to a tenth of it over the run
(Keras `CosineDecay`, a function of the step: resumable), so that the run ends on a settled
menu rather than on one noisy step. Validation is the exact revenue on `validation_samples`
fresh auctions of every trained size (seed + 1).

A menu with the item-separable family, on a value model with `uniform_bounds`, then meets
Myerson's optimal separate auction per context, SIZE BY SIZE, on `selection_samples` fresh
auctions of each size (seed + 4, never seen in training or validation): at a size where its
paired gain is not above `SIGNIFICANCE` standard errors, the model serves per-context
Myerson (`ContextualAuction.myerson_sizes`); if that is every size, the run ends as Myerson
itself (the family alone, untrained: a `ContextualAuction` of `menu_size=1`).
`selection.json` records each size's revenues, paired gain with its standard error and
choice, so that a run does not serve less than per-context Myerson at any size it trained on
by a choice made on noise (docs/design.md §10).
"""

from __future__ import annotations

import functools
import os

import keras

from tf_ama.data.contexts import get_contextual_setting
from tf_ama.data.datasets import fresh_valuations
from tf_ama.evaluation.contextual import (SIGNIFICANCE, SizeReport, choose_sizes,
                                         evaluate_contextual)
from tf_ama.models.contextual import ContextualAuction, contextual_dataset, size_list
from tf_ama.training import recipes, runs
from tf_ama.training.config import TrainingConfig
from tf_ama.utils import files, seeds

FINAL_LEARNING_RATE_FRACTION = 0.1
# TrainingConfig fields a contextual run does not implement, with their neutral values.
_UNSUPPORTED = dict(exact_expectation=False, polish=False, polish_perturbations=0)


def contextual_training(sizes=None, setting=None, **overrides):
    """The `TrainingConfig` of a contextual run by its recipe (`tf_ama.training.recipes`),
    with `overrides`: for `sizes` (a list, or a string such as "2x5,3x10"), or else for
    every size of `setting`, or else for one size."""
    if sizes is not None:
        num_sizes = len(size_list("sizes", sizes))
    else:
        num_sizes = 1 if setting is None else len(get_contextual_setting(setting).sizes)
    return TrainingConfig(**{**recipes.contextual_training(num_sizes), **overrides})


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


def choose_per_size(out, myerson, model, training):
    """`model` serving per-context Myerson at each trained size where its menu does not beat
    it (`choose_sizes` on `training.selection_samples` fresh auctions per size, the selection
    seed), or per-context Myerson itself (`myerson()` builds it: the family alone at its
    start) if that is every size; writes `out/selection.json`, size by size."""
    seed = seeds.selection_seed(model.seed)
    choices = choose_sizes(model, model.sizes, training.selection_samples, seed)
    lost = [size for size, choice in choices.items() if choice["kept"] == "myerson"]
    kept = ("myerson" if len(lost) == len(choices) else "per size" if lost else "trained")
    files.write_json_atomic(os.path.join(out, runs.SELECTION), {
        "kept": kept, "myerson_sizes": lost, "seed": seed, "significance": SIGNIFICANCE,
        "sizes": choices})
    print(f"{out}: " + ", ".join(
        f"{size} {'menu' if c['kept'] == 'trained' else 'per-context Myerson'} "
        f"({c['gain']:+.4f} ± {c['gain_stderr']:.4f} over Myerson)"
        for size, c in choices.items()) + f", on {training.selection_samples} fresh auctions "
        "per size.")
    if kept != "myerson":
        return model.serve_myerson_at(lost).chose_at(model.sizes)
    myerson = myerson()
    myerson.compile(optimizer=keras.optimizers.Adam())  # saved and loaded like the trained
    return myerson.chose_at(model.sizes)


class ContextualRun:
    """What a run of a contextual setting does differently from one of a setting without
    contexts (`tf_ama.training.kinds.SettingRun`; module doc): its model, defaults, data,
    learning-rate schedule, start (per-context Myerson) and report."""

    contextual = True

    def __init__(self, setting):
        self.setting = get_contextual_setting(setting)

    def default_training(self, model_kwargs):
        return contextual_training((model_kwargs or {}).get("sizes"), self.setting)

    def model(self, model_kwargs):
        return ContextualAuction(self.setting, **model_kwargs)

    def check(self, model, training):
        del model
        check_training(training)

    def data(self, model, training):
        """`(training data, validation data)` of `fit`."""
        return fresh_valuations(training.batch_size), validation_dataset(
            model, training.validation_samples, seeds.validation_seed(model.seed))

    def learning_rate(self, training, learning_rate):
        """A cosine from `learning_rate` to `FINAL_LEARNING_RATE_FRACTION` of it over the
        run's steps (a function of the step: resumable)."""
        return keras.optimizers.schedules.CosineDecay(
            learning_rate, training.steps, alpha=FINAL_LEARNING_RATE_FRACTION)

    def jit_compile(self, training):
        return False if training.jit_compile == "auto" else training.jit_compile

    def start(self, model):
        """Builds per-context Myerson, the run's known-good start, for a menu with the
        family on a value model with `uniform_bounds`; else None."""
        if not model.knows_myerson:
            return None
        return functools.partial(ContextualAuction, self.setting, model.sizes, menu_size=1,
                                 bundles=False, learn_bidder_weights=False, seed=model.seed,
                                 micro_batch_size=model.micro_batch_size)

    def select(self, out, start, trained, training, learning_rate):
        del learning_rate
        return choose_per_size(out, start, trained, training)

    def report(self, out, model, training):
        write_reports(out, model, training)
