"""tf_ama: strategyproof multi-bidder auctions learned as (lottery) affine maximizers.

The public API; see the README and docs/design.md for the maths.

Importing the package is cheap: each public name is imported from its module on first use
(PEP 562), so `tf-ama --help` and the REST serving client do not load TensorFlow, Keras or
matplotlib. The modules live in one subpackage per layer (docs/architecture.md); they too
are imported on first use (`tf_ama.core.exactness.MAX_BID` after `import tf_ama`).
"""

import importlib as _importlib

from tf_ama.utils.lazy import submodules as _submodules
from tf_ama.utils.version import VERSION as __version__

# The public names, each with the module that defines it: the one table that `__all__`,
# `__dir__` and `__getattr__` are made from.
_EXPORTS = {
    "core.allocations": ("Menu", "deterministic_allocations"),
    "core.mechanism": ("exact_outcome", "regret_certificate"),
    "core.relaxation": ("soft_payments",),
    "data.contexts": ("ContextualSetting", "get_contextual_setting", "list_contextual_settings",
                      "register_value_model"),
    "data.datasets": ("expectation_dataset", "fresh_valuations", "validation_dataset",
                      "validation_sample", "valuation_dataset"),
    "data.distributions": ("list_distributions", "register_distribution"),
    "data.empirical": ("empirical_setting", "save_valuations"),
    "data.settings": ("AuctionSetting", "Setting", "get_setting", "list_settings",
                      "load_setting", "setting_json"),
    "menus.contextual": ("ContextualMenu",),
    "menus.layers": ("BidderWeights", "BundleSizesMenu", "DeterministicMenu", "FixedMenu",
                     "LotteryBundleSizesMenu", "LotteryMenu", "LotterySeparableMenu",
                     "MENU_KINDS", "MenuLayer", "SeparableMenu", "menu_kind"),
    "models.active_set": ("ActiveSet",),
    "models.auction": ("AffineMaximizerAuction",),
    "models.contextual": ("ContextualAuction", "contextual_dataset"),
    "evaluation.baselines": ("baseline_details", "baselines"),
    "evaluation.contextual": ("evaluate_contextual",),
    "evaluation.plots": ("plot_menu", "plot_training_curves"),
    "evaluation.reports": ("EvaluationReport", "evaluate"),
    "evaluation.scanning": ("MenuEntry",),
    "evaluation.usage": ("format_menu_table", "menu_usage", "prune"),
    "training.annealing": ("TemperatureScheduler", "annealing_schedule", "phase_schedule"),
    "training.config": ("TrainingConfig",),
    "training.run": ("train_contextual_run", "train_run"),
    "serving.export": ("export_saved_model", "load_menu_model"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF) + ["__version__"]


_submodule, _submodule_names = _submodules(__name__, __path__)


def __getattr__(name):
    """A public name, imported from its module on first use (then cached here), or a
    subpackage (`tf_ama.core`, whose modules are imported on first use in turn)."""
    if name in _MODULE_OF:
        value = getattr(_importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    return _submodule(name)


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF) | set(_submodule_names()))


# Keras finds tf_ama's classes in a saved model once tf_ama.models has registered them; this
# happens as soon as Keras is loaded, before or after `import tf_ama`
# (tf_ama/models/_registration.py; standard library only).
from tf_ama.models import _registration  # noqa: E402  isort:skip

_registration.install()
