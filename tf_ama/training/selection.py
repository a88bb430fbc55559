"""The choices at the end of a run: the better of its known-good start and its trained
state (`better_of_start_and_end`), and the polish kept only if a held-out sample says so
(`polish_run`); each choice is written to the run directory."""

from __future__ import annotations

import os

import keras

from tf_ama.data import data_files
from tf_ama.data.datasets import validation_sample, valuation_dataset
from tf_ama.training import runs
from tf_ama.utils import files, seeds


def better_of_start_and_end(out, start, trained, training, learning_rate):
    """`trained`, or the model `start()` builds if its exact revenue on the validation sample
    is higher; the choice is written to `out/selection.json`.

    A menu with the item-separable family starts at a known-good mechanism (separate
    Myerson; the join of a trained lottery menu), where the relaxation's gradient is mostly
    sampling noise, which Adam's normalized steps turn into a random walk (the family alone
    on additive_2x2_uniform: 0.833 at the start, 0.79 after 400 steps at the default
    learning rate). Keeping the better of the two on validation makes such a run never
    worse than its start on the validation sample."""
    from tf_ama.evaluation.reports import evaluate

    start = start()
    start.compile(optimizer=keras.optimizers.Adam(learning_rate))
    seed = seeds.validation_seed(trained.seed)
    # A setting made from data: all of its validation rows (tf_ama.data.empirical).
    samples = None if data_files.is_empirical(start.setting) else training.validation_samples
    revenues = {name: evaluate(model, samples, seed, baselines=False, split="validation").revenue
                for name, model in (("start", start), ("trained", trained))}
    kept = "trained" if revenues["trained"] >= revenues["start"] else "start"
    files.write_json_atomic(os.path.join(out, runs.SELECTION), {
        "validation_revenue": revenues, "validation_samples": training.validation_samples,
        "seed": seed, "kept": kept})
    if kept == "start":
        print(f"{out}: training did not raise the exact validation revenue of the start "
              f"({revenues['trained']:.4f} vs {revenues['start']:.4f}); keeping the start.")
    return trained if kept == "trained" else start


def polish_run(out, setting, model, training, validation):
    """Polishes `model` in place (`tf_ama.training.polish`) on the validation sample and keeps the
    result only if its exact revenue on a held-out sample (the exact expectation of a
    discrete setting; else `validation_samples` profiles drawn with `seeds.holdout_seed`) is
    higher; the numbers go to `out/polish.json`."""
    from tf_ama.data.distributions import finite_support
    from tf_ama.training.polish import polish

    if training.exact_expectation:
        profiles, probabilities = finite_support(setting.distribution_fn())
        holdout = validation
    else:
        profiles, probabilities = validation_sample(setting, training.validation_samples,
                                                    seeds.validation_seed(model.seed)), None
        holdout = valuation_dataset(setting, training.validation_samples,
                                    seed=seeds.holdout_seed(model.seed))
    before = [v.numpy() for v in model.weights]
    revenues = {"trained": exact_revenue(model, holdout)}
    searched = polish(model, profiles, probabilities,
                      perturbations=training.polish_perturbations, seed=model.seed)
    revenues["polished"] = exact_revenue(model, holdout)
    kept = "polished" if revenues["polished"] > revenues["trained"] else "trained"
    if kept == "trained":
        model.set_weights(before)
    files.write_json_atomic(os.path.join(out, runs.POLISH), {
        "search_revenue": dict(zip(("trained", "polished"), searched)),
        "holdout_revenue": revenues, "kept": kept,
        "holdout": "exact expectation" if training.exact_expectation else {
            "samples": training.validation_samples, "seed": seeds.holdout_seed(model.seed)}})
    print(f"{out}: the polish moved the exact revenue {searched[0]:.4f} -> {searched[1]:.4f} "
          f"on the validation sample and {revenues['trained']:.4f} -> "
          f"{revenues['polished']:.4f} on the held-out one: kept the {kept} menu.")


def exact_revenue(model, dataset):
    """The exact (weighted) mean revenue of `model` on `dataset` (its `test_step`)."""
    if model.optimizer is None:
        model.compile(optimizer=keras.optimizers.Adam())
    return float(model.evaluate(dataset, verbose=0, return_dict=True)["revenue"])
