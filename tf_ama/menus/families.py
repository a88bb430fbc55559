"""The families' boosts as mixins of the menu layers (`tf_ama.menus.layers`): the
item-separable family's `c` `[m + 1, n]` (`SeparableFamily`; learned from reserves in
`ReservesFamily`) and the bundle-size family's `g` `[m + 1, n + 1]` (`SizeFamily`). A menu
kind that holds a family mixes one in; the family's entries are never enumerated
(`tf_ama.core.separable`, `tf_ama.core.bundle_sizes`)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_ama.core.bundle_sizes import check_count_states
from tf_ama.utils import checks


def checked_reserves(reserves, num_items):
    """`reserves` as a list of `num_items` finite numbers, or None."""
    if reserves is None:
        return None
    reserves = list(reserves)
    if len(reserves) != num_items:
        raise ValueError(f"`reserves` must have one value per item ({num_items}); "
                         f"got {len(reserves)}.")
    return [checks.number(f"reserves[{j}]", r) for j, r in enumerate(reserves)]


class SeparableFamily:
    """Mixin of the menu layers that hold the item-separable family's boosts `c` `[m + 1, n]`
    (`tf_ama.core.separable`; rows the bidders, then nobody) as variable `family_boosts`."""

    def _add_family(self, initial, trainable=True, dtype="float32"):
        if self.demand != "additive":
            raise ValueError(
                f"Menu {self.kind!r} holds the item-separable family, which is for additive "
                "bidders; unit-demand bidders' deterministic allocations are matchings, which "
                "it cannot express: use menu='lottery' or menu='deterministic'.")
        self.family_boosts = self.add_weight(
            shape=(self.num_bidders + 1, self.num_items), trainable=trainable, dtype=dtype,
            initializer=keras.initializers.Constant(initial), name="separable_boosts")

    def separable_boosts(self, dtype):
        return tf.cast(self.family_boosts, dtype)


class ReservesFamily(SeparableFamily):
    """The learned family of the `"separable"` and `"lottery+separable"` kinds, initialized
    at a second-price auction per item with reserves `reserves` `[n]`: `c[nobody, j]` the
    reserve, `c[bidder, j] = 0` (separate Myerson for i.i.d. regular bidders; all 0 is VCG).
    `for_setting` takes the setting's separate-Myerson reserves
    (`tf_ama.data.reserves.separate_reserves`) when none are given."""

    @classmethod
    def for_setting(cls, setting, **options):
        if options.get("reserves") is None and setting.demand == "additive":
            from tf_ama.data.reserves import separate_reserves

            options["reserves"] = separate_reserves(setting)
        return super().for_setting(setting, **options)

    def _add_reserves_family(self, reserves):
        self.reserves = checked_reserves(
            [0.0] * self.num_items if reserves is None else reserves, self.num_items)
        initial = np.zeros((self.num_bidders + 1, self.num_items), np.float32)
        initial[-1] = self.reserves
        self._add_family(initial)

    def get_config(self):
        return {**super().get_config(), "reserves": self.reserves}


class SizeFamily:
    """Mixin of the menu layers that hold the bundle-size family's `g` `[m + 1, n + 1]`
    (`tf_ama.core.bundle_sizes`; rows the bidders, then nobody; a column per bundle size)
    as variable `bundle_size_boosts`, beside the family's `c`."""

    def _add_sizes(self, trainable=True, dtype="float32"):
        check_count_states(self.num_bidders, self.num_items, f"Menu {self.kind!r}",
                           "use menu 'separable' or 'lottery+separable' at this size")
        self.bundle_size_boosts = self.add_weight(
            shape=(self.num_bidders + 1, self.num_items + 1), trainable=trainable, dtype=dtype,
            initializer="zeros", name="size_boosts")

    def size_boosts(self, dtype):
        return tf.cast(self.bundle_size_boosts, dtype)
