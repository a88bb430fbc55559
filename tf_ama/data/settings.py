"""Auction settings: who bids, on what, with which valuation distribution.

A `Setting` is a small frozen dataclass, validated on creation, that round-trips through
`to_dict` / `from_dict` (and so through JSON): the same values flow from the command line to
a model's `get_config` to the JSON written beside every exported model.

    setting = tf_ama.get_setting("additive_2x2_uniform")
    valuations = setting.distribution_fn().sample(1024, seed=(0, 1))   # [1024, 2, 2]

A new setting needs no change to the library:

    asym = tf_ama.Setting("additive_2x2_asym", num_bidders=2, num_items=2, demand="additive",
                          distribution="uniform",
                          distribution_params={"low": 0.0, "high": [[1.0, 2.0], [1.0, 2.0]]})

or, from any TFP distribution with event shape `[num_bidders, num_items]`:

    tf_ama.register_distribution("beta", lambda m, n, dtype: tfd.Independent(
        tfd.Beta(tf.ones([m, n], dtype), 2 * tf.ones([m, n], dtype)), 2))
    beta = tf_ama.Setting("additive_2x2_beta", 2, 2, "additive", "beta")
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NamedTuple

import numpy as np

from tf_ama.core.exactness import DEMANDS
from tf_ama.data import data_files
from tf_ama.utils import checks

# TensorFlow (through tf_ama.data.distributions) is imported only when a distribution is built, so
# that listing the built-in settings (`tf-ama settings`) starts without it.


class AuctionSetting:
    """The base of the setting types: a named, frozen dataclass of JSON-able fields, which a
    run directory and an export record (`to_dict`) and rebuild (`from_dict`, naming unknown
    and missing fields). `Setting` has one shape (bidders x items); a contextual setting
    (`tf_ama.ContextualSetting`, `contextual` True) draws auctions of several shapes, each
    with public contexts."""

    contextual = False
    _KIND = "setting"  # what the messages call it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"Unknown {cls._KIND} fields {sorted(unknown)}; known: "
                             f"{sorted(known)}.")
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        if required - set(config):
            raise ValueError(f"Missing {cls._KIND} fields {sorted(required - set(config))}.")
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class Setting(AuctionSetting):
    """A multi-bidder, multi-item auction setting.

    Attributes:
      name: identifier, e.g. `additive_2x2_uniform`.
      num_bidders: `m >= 1`.
      num_items: `n >= 1`.
      demand: `"additive"` (a bundle is worth the sum of its items) or `"unit_demand"`
        (each bidder receives at most one item in expectation).
      distribution: a registered distribution family (see `tf_ama.data.distributions`).
      distribution_params: keyword arguments of that family (JSON-serializable).
      symmetric: bidders are i.i.d.; bidder weights are then fixed to 1 by default.
    """

    name: str
    num_bidders: int
    num_items: int
    demand: str = "additive"
    distribution: str = "uniform"
    # hash=False: a dict is unhashable, and a frozen dataclass should be usable as a key.
    distribution_params: dict = dataclasses.field(default_factory=dict, hash=False)
    symmetric: bool = True

    def __post_init__(self):
        checks.string("name", self.name)
        for field in ("num_bidders", "num_items"):  # stored as plain ints (JSON-serializable)
            object.__setattr__(self, field, checks.integer(field, getattr(self, field), minimum=1))
        checks.choice("demand", self.demand, DEMANDS)
        checks.string("distribution", self.distribution)
        checks.boolean("symmetric", self.symmetric)
        if not isinstance(self.distribution_params, dict):
            raise ValueError(
                f"`distribution_params` must be a dict; got {type(self.distribution_params).__name__}."
            )
        try:
            json.dumps(self.distribution_params)
        except TypeError as error:
            raise ValueError(
                f"`distribution_params` must be JSON-serializable (lists, not arrays): {error}"
            ) from None
        # Builds the distribution once, so that a bad setting fails here, not mid-training (the
        # built-in ones are checked by tests/settings_test.py instead: see _BUILT_IN).
        if self.distribution == "empirical":  # the data file is read when rows are needed
            data_files.check_params(self.distribution_params)
        elif not _BUILT_IN.checked_elsewhere:
            from tf_ama.utils import footprint

            footprint.check_fits(  # a parameter array and the tensor made from it
                f"Setting {self.name!r}: its distribution's parameters, each broadcast to "
                f"[num_bidders, num_items] = [{self.num_bidders}, {self.num_items}],",
                16 * self.num_bidders * self.num_items, "give fewer bidders x items.")
            self._check_draw()

    def _check_draw(self, num_samples=256):
        """Builds the distribution and refuses it if a check draw (of at most one block of
        `sample_blocks`) holds a value that is not finite in float32 (e.g. a uniform `high`
        of 1e39) or is negative."""
        num_samples = min(num_samples, sample_block_size(self))
        values = np.asarray(self.sample(num_samples, seed=(0, 0)))
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            raise ValueError(
                f"`distribution_params`: {self.distribution} with {self.distribution_params} "
                f"draws {float(values[bad][0])}, but values must be finite in float32 (the dtype "
                "they are drawn in, up to 3.4e38) and >= 0; choose other parameters.")

    def distribution_fn(self, dtype=None):
        """The TFP distribution of valuation profiles, event shape `[num_bidders, num_items]`,
        in `dtype` (default float32)."""
        import tensorflow as tf

        from tf_ama.data import distributions

        return distributions.make_distribution(
            self.distribution, self.num_bidders, self.num_items, self.distribution_params,
            tf.float32 if dtype is None else dtype)

    def sample(self, num_samples, seed, dtype=None):
        """`num_samples` valuation profiles `[num_samples, num_bidders, num_items]` (stateless)."""
        from tf_ama.data import distributions

        return self.distribution_fn(dtype).sample(num_samples, seed=distributions.as_seed(seed))

    @property
    def shape_name(self) -> str:
        return f"{self.num_bidders}x{self.num_items}"



# Valuation elements per `setting.sample` call of `sample_blocks` (32 MB as float32). Every
# built-in setting at 100 000 profiles fits in one block (3x10: 279 620 profiles per block).
SAMPLE_BLOCK_ELEMENTS = 1 << 23


def sample_block_size(setting) -> int:
    """Profiles per block of `sample_blocks(setting, ...)`: `SAMPLE_BLOCK_ELEMENTS // (m n)`."""
    return max(1, SAMPLE_BLOCK_ELEMENTS // (setting.num_bidders * setting.num_items))


def sample_blocks(setting, num_samples, seed):
    """The evaluation sample: `num_samples` profiles of `setting`, block by block.

    The one home of the profiles that `tf_ama.evaluate`, `menu_usage`, `prune` and the
    baselines (`tf_ama.evaluation.baselines`) are computed on, so that an AMA and its baselines
    are compared on the same profiles (paired), whatever `num_samples`, in bounded memory.
    Block `b` holds profiles `[b B, (b + 1) B)` with `B = sample_block_size(setting)`; block
    0 is `setting.sample(B0, seed)` and block `b > 0` is `setting.sample(Bb, (b, seed))`
    (stateless seeds; `Bb` is `B` but for a shorter last block). So up to `B` profiles the
    sample is exactly `setting.sample(num_samples, seed)`.

    Args:
      setting: a `Setting`.
      num_samples: int >= 1.
      seed: int in [0, 2**31).

    Yields:
      float64 NumPy arrays `[Bb, num_bidders, num_items]` (cast from the float32 draws).

    Raises:
      ValueError if the distribution draws a non-finite or negative value.
    """
    num_samples = checks.integer("num_samples", num_samples, minimum=1)
    seed = checks.seed("seed", seed)
    block = sample_block_size(setting)
    for index, start in enumerate(range(0, num_samples, block)):
        size = min(block, num_samples - start)
        valuations = np.asarray(setting.sample(size, seed if index == 0 else (index, seed)),
                                np.float64)
        if not np.all(np.isfinite(valuations)) or np.any(valuations < 0):
            raise ValueError(
                f"The distribution of setting {setting.name!r} produced non-finite or negative "
                "valuations; values must be finite and >= 0."
            )
        yield valuations


DEFAULT_EVALUATION_SAMPLES = 100_000


def evaluation_sample(setting, num_samples=None, seed=0, split="test"):
    """`(num_samples, blocks)`: the profiles an evaluation of `setting` is computed on.

    For a setting made from data (`tf_ama.data.empirical`), every row of its `split` (`"test"`:
    the final evaluation and the baselines' revenues; `"validation"`: `prune`'s selection),
    read block by block, and `num_samples` must be None or their count (the data decide it;
    `seed` is not used). Otherwise `num_samples` (default `DEFAULT_EVALUATION_SAMPLES`)
    profiles `sample_blocks(setting, num_samples, seed)`.
    """
    if not data_files.is_empirical(setting):
        num_samples = DEFAULT_EVALUATION_SAMPLES if num_samples is None else num_samples
        num_samples = checks.integer("num_samples", num_samples, minimum=1)
        return num_samples, sample_blocks(setting, num_samples, seed)
    rows = setting.distribution_params["rows"][checks.choice("split", split, data_files.SPLITS)]
    if num_samples is not None and num_samples != rows:
        raise ValueError(
            f"`num_samples`: setting {setting.name!r} is made from data and is evaluated on "
            f"the {rows:,} rows of its {split} split; leave num_samples out (tf-ama: drop "
            "--samples).")
    return rows, data_files.split_blocks(setting.distribution_params, setting.num_bidders,
                                        setting.num_items, split)


class _BUILT_IN:
    """While the built-in settings below are made, their distributions are not built (that
    would import TensorFlow with this module); tests/settings_test.py builds every one."""

    checked_elsewhere = True


_SETTINGS = {
    "additive_1x2_uniform": Setting("additive_1x2_uniform", 1, 2),
    "additive_1x2_uniform_4_16_4_7": Setting(
        "additive_1x2_uniform_4_16_4_7", 1, 2, "additive", "uniform",
        {"low": 4.0, "high": [16.0, 7.0]}, symmetric=True,
    ),
    "unit_demand_1x2_uniform": Setting("unit_demand_1x2_uniform", 1, 2, "unit_demand"),
    "additive_2x2_uniform": Setting("additive_2x2_uniform", 2, 2),
    "unit_demand_2x2_uniform": Setting("unit_demand_2x2_uniform", 2, 2, "unit_demand"),
    "additive_2x3_uniform": Setting("additive_2x3_uniform", 2, 3),
    "additive_2x5_uniform": Setting("additive_2x5_uniform", 2, 5),
    "additive_5x5_uniform": Setting("additive_5x5_uniform", 5, 5),
    "additive_3x10_uniform": Setting("additive_3x10_uniform", 3, 10),
    "additive_5x10_uniform": Setting("additive_5x10_uniform", 5, 10),
    "additive_3x1_exponential": Setting(
        "additive_3x1_exponential", 3, 1, "additive", "exponential", {"mean": 3.0}
    ),
    "unit_demand_2x4_spherical": Setting(
        "unit_demand_2x4_spherical", 2, 4, "unit_demand", "spherical", {"base": 2.0}
    ),
}
_BUILT_IN.checked_elsewhere = False


class Anchor(NamedTuple):
    """A revenue to compare with: `label` says whose; `optimum`, whether no strategyproof
    mechanism earns more (then `tf_ama.evaluation.optimum.best_possible` reports it)."""

    label: str
    revenue: float
    optimum: bool = False


# Known optimal or reference revenues of the built-in settings (docs/design.md §4), for
# reports. The spherical prior's optimum is also what its linear program computes
# (`tf_ama.evaluation.optimum`; tests/optimum_test.py checks the two agree).
ANCHORS = {
    "additive_1x2_uniform": Anchor("optimum (Manelli-Vincent)", 0.5491, True),
    "additive_1x2_uniform_4_16_4_7": Anchor("optimum (Daskalakis et al.)", 9.778, True),
    "unit_demand_1x2_uniform": Anchor("optimum 2/(3*sqrt(3))", 0.3849, True),
    "additive_3x1_exponential": Anchor("Myerson optimum", 2.754, True),
    "unit_demand_2x4_spherical": Anchor("optimum of any DSIC mechanism", 2.349, True),
    "additive_2x2_uniform": Anchor("paper's lottery AMA", 0.868),
    "additive_2x5_uniform": Anchor("paper's lottery AMA", 2.2354),
    "additive_3x10_uniform": Anchor("paper's lottery AMA", 5.345),
    "additive_5x5_uniform": Anchor("CITransNet, approximately strategyproof", 3.4759),
}


def list_settings() -> list[str]:
    """Names of the built-in settings."""
    return list(_SETTINGS)


def get_setting(name: str) -> Setting:
    """The built-in setting `name` (see `list_settings()`), or the setting in the JSON file
    `name` (a path ending in `.json`: `load_setting`)."""
    if isinstance(name, Setting):
        return name
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"`setting` must be a tf_ama.Setting, a built-in name or a .json file; "
                        f"got {type(name).__name__}.")
    if name.lower().endswith(".json"):
        return load_setting(name)
    if name not in _SETTINGS:
        raise ValueError(
            f"Unknown setting {name!r}. Known settings: {', '.join(_SETTINGS)}, or a JSON "
            "file (tf-ama settings --show NAME prints one to start from). Define your own "
            "with tf_ama.Setting(...)."
        )
    return _SETTINGS[name]


def setting_json(setting) -> str:
    """`setting` (a `Setting`, a built-in's name or a JSON file) as the JSON text that
    `load_setting` reads back into an equal setting."""
    return json.dumps(get_setting(setting).to_dict(), indent=2) + "\n"


def load_setting(path) -> Setting:
    """The setting in the JSON file `path`: an object with the fields of `Setting`
    (`tf-ama settings --show NAME` prints a built-in one in this form). `distribution` is a
    family of `tf_ama.data.distributions` or the name of a `tfp.distributions` class (e.g.
    `"Gamma"`, parameters per bidder and item). Errors name the file and the field. A file
    that uses a built-in's name must equal that built-in (else give it another name)."""
    from tf_ama.utils.files import load_json

    fields = load_json(path, f"setting file {path}")
    if not isinstance(fields, dict):
        raise ValueError(f"setting file {path}: must hold a JSON object of the fields "
                         f"{[f.name for f in dataclasses.fields(Setting)]}.")
    try:
        setting = Setting.from_dict(fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"setting file {path}: {error}") from None
    built_in = _SETTINGS.get(setting.name)
    if built_in is not None and built_in != setting:
        raise ValueError(f"setting file {path}: `name` {setting.name!r} is a built-in setting "
                         "with other fields; give yours another name.")
    return setting
