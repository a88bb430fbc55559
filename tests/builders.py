"""Test helpers shared by several test files: `from builders import compiled_model,
lottery_menu, plain_and_xla, run_listing`."""

import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings

import tf_ama
from tf_ama.core import allocations as menus


def compiled_model(setting="additive_2x2_uniform", **kwargs):
    """A small AffineMaximizerAuction (16 entries unless given), compiled with Adam(0.01)."""
    kwargs.setdefault("menu_size", 16)
    model = tf_ama.AffineMaximizerAuction(setting, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def run_listing(run):
    """The files of run directory `run` (a `pathlib.Path`), relative to it, sorted; TensorBoard
    logs (any `logs` folder, the restarts' too) left out: their names hold times."""
    from tf_ama.training import runs

    return sorted(os.path.relpath(os.path.join(directory, name), run)
                  for directory, _, names in os.walk(run) for name in names
                  if runs.LOGS not in pathlib.Path(directory).relative_to(run).parts)


def lottery_menu(rng, num_bidders, num_items, menu_size, boost_scale):
    """A random feasible menu: softmax lotteries and a few 0/1 entries, entry 0 empty."""
    logits = rng.normal(scale=3.0, size=(menu_size - 1, num_bidders + 1, num_items))
    allocations = menus.additive_lottery(tf.constant(logits, tf.float64)).numpy()
    deterministic = rng.uniform(size=menu_size) < 0.3
    deterministic[0] = False
    allocations[deterministic] = np.round(allocations[deterministic])
    boosts = boost_scale * rng.normal(size=menu_size)
    boosts[0] = 0.0
    return allocations, boosts


def plain_and_xla(check, strategy, budget, xla_examples):
    """Two slow hypothesis tests of `check(drawn, jit_compile)` on examples of `strategy`:
    plain with the settings `budget`, and compiled with XLA on only `xla_examples` of them
    (each example compiles its own shapes, seconds apiece; the plain test covers the
    strategy's range, the XLA one the compiled kernel). Assign the pair to two `test_`
    names of the module."""
    def test(jit_compile, examples):
        @pytest.mark.slow
        @settings(budget, max_examples=examples)
        @given(drawn=strategy)
        def run(drawn):
            check(drawn, jit_compile)
        return run

    return test(False, budget.max_examples), test(True, xla_examples)
