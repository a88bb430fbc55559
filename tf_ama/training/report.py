"""What a finished run reports in its directory: the exact evaluation and the figures.

`write_report(out, model, training)` is the last step of `tf_ama.train_run`: the model's
exact evaluation against the baselines on `training.evaluation_samples` profiles (a setting
made from data: all of its test rows), seeded by `tf_ama.utils.seeds.evaluation_seed`, goes
to `evaluation.json`; the training curves (with the baselines as lines) to
`training_curves.png`; a menu with the item-separable family draws its boosts
(`separable_boosts.png`); a joined menu's lottery phase is evaluated alone on the same
profiles (its own `evaluation.json`, without baselines). `evaluation.json` is written last:
a run whose directory has it has reported, and reporting again reads it back
(`read_report`) instead of evaluating again; a run killed while reporting reports again.
"""

from __future__ import annotations

import os

from tf_ama.data.data_files import is_empirical
from tf_ama.evaluation.plots import plot_separable_boosts, plot_training_curves
from tf_ama.evaluation.reports import EvaluationReport, evaluate
from tf_ama.training import runs
from tf_ama.utils import files, seeds


def write_report(out, model, training):
    """Writes the report of the finished run `out` (module doc) unless it is there; returns
    `read_report(out)`."""
    if not os.path.isfile(os.path.join(out, runs.EVALUATION)):
        # A setting made from data is evaluated on its test rows (all of them).
        samples = None if is_empirical(model.setting) else training.evaluation_samples
        report = evaluate(model, num_samples=samples, seed=seeds.evaluation_seed(model.seed))
        baselines = {name: result["revenue"] for name, result in report.baselines.items()}
        plot_training_curves(os.path.join(out, runs.HISTORY), os.path.join(out, runs.CURVES),
                             baselines=baselines, steps_per_epoch=training.steps_per_epoch)
        if model.menu().separable_boosts is not None:
            plot_separable_boosts(model, os.path.join(out, runs.SEPARABLE_BOOSTS))
        phase = lottery_phase(out)
        if phase is not None:  # on the same profiles, paired with the joined menu's
            alone = evaluate(runs.load_run(phase)[0], num_samples=samples, seed=report.seed,
                             baselines=False)
            files.write_json_atomic(os.path.join(phase, runs.EVALUATION), alone.to_dict())
        files.write_json_atomic(os.path.join(out, runs.EVALUATION), report.to_dict())
    return read_report(out)


def read_report(out):
    """`(report, lottery_report)`: the `EvaluationReport` of the run `out` and that of its
    lottery phase alone (None unless the run joined a lottery menu with the family)."""
    report = EvaluationReport.from_dict(files.load_json(os.path.join(out, runs.EVALUATION)))
    phase = lottery_phase(out)
    lottery = None
    if phase is not None and os.path.isfile(os.path.join(phase, runs.EVALUATION)):
        lottery = EvaluationReport.from_dict(
            files.load_json(os.path.join(phase, runs.EVALUATION)))
    return report, lottery


def lottery_phase(out):
    """The run directory of the lottery phase of `out`, or None."""
    start = runs.read_config(out).get("start", {})
    return os.path.join(out, start["lottery_run"]) if "lottery_run" in start else None
