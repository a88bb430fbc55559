"""tf_ama: strategyproof multi-bidder auctions learned as (lottery) affine maximizers.

The public API; see the README and docs/design.md for the maths.
"""

from tf_ama.annealing import TemperatureScheduler, annealing_schedule, phase_schedule
from tf_ama.baseline_auctions import baseline_details, baselines
from tf_ama.evaluation import EvaluationReport, MenuEntry, evaluate, format_menu_table, menu_usage, prune
from tf_ama import exactness  # noqa: F401  (limits and error bounds of the exact outcome)
from tf_ama.export import export_saved_model, load_menu_model
from tf_ama.distributions import list_distributions, register_distribution
from tf_ama.mechanism import exact_outcome, regret_certificate, soft_payments
from tf_ama.menus import deterministic_allocations
from tf_ama.plots import plot_menu, plot_training_curves
from tf_ama.model import (AffineMaximizerAuction, expectation_dataset, fresh_valuations,
                          valuation_dataset)
from tf_ama.settings import Setting, get_setting, list_settings
from tf_ama.training import TrainingConfig, train_run

__version__ = "0.1.0"
