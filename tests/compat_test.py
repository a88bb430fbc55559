"""Files saved by tf_ama 0.1 (tests/fixtures/v0_1, written before menus became layers) load
with the current package and give the bit-identical exact outcomes they gave then."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.training import runs

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "v0_1")
RECORDED = np.load(os.path.join(FIXTURES, "outcomes.npz"))
MODEL_KWARGS = {"menu_size": 8, "seed": 7, "jit_objective": False, "boost_init_scale": 0.5}
TRAINING = tf_ama.TrainingConfig(steps=4, steps_per_epoch=2, batch_size=32,
                                 validation_samples=64, evaluation_samples=64)


def _assert_recorded_outcomes(model, name):
    outcome = model(tf.constant(RECORDED[f"{name}/bids"]))
    for key in ("allocation", "payments", "menu_index"):
        np.testing.assert_array_equal(outcome[key].numpy(), RECORDED[f"{name}/{key}"])


@pytest.mark.parametrize("name,kind", [("lottery_additive", "lottery"),
                                       ("lottery_unit_demand", "lottery"),
                                       ("deterministic", "deterministic"), ("fixed", "fixed")])
def test_models_saved_by_0_1_load_with_bit_identical_outcomes(name, kind, tmp_path):
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    assert model.menu_layer.kind == kind
    _assert_recorded_outcomes(model, name)
    # Saved again by this version (the menu now a layer of its own), it loads the same.
    path = str(tmp_path / "again.keras")
    model.save(path)
    _assert_recorded_outcomes(keras.saving.load_model(path), name)


def test_a_finished_run_of_0_1_loads_and_is_not_trained_again(tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(os.path.join(FIXTURES, "run_finished"), out)
    _assert_recorded_outcomes(runs.load_run(out)[0], "run")
    model = tf_ama.train_run("additive_1x2_uniform", out, MODEL_KWARGS, TRAINING, verbose=0)
    _assert_recorded_outcomes(model, "run")


def test_an_interrupted_run_of_0_1_resumes_into_the_model_it_would_have_finished(tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(os.path.join(FIXTURES, "run_interrupted"), out)
    model = tf_ama.train_run("additive_1x2_uniform", out, MODEL_KWARGS, TRAINING, verbose=0)
    _assert_recorded_outcomes(model, "run")
