"""Joining a trained lottery menu with the item-separable family (`"lottery+separable"`).

Trained jointly from the start, a lottery menu joined with the family at separate Myerson
stays separate Myerson: random lottery entries lose every profile to the family, and their
gradient, `~exp(-lambda * gap)`, vanishes. What works (`benchmarks/README.md`, "The
item-separable family") is to start the joint training from a trained lottery menu:

1. train the lottery menu alone (`tf-ama train` does this in the run's `lottery/` folder);
2. join it with the family at separate Myerson's reserves (`join`), every lottery boost
   shifted by one constant `shift` (entry 0 stays empty with boost 0): the lottery entries'
   welfare moves against the family's. For every shift the union is an AMA, so it is
   strategyproof and IR; `choose_shift` picks the shift of the highest exact revenue on the
   validation sample, from a grid in units of the family's empty-allocation boost
   `sum_j r_j` (`SHIFT_FRACTIONS`);
3. train both parts jointly (`TrainingConfig.joint_steps`, at `joint_learning_rate`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_ama.core.mechanism import exact_outcome
from tf_ama.menus.layers import LotteryMenu, LotterySeparableMenu

# The shifts tried, as fractions of sum_j r_j (the family's boost of its empty allocation):
# from a little below 0 (the family favoured) to the whole of it (the lottery favoured).
SHIFT_FRACTIONS = tuple(round(0.02 * k, 2) for k in range(-10, 51))


def lottery_options(layer):
    """The `LotteryMenu` config of a `LotterySeparableMenu` (its lottery part; also of
    `"lottery+bundle-sizes"`, whose family's `g` starts at 0 when joined)."""
    if not isinstance(layer, LotterySeparableMenu):
        raise ValueError(f"Only a 'lottery+separable' or 'lottery+bundle-sizes' menu has a "
                         f"lottery part to train first; this menu is {layer.kind!r}.")
    config = layer.get_config()
    del config["reserves"]
    return config


def join(joined, lottery, shift):
    """Sets the model `joined` (a `"lottery+separable"` menu) to the lottery menu of the model
    `lottery` (same setting, menu size and bidder weights' kind), its boosts plus `shift`;
    the family stays at its reserves and the bidder weights are `lottery`'s."""
    layer = joined.menu_layer
    lottery_options(layer)
    if not isinstance(lottery.menu_layer, LotteryMenu) or (
            lottery.menu_layer.menu_size != layer.menu_size):
        raise ValueError(f"`lottery` must have a lottery menu of {layer.menu_size} entries.")
    for mine, theirs in zip(layer.allocation_logits, lottery.menu_layer.allocation_logits,
                            strict=True):
        mine.assign(theirs)
    layer.boosts.assign(lottery.menu_layer.boosts + float(shift))
    for mine, theirs in zip(joined.bidder_weights_layer.variables,
                            lottery.bidder_weights_layer.variables, strict=True):
        mine.assign(theirs)


def choose_shift(joined, lottery, valuations, fractions=SHIFT_FRACTIONS):
    """The shift of `join(joined, lottery, shift)` of the highest exact revenue on
    `valuations` `[N, m, n]` (the validation sample), among `fractions` of `sum_j r_j`.

    Returns `(shift, {shift: revenue})`; ties go to the smaller shift. `joined` is left
    joined at the chosen shift."""
    scale = float(np.sum(joined.menu_layer.reserves)) or 1.0
    bids = tf.cast(valuations, tf.float64)
    revenues = {}
    for fraction in fractions:
        shift = round(fraction * scale, 12)
        join(joined, lottery, shift)
        outcome = exact_outcome(bids, *joined.menu(tf.float64), jit_compile=True)
        revenues[shift] = float(np.mean(np.sum(outcome["payments"].numpy(), axis=1)))
    best = max(revenues, key=lambda shift: (revenues[shift], -shift))
    join(joined, lottery, best)
    return best, revenues
