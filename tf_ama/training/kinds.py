"""What a run does that depends on its setting's kind: `SettingRun` for a setting without
contexts (one menu), `tf_ama.training.contextual.ContextualRun` for a contextual one.
`run_kind(setting)` gives the one for a setting; `tf_ama.training.run` does the rest, the
same for both."""

from __future__ import annotations

import functools

import numpy as np

from tf_ama.data.contexts import is_contextual
from tf_ama.data.datasets import expectation_dataset, fresh_valuations, validation_dataset
from tf_ama.data.settings import get_setting
from tf_ama.models.auction import AffineMaximizerAuction
from tf_ama.training.config import TrainingConfig
from tf_ama.training.contextual import ContextualRun
from tf_ama.training.report import write_report
from tf_ama.training.selection import better_of_start_and_end
from tf_ama.utils import footprint, seeds


def run_kind(setting):
    """`ContextualRun` for a contextual setting (or its name or dict), else `SettingRun`."""
    return ContextualRun(setting) if is_contextual(setting) else SettingRun(setting)


class SettingRun:
    """A run of a setting without contexts: one menu (`AffineMaximizerAuction`)."""

    contextual = False

    def __init__(self, setting):
        self.setting = get_setting(setting)

    def default_training(self, model_kwargs):
        del model_kwargs
        return TrainingConfig()

    def model(self, model_kwargs):
        return AffineMaximizerAuction(self.setting, **model_kwargs)

    def check(self, model, training):
        check_memory(self.setting, model, training)

    def data(self, model, training):
        """`(training data, validation data)` of `fit`."""
        if training.exact_expectation:  # refused here, before any file is written, if not discrete
            validation = expectation_dataset(
                self.setting, replicas=model.distribute_strategy.num_replicas_in_sync)
            return validation.repeat(), validation
        return fresh_valuations(training.batch_size), validation_dataset(
            self.setting, training.validation_samples, seed=seeds.validation_seed(model.seed))

    def learning_rate(self, training, learning_rate):
        return learning_rate

    def jit_compile(self, training):
        return training.jit_compile

    def start(self, model):
        """A function that builds the run's known-good start again, or None: a menu with
        the item-separable family starts at separate Myerson."""
        if getattr(model.menu_layer, "reserves", None) is None:
            return None
        return functools.partial(AffineMaximizerAuction.from_config, model.get_config())

    def select(self, out, start, trained, training, learning_rate):
        return better_of_start_and_end(out, start, trained, training, learning_rate)

    def report(self, out, model, training):
        write_report(out, model, training)




def check_memory(setting, model, training):
    """Refuses, before anything is written, a run whose step and validation cannot fit in
    the memory left once `model` is built (`tf_ama.utils.footprint`)."""
    variables = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    batch = 0 if training.exact_expectation else training.batch_size
    validation = 0 if training.exact_expectation else training.validation_samples
    per_profile = footprint.gigabytes(12 * setting.num_bidders * setting.num_items)
    footprint.check_fits(
        f"Training {setting.name} ({setting.shape_name}, batch {batch}, menu of "
        f"{model.menu_size} entries)",
        footprint.training_bytes(setting.num_bidders, setting.num_items, variables,
                                 model.menu_size, batch, validation),
        f"give a smaller --batch-size (each profile costs {per_profile}), --menu-size or "
        "--validation-samples, or a setting with fewer items.")
