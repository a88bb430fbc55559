"""Menu kinds as Keras layers, and the bidder weights.

A menu layer owns the variables of one kind of menu and builds, for a dtype, the menu's
`allocations [K, m, n]` and `boosts [K]` (entry 0 the empty allocation with boost 0;
`docs/design.md` §1 and §7). `AffineMaximizerAuction` holds one menu layer and one
`BidderWeights` layer; it never branches on the kind.

* `LotteryMenu`: K - 1 learned lotteries (`additive_lottery` or
  `unit_demand_lottery`) and their boosts.
* `DeterministicMenu`: every feasible 0/1 allocation, fixed; only the boosts are learned.
* `FixedMenu`: a given menu (`AffineMaximizerAuction.from_menu`), float64 and not trained:
  served with exactly the given numbers (with the family's given `c` if `separable`).
* `SeparableMenu` (`"separable"`): the item-separable family alone (`tf_ama.core.separable`): every
  deterministic allocation, boost `sum_j c[o_j, j]` with `c` `[m + 1, n]` learned; it starts
  at separate Myerson (`c[nobody, j]` the item's reserve, `c[bidder, j] = 0`).
* `LotterySeparableMenu` (`"lottery+separable"`): a lottery menu joined with that family.
* `BundleSizesMenu` (`"bundle-sizes"`): the bundle-size family alone
  (`tf_ama.core.bundle_sizes`): the item-separable family plus a learned boost `g[o, k]` for
  owner `o` holding `k` items, `g` `[m + 1, n + 1]` starting at 0 (separate Myerson);
  `LotteryBundleSizesMenu` (`"lottery+bundle-sizes"`) joins a lottery menu to it.

A menu with the family has `separable_boosts(dtype)` (`c`; None for the others) and
`size_boosts(dtype)` (`g`; None but for the bundle-size family): its (m + 1)^n entries
follow the `menu_size` explicit ones and are never enumerated. Additive bidders only
(docs/design.md §7).

Adding a menu kind touches one new class and the registry: subclass `MenuLayer`, decorate
it with `@menu_kind("name")`, create the variables in `__init__`, implement
`allocations_and_boosts(dtype)` and `get_config`. `AffineMaximizerAuction(setting,
menu="name", **options)` then builds it with `for_setting(setting, seed=..., **options)`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_ama.core.allocations import additive_lottery, deterministic_allocations, unit_demand_lottery
from tf_ama.core.exactness import DEMANDS, MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT
from tf_ama.menus.compat import LoadedByModel
from tf_ama.menus.families import ReservesFamily, SeparableFamily, SizeFamily, checked_reserves
from tf_ama.utils import checks, defaults, footprint, seeds

MENU_KINDS = {}  # kind name -> MenuLayer subclass (the registry)


def menu_kind(name):
    """Class decorator: registers a `MenuLayer` subclass as menu kind `name` (and with Keras
    serialization, so that a saved model refers to it as `tf_ama>ClassName`)."""

    def register(cls):
        if MENU_KINDS.get(name, cls).__qualname__ != cls.__qualname__:
            raise ValueError(f"Menu kind {name!r} is already {MENU_KINDS[name].__name__}; "
                             "give the new kind another name.")
        cls.kind = name
        MENU_KINDS[name] = cls
        return keras.saving.register_keras_serializable(package="tf_ama")(cls)

    return register


class MenuLayer(LoadedByModel, keras.layers.Layer):
    """Base class of the menu kinds: the menu of a setting's `num_bidders` x `num_items`.

    Args:
      num_bidders, num_items, demand: the setting's shape (`"additive"` or `"unit_demand"`).
      seed: seeds the initial values of the variables (each variable has its own offset in
        `SEED_OFFSETS`, so that it can be rebuilt alone, e.g. for a winning ticket).
    """

    kind = None
    given_bidder_weights = False  # True: the model's bidder weights are given, float64
    SEED_OFFSETS = {}  # variable name -> offset of its initializer's seed
    # Options of tf_ama 0.1's flat model signature that this kind does not use: accepted and
    # ignored by `for_setting`, so that configs and calls written for 0.1 keep working.
    unused_options = ()

    def __init__(self, num_bidders, num_items, demand="additive", seed=0, **kwargs):
        kwargs.setdefault("name", "menu")
        super().__init__(**kwargs)
        self.num_bidders = checks.integer("num_bidders", num_bidders, minimum=1)
        self.num_items = checks.integer("num_items", num_items, minimum=1)
        self.demand = checks.choice("demand", demand, DEMANDS)
        self.seed = checks.seed("seed", seed)

    @classmethod
    def for_setting(cls, setting, **options):
        """This kind's menu for `setting` (a `tf_ama.Setting`)."""
        for name in cls.unused_options:
            options.pop(name, None)
        return cls(num_bidders=setting.num_bidders, num_items=setting.num_items,
                   demand=setting.demand, **options)

    def allocations_and_boosts(self, dtype):
        """`(allocations [K, m, n], boosts [K])` in `dtype`: parameters are cast before the
        allocations are built from them, so that the float64 menu is exact."""
        raise NotImplementedError

    def separable_boosts(self, dtype):
        """The item-separable family's `c` `[m + 1, n]` in `dtype`, or None (no family)."""
        del dtype
        return None

    def size_boosts(self, dtype):
        """The bundle-size family's `g` `[m + 1, n + 1]` in `dtype`, or None (none)."""
        del dtype
        return None

    def initializer(self, variable_name, stddev):
        """The seeded initializer of variable `variable_name` (same values at every call)."""
        offset = self.SEED_OFFSETS[variable_name]
        return keras.initializers.RandomNormal(stddev=stddev,
                                               seed=seeds.menu_variable_seed(self.seed, offset))

    def _boosts(self, learned, dtype):
        return tf.concat([tf.zeros([1], dtype), tf.cast(learned, dtype)], axis=0)

    def get_config(self):
        return {**super().get_config(), "num_bidders": self.num_bidders,
                "num_items": self.num_items, "demand": self.demand, "seed": self.seed}


@menu_kind("lottery")
class LotteryMenu(MenuLayer):
    """K - 1 learned lotteries and their boosts, plus the empty entry.

    Args:
      menu_size: `K`, the empty entry included (>= 2).
      init_scale: standard deviation of the initial allocation logits.
      boost_init_scale: standard deviation of the initial boosts; 0 (default): all start
        at 0. Random boosts let different entries win on different profiles from the first
        step, so restarts explore more varied menus.
    """

    SEED_OFFSETS = {"allocation_logits": 1, "item_logits": 1, "bidder_logits": 2, "boosts": 3}

    def __init__(self, num_bidders, num_items, demand="additive", menu_size=defaults.MENU_SIZE,
                 seed=0, init_scale=1.0, boost_init_scale=0.0, **kwargs):
        super().__init__(num_bidders, num_items, demand, seed, **kwargs)
        self.menu_size = checks.integer("menu_size", menu_size, minimum=2)
        self.init_scale = checks.number("init_scale", init_scale, above=0)
        self.boost_init_scale = checks.number("boost_init_scale", boost_init_scale, minimum=0)
        learned, m, n = self.menu_size - 1, self.num_bidders, self.num_items
        # Additive: logits over the bidders plus a dummy "unallocated" row; unit demand: two
        # tensors normalized over items and over bidders (menus.py).
        shapes = ({"allocation_logits": (learned, m + 1, n)} if self.demand == "additive" else
                  {"item_logits": (learned, m, n), "bidder_logits": (learned, m, n)})
        parameters = sum(int(np.prod(shape)) for shape in shapes.values())
        footprint.check_fits(  # each float32 variable and its initial value
            f"A lottery menu of {self.menu_size} entries for {m} bidders x {n} items "
            f"({parameters:.3g} parameters)", 8 * parameters,
            "give a smaller menu_size (tf-ama train --menu-size) or a setting with fewer items.")
        self.allocation_logits = [
            self.add_weight(shape=shape, initializer=self.initializer(name, self.init_scale),
                            name=name) for name, shape in shapes.items()]
        self.boosts = self.add_weight(
            shape=(learned,), name="boosts", initializer=(
                self.initializer("boosts", self.boost_init_scale) if self.boost_init_scale
                else "zeros"))
        self.built = True

    def allocations_and_boosts(self, dtype):
        logits = [tf.cast(v, dtype) for v in self.allocation_logits]
        allocations = (additive_lottery(*logits) if self.demand == "additive"
                       else unit_demand_lottery(*logits))
        return allocations, self._boosts(self.boosts, dtype)

    def initial_values(self):
        """`{variable name: numpy array}`: the initial values, rebuilt from `seed`."""
        values = {v.name: self.initializer(v.name, self.init_scale)(v.shape, dtype=v.dtype)
                  for v in self.allocation_logits}
        values["boosts"] = (
            self.initializer("boosts", self.boost_init_scale)(self.boosts.shape, self.boosts.dtype)
            if self.boost_init_scale else np.zeros(self.boosts.shape, self.boosts.dtype))
        return {name: np.asarray(value) for name, value in values.items()}

    def winning_ticket(self, entries):
        """A new menu of `entries` (indices of this menu; 0 is ignored, the empty entry is
        always first) at their initial values, the "winning ticket" of paper §6.4."""
        rows = sorted({int(k) for k in entries} - {0})
        if not rows or rows[0] < 0 or rows[-1] >= self.menu_size:
            raise ValueError(f"`entries` must be menu indices in [1, {self.menu_size}); "
                             f"got {entries}.")
        ticket = type(self).from_config({**self.get_config(), "menu_size": len(rows) + 1})
        initial = self.initial_values()
        for variable in [*ticket.allocation_logits, ticket.boosts]:
            variable.assign(initial[variable.name][np.asarray(rows) - 1])
        return ticket

    def get_config(self):
        return {**super().get_config(), "menu_size": self.menu_size,
                "init_scale": self.init_scale, "boost_init_scale": self.boost_init_scale}


@menu_kind("deterministic")
class DeterministicMenu(MenuLayer):
    """Every feasible 0/1 allocation (`deterministic_allocations`, refused with its
    size when too large to enumerate), fixed; only the boosts are learned.

    Args:
      boost_init_scale: standard deviation of random initial boosts (added to the start
        below); 0 (default): none.
      reserves: `[n]` reserves the boosts start from: allocation `a` starts at
        `-sum_j reserves[j] * (item j allocated in a)`, a second-price auction per item
        with these reserves (additive bidders); None: all boosts start at 0 (VCG).
        `for_setting` gives additive settings separate Myerson's
        (`tf_ama.data.reserves.separate_reserves`), as for the item-separable family.
    """

    SEED_OFFSETS = {"boosts": 3}
    unused_options = ("menu_size", "init_scale")  # the size is the number of allocations

    def __init__(self, num_bidders, num_items, demand="additive", seed=0, boost_init_scale=0.0,
                 reserves=None, **kwargs):
        super().__init__(num_bidders, num_items, demand, seed, **kwargs)
        self.boost_init_scale = checks.number("boost_init_scale", boost_init_scale, minimum=0)
        table = deterministic_allocations(self.num_bidders, self.num_items, self.demand)
        self.menu_size = len(table)
        self.allocations = self.add_weight(
            shape=table.shape, initializer=keras.initializers.Constant(table), trainable=False,
            dtype="float32", name="allocations")
        self.reserves = checked_reserves(reserves, self.num_items)
        start = (np.zeros(self.menu_size - 1) if self.reserves is None else
                 -table[1:].sum(axis=1) @ np.asarray(self.reserves))
        random = (self.initializer("boosts", self.boost_init_scale)((self.menu_size - 1,))
                  if self.boost_init_scale else 0.0)
        self.boosts = self.add_weight(
            shape=(self.menu_size - 1,), name="boosts",
            initializer=keras.initializers.Constant(np.asarray(start + random, np.float32)))
        self.built = True

    @classmethod
    def for_setting(cls, setting, **options):
        if "reserves" not in options and setting.demand == "additive":
            from tf_ama.data.reserves import separate_reserves

            options["reserves"] = separate_reserves(setting)
        return super().for_setting(setting, **options)

    def allocations_and_boosts(self, dtype):
        return tf.cast(self.allocations, dtype), self._boosts(self.boosts, dtype)

    def get_config(self):
        return {**super().get_config(), "boost_init_scale": self.boost_init_scale,
                "reserves": self.reserves}


@menu_kind("separable")
class SeparableMenu(ReservesFamily, MenuLayer):
    """The item-separable family alone: a learned item-wise auction with bidder- and
    item-specific boosts (see `ReservesFamily`). Its explicit part is the empty entry.

    Args:
      reserves: `[n]` initial reserves (default in `for_setting`: separate Myerson's).
    """

    unused_options = ("menu_size", "init_scale", "boost_init_scale")
    menu_size = 1

    def __init__(self, num_bidders, num_items, demand="additive", seed=0, reserves=None,
                 **kwargs):
        super().__init__(num_bidders, num_items, demand, seed, **kwargs)
        self._add_reserves_family(reserves)
        self.built = True

    def allocations_and_boosts(self, dtype):
        return (tf.zeros([1, self.num_bidders, self.num_items], dtype), tf.zeros([1], dtype))


@menu_kind("bundle-sizes")
class BundleSizesMenu(SizeFamily, SeparableMenu):
    """The bundle-size family alone: the item-separable family (`ReservesFamily`, starting
    at separate Myerson) plus a learned boost per owner and bundle size (`SizeFamily`,
    starting at 0). Its explicit part is the empty entry. Its exact outcome and training
    cost grow with the bidders' count vectors, `C(n + m, m)` (286 at 3x10, 3003 at 5x10).

    Args:
      reserves: `[n]` initial reserves (default in `for_setting`: separate Myerson's).
    """

    def __init__(self, num_bidders, num_items, demand="additive", seed=0, reserves=None,
                 **kwargs):
        super().__init__(num_bidders, num_items, demand, seed, reserves, **kwargs)
        self._add_sizes()


@menu_kind("lottery+separable")
class LotterySeparableMenu(ReservesFamily, LotteryMenu):
    """A lottery menu (`LotteryMenu`, same options) joined with the item-separable family
    (`ReservesFamily`): the AMA over their union.

    Args:
      reserves: `[n]` initial reserves of the family (default in `for_setting`: separate
        Myerson's).
    """

    def __init__(self, num_bidders, num_items, demand="additive", menu_size=defaults.MENU_SIZE,
                 seed=0, init_scale=1.0, boost_init_scale=0.0, reserves=None, **kwargs):
        super().__init__(num_bidders, num_items, demand, menu_size, seed, init_scale,
                         boost_init_scale, **kwargs)
        self._add_reserves_family(reserves)


@menu_kind("lottery+bundle-sizes")
class LotteryBundleSizesMenu(SizeFamily, LotterySeparableMenu):
    """A lottery menu joined with the bundle-size family (`SizeFamily`, `g` starting at 0):
    trained in the phases of `"lottery+separable"` (`tf_ama.training.joining`), same
    options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_sizes()


@menu_kind("fixed")
class FixedMenu(SizeFamily, SeparableFamily, MenuLayer):
    """A given menu, float64 and not trained (`AffineMaximizerAuction.from_menu` validates and
    assigns it): served with exactly the given numbers. Its bidder weights are given too.

    Args:
      menu_size: `K`, the explicit entries.
      separable: the item-separable family joins the menu, with given float64 `c`.
      bundle_sizes: with `separable`, the family is the bundle-size family, with given
        float64 `g`.
    """

    given_bidder_weights = True
    unused_options = ("init_scale", "boost_init_scale")

    def __init__(self, num_bidders, num_items, demand="additive", menu_size=1, seed=0,
                 separable=False, bundle_sizes=False, **kwargs):
        super().__init__(num_bidders, num_items, demand, seed, **kwargs)
        self.menu_size = checks.integer("menu_size", menu_size, minimum=1)
        self.separable = checks.boolean("separable", separable)
        self.bundle_sizes = checks.boolean("bundle_sizes", bundle_sizes)
        if self.bundle_sizes and not self.separable:
            raise ValueError("`bundle_sizes` extends the item-separable family: set "
                             "`separable=True` too.")
        shape = (self.menu_size, self.num_bidders, self.num_items)
        self.allocations = self.add_weight(shape=shape, initializer="zeros", trainable=False,
                                           dtype="float64", name="allocations")
        self.boosts = self.add_weight(shape=(self.menu_size - 1,), initializer="zeros",
                                      trainable=False, dtype="float64", name="boosts")
        if self.separable:
            self._add_family(0.0, trainable=False, dtype="float64")
        if self.bundle_sizes:
            self._add_sizes(trainable=False, dtype="float64")
        self.built = True

    def assign_menu(self, allocations, boosts, separable_boosts=None, size_boosts=None):
        """Sets the menu to float64 arrays that `tf_ama.core.allocations.validate_fixed_menu`
        has checked (it does not check them again; `boosts[0]`, the empty entry's, is 0
        there), and the family's `c` (and `g`) if the menu is `separable` (`bundle_sizes`)."""
        if (separable_boosts is not None) != self.separable:
            raise ValueError("`separable_boosts` must be given exactly when the fixed menu is "
                             f"separable (separable={self.separable}).")
        if (size_boosts is not None) != self.bundle_sizes:
            raise ValueError("`size_boosts` must be given exactly when the fixed menu has "
                             f"bundle sizes (bundle_sizes={self.bundle_sizes}).")
        self.allocations.assign(allocations)
        self.boosts.assign(boosts[1:])
        if self.separable:
            self.family_boosts.assign(separable_boosts)
        if self.bundle_sizes:
            self.bundle_size_boosts.assign(size_boosts)

    def allocations_and_boosts(self, dtype):
        return tf.cast(self.allocations, dtype), self._boosts(self.boosts, dtype)

    def separable_boosts(self, dtype):
        return super().separable_boosts(dtype) if self.separable else None

    def size_boosts(self, dtype):
        return super().size_boosts(dtype) if self.bundle_sizes else None

    def get_config(self):
        return {**super().get_config(), "menu_size": self.menu_size, "separable": self.separable,
                "bundle_sizes": self.bundle_sizes}


@keras.saving.register_keras_serializable(package="tf_ama")
class BidderWeights(LoadedByModel, keras.layers.Layer):
    """Positive bidder weights `w [m]`.

    Learned in log space (float32, so that they stay positive; trainable if `learned`, else
    fixed at 1), or `given` as float64 values (a fixed menu's: `exp(log w)` may not return
    `w`). Learned weights are clipped to the exactness contract's range (`tf_ama.core.exactness`),
    so that a learned weight never gets the served menu refused; inside the range the clip
    changes no bit.
    """

    def __init__(self, num_bidders, learned=False, given=False, **kwargs):
        kwargs.setdefault("name", "bidder_weights")
        super().__init__(**kwargs)
        self.num_bidders = checks.integer("num_bidders", num_bidders, minimum=1)
        self.learned = checks.boolean("learned", learned)
        self.given = checks.boolean("given", given)
        if self.given:
            self.given_weights = self.add_weight(shape=(self.num_bidders,), initializer="ones",
                                                 trainable=False, dtype="float64",
                                                 name="bidder_weights")
        else:
            self.log_weights = self.add_weight(shape=(self.num_bidders,), initializer="zeros",
                                               trainable=self.learned, dtype="float32",
                                               name="log_bidder_weights")
        self.built = True

    def values(self, dtype):
        """The weights `[m]` in `dtype`."""
        if self.given:
            return tf.cast(self.given_weights, dtype)
        return tf.clip_by_value(tf.exp(tf.cast(self.log_weights, dtype)),
                                MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT)

    def get_config(self):
        return {**super().get_config(), "num_bidders": self.num_bidders,
                "learned": self.learned, "given": self.given}


def make_menu(menu, setting, seed=0, **options):
    """The menu layer for `setting`: built from a kind name with `seed` and `options`, or a
    given menu layer, or a serialized one (a saved model's config: a dict)."""
    if isinstance(menu, str):
        kind = checks.choice("menu", menu, MENU_KINDS)
        return MENU_KINDS[kind].for_setting(setting, seed=seed, **options)
    if isinstance(menu, dict):
        menu = keras.saving.deserialize_keras_object(menu)
    if not isinstance(menu, MenuLayer):
        raise ValueError(f"`menu` must be a menu kind {tuple(MENU_KINDS)}, a tf_ama menu layer "
                         f"or its config; got {menu!r}.")
    if options:
        raise ValueError(f"{sorted(options)} are options of the menu: give them to the menu "
                         f"layer ({type(menu).__name__}(...)), not to the model.")
    strategy = tf.distribute.get_strategy()
    if not all(strategy.extended.variable_created_in_scope(v.value) for v in menu.variables):
        raise ValueError("`menu` was built outside the scope of the tf.distribute strategy the "
                         "model is built in: build it inside `with strategy.scope():` too.")
    shape = (menu.num_bidders, menu.num_items, menu.demand)
    if shape != (setting.num_bidders, setting.num_items, setting.demand):
        raise ValueError(f"`menu` is for {shape[0]} {shape[2]} bidders and {shape[1]} items; the "
                         f"setting {setting.name!r} has {setting.shape_name} {setting.demand}.")
    return menu
