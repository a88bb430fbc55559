"""Test helper shared by tests/model_test.py and tests/data_test.py: `from builders import
compiled_model`."""

import keras

import tf_ama


def compiled_model(setting="additive_2x2_uniform", **kwargs):
    """A small AffineMaximizerAuction (16 entries unless given), compiled with Adam(0.01)."""
    kwargs.setdefault("menu_size", 16)
    model = tf_ama.AffineMaximizerAuction(setting, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model
