"""The seed policy: which samples each seed draws (docs/design.md §8).

A model's `seed` seeds its initial parameters (each menu layer derives its initializers'
seeds from it) and, unless `data_seed` is given, the valuations drawn during training. The
samples used to judge a model are drawn from seeds derived from the model's seed, so that
they never coincide with each other:

    validation (during training, and `prune`'s selection sample)   seed + VALIDATION_OFFSET
    final exact evaluation (`evaluate`, `menu_usage`, the CLI)      seed + EVALUATION_OFFSET
    the polish's held-out check (`TrainingConfig.polish`)            seed + HOLDOUT_OFFSET

NumPy-free and TensorFlow-free: the CLI imports it to print its defaults.
"""

VALIDATION_OFFSET = 1
EVALUATION_OFFSET = 2
HOLDOUT_OFFSET = 3


def validation_seed(model_seed):
    """The seed of the validation sample of a model seeded `model_seed`."""
    return model_seed + VALIDATION_OFFSET


def evaluation_seed(model_seed):
    """The seed of the final exact evaluation sample of a model seeded `model_seed`."""
    return model_seed + EVALUATION_OFFSET


def holdout_seed(model_seed):
    """The seed of the sample on which a polished menu is checked (`TrainingConfig.polish`)."""
    return model_seed + HOLDOUT_OFFSET
