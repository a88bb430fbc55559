"""Training recipes: what `tf-ama train SETTING` runs when no tuning flag is given.

A recipe is the model's arguments (`AffineMaximizerAuction`: menu kind, menu size,
initialization, ...) and the training fields (`TrainingConfig`: steps, batch, learning rate,
annealing, restarts, polish) for one setting. `recipe(setting, name, menu)` chooses them
from the setting's kind and size; every field can still be overridden (each flag of
`tf-ama train` overrides one), and the run's config records the recipe with what was
overridden (`resolve`). The choices and the measurements behind them are in
docs/design.md §9 and benchmarks/README.md ("Recipes").

    model_kwargs, training, chosen = tf_ama.training.recipes.resolve("additive_2x2_uniform")
    model = tf_ama.train_run("additive_2x2_uniform", "runs/a22", model_kwargs, training)

Recipes (`RECIPES`):
  default: the best this package knows how to learn in minutes on a 2-core CPU, lambda
    scaled to the setting's values (`temperature_for`):
    - additive, one item: the item-separable family alone, which starts at separate
      Myerson (Myerson's optimal auction for i.i.d. regular bidders).
    - additive, several items and bidders: the lottery menu joined with the
      item-separable family (`tf_ama.training.joining`), from `JOINED_BUNDLE_SIZE_ITEMS`
      items on with the bundle-size family (`--menu lottery+bundle-sizes`); but when the
      setting has more 0/1 allocations than a lottery menu has entries and at most
      `LARGE_DETERMINISTIC`
      (5x5: 7776), every allocation with its own boost (`--menu deterministic`, below);
      and with more than that and at most `BUNDLE_SIZE_STATES` count vectors (3x10: 286,
      5x10: 3003), the bundle-size family alone (`--menu bundle-sizes`: 600 steps of 512
      profiles; above `LARGE_PROGRAM` count vectors 200 steps of 128).
    - a discrete prior (e.g. spherical): the exact expectation, a large lottery menu,
      restarts selected on exact revenue, annealing to lambda 1000, then the polish.
    - otherwise: a lottery menu.
    `--menu deterministic`: every 0/1 allocation, boosts starting at separate Myerson
    (additive), annealing and the polish; above `POLISHED_DETERMINISTIC` allocations,
    1000 steps and no polish (`_LARGE_DETERMINISTIC`).
  paper: the paper's budget (9000 steps x 2^15 profiles, K = 4096, lambda 100, Adam 0.01),
    its steps over the active set (`tf_ama.ActiveSet`, margin 25), which makes it a CPU run.

A contextual setting (`tf-ama train contextual_a [--sizes 2x5,3x10]`) has one recipe, the
default (`_contextual`): its arguments are those of `ContextualAuction`, and its budget grows
with the sizes trained together, since each step trains one of them
(`contextual_steps`; docs/design.md §10).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_ama.data.contexts import get_contextual_setting, is_contextual, size_name
from tf_ama.data.settings import get_setting
from tf_ama.utils import checks, defaults

RECIPES = ("default", "paper")
# A deterministic menu on a discrete prior: trained on its exact expectation, then the
# polish's iterated local search goes beyond the trained menu's basin (on the distribution
# itself, which it cannot overfit).
_DISCRETE_DETERMINISTIC = {"exact_expectation": True, "steps_per_epoch": 500,
                           "polish_perturbations": 1000}
# The deterministic menu above `POLISHED_DETERMINISTIC` allocations: each step costs in
# proportion to them (5x5, 7776: about 0.6 s on 2 cores), its validation revenue stops
# rising after a few hundred steps, and the polish's coordinate search over thousands of
# boosts would outlast the run (and overfit its 10 000 validation profiles). Up to
# `LARGE_DETERMINISTIC` allocations it is the default of an additive setting with more of
# them than a lottery menu's `defaults.MENU_SIZE` (benchmarks/README.md, "Revenue frontier").
POLISHED_DETERMINISTIC = 1024
LARGE_DETERMINISTIC = 8192
_LARGE_DETERMINISTIC = {"steps": 1000, "polish": False}
# The bundle-size family (tf_ama.core.bundle_sizes): the default beyond LARGE_DETERMINISTIC
# allocations while its program has at most BUNDLE_SIZE_STATES count vectors, C(n + m, m).
# Its step costs in proportion to them: above LARGE_PROGRAM (5x10: 3003, about 2 s for 128
# profiles on 2 cores) the run has fewer and smaller steps; its exact validation revenue
# stops rising after ~100 of them (benchmarks/README.md, "Revenue frontier").
BUNDLE_SIZE_STATES = 4096
LARGE_PROGRAM = 1000
# Up to a lottery menu's `defaults.MENU_SIZE` allocations, the lottery menu is joined with the
# bundle-size family from JOINED_BUNDLE_SIZE_ITEMS items on (2x5: 2.3585 against 2.3367,
# 3 seeds; 2x4: 1.8488 against 1.8435, seed 0); with fewer items it joins the item-separable
# family, which earns the same there (2x2 0.8738 both, 3 seeds; 2x3 1.3521 both, seed 0) at
# a cheaper step.
JOINED_BUNDLE_SIZE_ITEMS = 4
_BUNDLE_SIZES = {"steps": 600, "batch_size": 512}
_LARGE_PROGRAM = {"steps": 200, "batch_size": 128}
# A contextual run: a network's menu learns on smaller batches at a smaller learning rate
# than a fixed menu. Each step trains one size, so the run has `CONTEXTUAL_STEPS_PER_SIZE`
# steps per trained size, within `CONTEXTUAL_STEPS` (a size alone: the 1000 steps measured
# for it; every size of a built-in setting: 3000, within 30 minutes on 2 cores).
CONTEXTUAL_TRAINING = {"batch_size": 512, "learning_rate": 0.001}
CONTEXTUAL_STEPS_PER_SIZE = 500
CONTEXTUAL_STEPS = (1000, 3000)
# `--menu` of a contextual setting: whether the item-separable family joins (menu_size 1
# with the family: the family alone).
CONTEXTUAL_MENUS = {"lottery+separable": True, "lottery": False, "separable": True}
# The arguments of `ContextualAuction` a contextual recipe's model may be given.
CONTEXTUAL_MODEL_ARGS = ("sizes", "menu_size", "seed", "temperature", "learn_bidder_weights",
                         "micro_batch_size", "hidden", "heads", "blocks",
                         "linear_family_boosts", "bundles", "bundle_discount", "active_margin",
                         "active_refresh_steps", "relative_loss", "size_features")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe for one setting: `model` (keyword arguments of `AffineMaximizerAuction`) and
    `training` (fields of `TrainingConfig`), with a one-line `summary` of why."""

    name: str
    summary: str
    model: dict
    training: dict

    def to_dict(self):
        return dataclasses.asdict(self)


def recipe(setting, name: str = "default", menu: Optional[str] = None, sizes=None) -> Recipe:
    """The recipe `name` (`RECIPES`) for `setting`, for menu kind `menu` (default: the
    recipe's choice); for a contextual setting, for its `sizes` (default: all of them)."""
    if is_contextual(setting):
        return _contextual(get_contextual_setting(setting), name, menu, sizes)
    if sizes is not None:
        raise ValueError("`sizes`: only for a contextual setting (e.g. contextual_a).")
    setting = get_setting(setting)
    name = checks.choice("recipe", name, RECIPES)
    if menu is not None:
        from tf_ama.menus.layers import MENU_KINDS

        menu = checks.choice("menu", menu, tuple(k for k in MENU_KINDS if k != "fixed"))
    if name == "paper":
        return Recipe("paper", "the paper's budget: 9000 steps x 2^15 profiles, K = 4096, "
                      "lambda 100, Adam 0.01, over the active set (~1.5 h on 2 CPU cores)",
                      {"menu": menu or "lottery", "menu_size": 4096, "temperature": defaults.TEMPERATURE,
                       "active_margin": 25.0},
                      {"steps": 9000, "batch_size": 2 ** 15, "learning_rate": 0.01})
    return _default(setting, menu)


def _default(setting, menu):
    chosen = _default_for_kind(setting, menu)  # its temperatures are for lambda = 100
    temperature = temperature_for(setting)
    training = {key: value * temperature / defaults.TEMPERATURE if key in ("initial_temperature",
                                                            "final_temperature") else value
                for key, value in chosen.training.items()}
    return dataclasses.replace(chosen, model={**chosen.model, "temperature": temperature},
                               training=training)


def temperature_for(setting, num_samples=10_000, seed=0):
    """lambda for `setting`: 100 (the paper's, for values of order 1) divided by the order
    of magnitude of twice the mean value, `10**round(log10(2 mean))` (1 for U[0, 1] values,
    10 for values around 3 to 30): the relaxation's softness is relative to the welfare
    gaps, which scale with the values. Estimated on `num_samples` profiles (fewer if they
    would not fit in one block of `tf_ama.data.settings.sample_blocks`)."""
    import numpy as np

    from tf_ama.data.settings import sample_block_size

    num_samples = min(num_samples, sample_block_size(setting))
    values = np.asarray(setting.sample(num_samples, seed), np.float64)  # no float32 sum
    largest = float(values.reshape(len(values), -1).sum(axis=1).max())
    if not largest <= float(np.finfo(np.float32).max):
        raise ValueError(
            f"setting {setting.name!r}: its distribution ({setting.distribution}, "
            f"{setting.distribution_params}) drew a profile whose values add up to {largest:.4g}, "
            "beyond float32 (3.4e38), the dtype training draws and adds values in; choose "
            "parameters whose values stay well below (e.g. a lighter tail), or scale the "
            "values down.")
    mean = float(np.mean(values))
    if not mean > 0:
        return defaults.TEMPERATURE
    return defaults.TEMPERATURE / 10.0 ** round(np.log10(2.0 * mean))


def _additive_menu(allocations, states, num_items):
    """The default menu kind of an additive setting with several bidders and items, from its
    0/1 allocations, its count vectors and its items (module docstring)."""
    if allocations <= defaults.MENU_SIZE:
        return ("lottery+bundle-sizes" if num_items >= JOINED_BUNDLE_SIZE_ITEMS
                else "lottery+separable")
    if allocations <= LARGE_DETERMINISTIC:
        return "deterministic"
    return "bundle-sizes" if states <= BUNDLE_SIZE_STATES else "lottery+separable"


def _default_for_kind(setting, menu):
    from tf_ama.core.allocations import deterministic_menu_size
    from tf_ama.core.bundle_sizes import count_state_number

    additive, discrete = setting.demand == "additive", _is_discrete(setting)
    allocations = deterministic_menu_size(setting.num_bidders, setting.num_items,
                                          setting.demand)
    states = count_state_number(setting.num_bidders, setting.num_items)
    if menu is None:
        if discrete:
            menu = "lottery"
        elif additive and setting.num_items == 1:
            menu = "separable"
        elif additive and setting.num_bidders > 1:
            menu = _additive_menu(allocations, states, setting.num_items)
        else:
            menu = "lottery"
    if menu == "separable":
        return Recipe("default", "the item-separable family alone, at separate Myerson "
                      "(optimal for one item and i.i.d. regular bidders)",
                      {"menu": menu}, {"steps": 500})
    if menu == "bundle-sizes":
        large = states > LARGE_PROGRAM
        return Recipe("default", f"the bundle-size family alone (item-separable boosts and a "
                      f"boost per owner and bundle size; {states} count vectors), from "
                      "separate Myerson" + (", 200 steps of 128" if large else ""),
                      {"menu": menu}, _LARGE_PROGRAM if large else _BUNDLE_SIZES)
    if menu == "deterministic":
        large = allocations > POLISHED_DETERMINISTIC and not discrete
        return Recipe("default", f"every 0/1 allocation ({allocations}), boosts from separate "
                      "Myerson (additive), bidder weights learned, annealed to lambda 1000"
                      + (", 1000 steps, no polish" if large else ", polished"),
                      {"menu": menu, "learn_bidder_weights": True},
                      {"steps": 4000, "final_temperature": 1000.0, "anneal_fraction": 0.25,
                       "polish": True, **(_DISCRETE_DETERMINISTIC if discrete else {}),
                       **(_LARGE_DETERMINISTIC if large else {})})
    if discrete and menu == "lottery":
        return Recipe("default", "the exact expectation of a discrete prior, K = 4096 "
                      "lotteries, lambda rising from 10 to 100, best of 8 initializations "
                      "there, annealed to 1000, polished",
                      {"menu": menu, "menu_size": 4096, "boost_init_scale": 1.0},
                      {"steps": 8000, "steps_per_epoch": 500, "initial_temperature": 10.0,
                       "warmup_fraction": 0.5, "final_temperature": 1000.0,
                       "anneal_fraction": 0.25, "exact_expectation": True, "restarts": 8,
                       "polish": True})
    if menu in ("lottery+separable", "lottery+bundle-sizes"):
        family = "item-separable" if menu == "lottery+separable" else "bundle-size"
        return Recipe("default", f"a lottery menu, then joined with the {family} family "
                      "at separate Myerson and trained jointly (tf_ama.training.joining)",
                      {"menu": menu, "menu_size": defaults.MENU_SIZE},
                      {"steps": 2000, "batch_size": 4096, "joint_steps": 1000})
    return Recipe("default", f"a lottery menu, K = {defaults.MENU_SIZE}, 2000 steps x 4096 "
                  "profiles", {"menu": menu, "menu_size": defaults.MENU_SIZE},
                  {"steps": 2000, "batch_size": 4096})


def contextual_steps(num_sizes):
    """The steps of a contextual run training `num_sizes` sizes together."""
    low, high = CONTEXTUAL_STEPS
    return min(high, max(low, CONTEXTUAL_STEPS_PER_SIZE * num_sizes))


def contextual_training(num_sizes):
    """The `TrainingConfig` fields of the contextual recipe for `num_sizes` sizes."""
    return {"steps": contextual_steps(num_sizes), **CONTEXTUAL_TRAINING}


def default_menu_size(sizes):
    """A contextual menu's lotteries: 64; 128 when a trained size has 20 or more bidder-item
    pairs (3x10)."""
    return 128 if max(m * n for m, n in sizes) >= 20 else 64


def _contextual(setting, name, menu, sizes):
    from tf_ama.models.contextual import size_list

    if name != "default":
        raise ValueError(f"--recipe {name}: contextual settings have one recipe, the default.")
    menu = checks.choice("menu (of a contextual setting)",
                         "lottery+separable" if menu is None else menu, tuple(CONTEXTUAL_MENUS))
    parsed = size_list("sizes", setting.sizes if sizes is None else sizes)
    both = menu == "lottery+separable"
    steps = contextual_steps(len(parsed))
    entries = ("the item-separable family alone" if menu == "separable" else
               f"a network's menu of {default_menu_size(parsed)} lotteries"
               + (" and bundles with the item-separable family" if both else ""))
    summary = (f"{entries}; {steps} steps of {CONTEXTUAL_TRAINING['batch_size']} auctions "
               f"over {len(parsed)} size{'s' if len(parsed) > 1 else ''}, then the choice "
               "against per-context Myerson, size by size")
    model = {"sizes": [size_name(size) for size in parsed],
             "separable": CONTEXTUAL_MENUS[menu],
             "menu_size": 1 if menu == "separable" else default_menu_size(parsed),
             "linear_family_boosts": both, "bundles": both}
    return Recipe("default", summary, model, contextual_training(len(parsed)))


def _is_discrete(setting):
    """True when the setting's prior has a finite support small enough to train on its exact
    expectation (`tf_ama.expectation_dataset`)."""
    from tf_ama.data.distributions import finite_support

    try:
        finite_support(setting.distribution_fn())
    except ValueError:
        return False
    return True


def resolve(setting, name: str = "default", model_overrides=None, training_overrides=None):
    """`(model_kwargs, TrainingConfig, record)` of recipe `name` for `setting`, each field
    overridden by `model_overrides` / `training_overrides` (dicts of the fields given, e.g.
    the flags of `tf-ama train`); `record` is what the run's config keeps: the recipe and
    the overridden fields."""
    from tf_ama.training.config import TrainingConfig

    model_overrides, training_overrides = dict(model_overrides or {}), dict(training_overrides or {})
    overridden = sorted({*model_overrides, *training_overrides})
    if is_contextual(setting):
        chosen = recipe(setting, name, model_overrides.pop("menu", None),
                        model_overrides.get("sizes"))
        model_overrides = _contextual_overrides(chosen, model_overrides, training_overrides)
    else:
        chosen = recipe(setting, name, model_overrides.get("menu"))
    model_kwargs = {**chosen.model, **model_overrides}
    fields = {**chosen.training, **training_overrides}
    if "steps_per_epoch" not in training_overrides:  # a short run is one epoch
        steps = fields.get("steps", TrainingConfig.steps)
        fields["steps_per_epoch"] = min(fields.get("steps_per_epoch",
                                                   TrainingConfig.steps_per_epoch), steps)
    training = TrainingConfig(**fields)
    record = {**chosen.to_dict(), "overridden": overridden}
    return model_kwargs, training, record


def _contextual_overrides(chosen, model_overrides, training_overrides):
    """`model_overrides` for `ContextualAuction` (`micro_batch_size` "auto" is None, a
    `learn_bidder_weights` of None is its default); refuses, by name, arguments a contextual
    menu has no use for (the join's: its menu has the family from the start), and a menu
    size beside `--menu separable` (the family alone)."""
    unknown = sorted(set(model_overrides) - set(CONTEXTUAL_MODEL_ARGS)
                     | set(training_overrides) & {"joint_steps", "joint_learning_rate"})
    if unknown:
        raise ValueError(f"Not for a contextual setting: {unknown}.")
    if chosen.model["menu_size"] == 1 and model_overrides.get("menu_size", 1) != 1:
        raise ValueError(f"menu_size={model_overrides['menu_size']}: --menu separable is the "
                         "item-separable family alone (one entry); drop --menu-size, or "
                         "choose --menu lottery+separable.")
    if model_overrides.get("micro_batch_size") == "auto":
        model_overrides["micro_batch_size"] = None
    if model_overrides.get("learn_bidder_weights", False) is None:
        del model_overrides["learn_bidder_weights"]
    return model_overrides
