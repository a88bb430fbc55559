"""The seed policy: every seed tf_ama derives, and from what (docs/design.md §8).

A model's `seed` seeds its initial parameters and, unless `data_seed` is given, the
valuations drawn during training. The samples used to judge a model are drawn from seeds
derived from the model's seed, so that they never coincide with each other:

    validation (during training, and `prune`'s selection sample)   seed + VALIDATION_OFFSET
    final exact evaluation (`evaluate`, `menu_usage`, the CLI)      seed + EVALUATION_OFFSET
    the polish's held-out check (`TrainingConfig.polish`)            seed + HOLDOUT_OFFSET
    a contextual menu against per-context Myerson, size by size      seed + SELECTION_OFFSET
    the baselines' reserve search (on evaluation seed `s`)           s + RESERVE_OFFSET
    restart r of a run (`TrainingConfig.restarts`)                   seed + RESTART_STRIDE r

The training stream draws the valuations of step `t` from the stateless seed
`fold_in([data_seed, key], t)` (then the replica), `key` `TRAINING_STREAM_KEY` for a setting
and `CONTEXTUAL_STREAM_KEY` for a contextual one (`tf_ama.data.datasets.step_valuations`).

Initial parameters: each variable of a menu layer has its own offset, its initializer seeded
`menu_variable_seed(seed, offset)` (so that one variable can be rebuilt alone: a winning
ticket); the contextual menu network seeds its layers with `network_layer_seed`, its blocks
from `network_seed(seed)` (`grid_block_seed`, `encoder_seed`).

NumPy-free and TensorFlow-free: the CLI imports it to print its defaults.
"""

VALIDATION_OFFSET = 1
EVALUATION_OFFSET = 2
HOLDOUT_OFFSET = 3
SELECTION_OFFSET = 4
RESERVE_OFFSET = 1_000_003
RESTART_STRIDE = 1000
TRAINING_STREAM_KEY = 0x5EED
CONTEXTUAL_STREAM_KEY = 0xC0DE
_SEED_LIMIT = 2**31  # stateless and Keras initializer seeds are int32


def validation_seed(model_seed):
    """The seed of the validation sample of a model seeded `model_seed`."""
    return model_seed + VALIDATION_OFFSET


def evaluation_seed(model_seed):
    """The seed of the final exact evaluation sample of a model seeded `model_seed`."""
    return model_seed + EVALUATION_OFFSET


def holdout_seed(model_seed):
    """The seed of the sample on which a polished menu is checked (`TrainingConfig.polish`)."""
    return model_seed + HOLDOUT_OFFSET


def selection_seed(model_seed):
    """The seed of the sample on which a contextual model's menu and per-context Myerson are
    compared, size by size (`tf_ama.evaluation.contextual.choose_sizes`)."""
    return model_seed + SELECTION_OFFSET


def reserve_seed(seed):
    """The seed of the reserve search's own sample, for baselines evaluated on `seed`."""
    return seed + RESERVE_OFFSET


def restart_seed(model_seed, restart):
    """The model seed of restart `restart` (0: the model's own)."""
    return model_seed + RESTART_STRIDE * restart


def menu_variable_seed(seed, offset):
    """The initializer seed of the menu variable with `offset`, for a menu seeded `seed`."""
    return (seed * 1000 + offset) % _SEED_LIMIT


def network_layer_seed(seed, offset):
    """The initializer seed of layer `offset` of a network part seeded `seed`."""
    return (seed * 1009 + offset) % _SEED_LIMIT


def network_seed(seed):
    """The seed of a contextual menu network's parts, for a menu seeded `seed`."""
    return seed * 101


def grid_block_seed(seed, block):
    """The seed of grid block `block` of a network whose parts are seeded `seed`."""
    return seed + 10 + block


def encoder_seed(block_seed, direction):
    """The seed of a grid block's attention along `direction` (1: items, 2: bidders)."""
    return block_seed * 7 + direction
