"""Tests of per-profile outcome files (tf_ama.evaluation.outcome_files, `evaluate(..., outcomes=)`):
their content against `tf_ama.exact_outcome` on the same bids, atomicity, bad paths."""

import os

import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.data import settings
from tf_ama.evaluation import outcome_files, reports as evaluation, scanning


def model_with_boosts(setting="additive_2x2_uniform", menu_size=24, seed=1):
    model = tf_ama.AffineMaximizerAuction(setting, menu_size=menu_size, seed=seed)
    boosts = np.random.default_rng(seed).normal(size=model.menu_layer.boosts.shape) * 0.3
    model.menu_layer.boosts.assign(boosts.astype("float32"))
    return model


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_file_equals_exact_outcome_on_the_same_bids(tmp_path, monkeypatch, suffix):
    # Several sample blocks (300 profiles) and calls (micro-batches of 32): the writer
    # receives many slices; the oracle is exact_outcome on all the bids at once.
    model = model_with_boosts()
    monkeypatch.setattr(settings, "SAMPLE_BLOCK_ELEMENTS", 4 * 300)
    path = tmp_path / f"outcomes{suffix}"
    report = evaluation.evaluate(model, num_samples=700, seed=3, baselines=False,
                                 micro_batch_size=32, jit_compile=False, outcomes=path)
    data = outcome_files.read_outcomes(path)
    bids = np.concatenate(list(settings.sample_blocks(model.setting, 700, 3)))
    expected = {key: value.numpy() for key, value in
                tf_ama.exact_outcome(bids, *model.menu(tf.float64)).items()}
    np.testing.assert_array_equal(data["bids"], bids)
    for name in ("menu_index", "allocation", "payments", "values"):
        assert data[name].shape == expected[name].shape, name
        assert data[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(data[name], expected[name], err_msg=name)
    assert data["payments"].sum(axis=1).mean() == pytest.approx(report.revenue, rel=1e-13)
    assert os.listdir(tmp_path) == [path.name]  # no scratch or temporary file left
    if suffix == ".npz":
        assert data["info"]["seed"] == 3 and data["info"]["num_samples"] == 700
        assert data["info"]["setting"]["name"] == "additive_2x2_uniform"
        assert data["info"]["jit_compile"] is False
        with np.load(path) as archive:  # plain NumPy reads it
            assert archive["bids"].shape == (700, 2, 2)
    else:
        header = path.read_text().splitlines()[0].split(",")
        assert header[:4] == ["profile", "menu_index", "bid_0_0", "bid_0_1"]
        assert header[-2:] == ["value_0", "value_1"] and len(header) == 2 + 4 + 4 + 2 + 2


def test_family_indices_and_one_bidder(tmp_path):
    # A menu with the item-separable family: indices >= menu_size are written as they are.
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu="lottery+separable",
                                          menu_size=8, seed=0)
    path = tmp_path / "o.csv"
    evaluation.evaluate(model, num_samples=200, seed=1, baselines=False, jit_compile=False,
                        outcomes=path)
    data = outcome_files.read_outcomes(path)
    expected = tf_ama.exact_outcome(data["bids"], *model.menu(tf.float64))
    np.testing.assert_array_equal(data["menu_index"], expected["menu_index"])
    np.testing.assert_array_equal(data["payments"], expected["payments"])


@pytest.mark.parametrize("name, message", [
    ("outcomes.txt", "must be a file name ending in .npz"),
    ("outcomes.parquet", "Parquet would need pyarrow"),
    ("outcomes", "must be a file name ending in .npz"),
])
def test_bad_extension(tmp_path, name, message):
    model = model_with_boosts(menu_size=4)
    with pytest.raises(ValueError, match=message) as raised:
        evaluation.evaluate(model, num_samples=10, outcomes=tmp_path / name)
    assert str(raised.value).startswith("`outcomes` must be a file name ending in .npz")
    assert os.listdir(tmp_path) == []


def test_unwritable_path(tmp_path):
    model = model_with_boosts(menu_size=4)
    (tmp_path / "file").write_text("")
    (tmp_path / "file.npz").mkdir()
    with pytest.raises(ValueError, match="`outcomes` cannot be written: .* is a file, not a "
                                         "directory"):
        evaluation.evaluate(model, num_samples=10, outcomes=tmp_path / "file" / "o.npz")
    with pytest.raises(ValueError, match="`outcomes` must be a file name, not a directory"):
        evaluation.evaluate(model, num_samples=10, outcomes=tmp_path / "file.npz")
    with pytest.raises(ValueError, match="`outcomes` must be a file path"):
        evaluation.evaluate(model, num_samples=10, outcomes=3)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_an_interrupted_evaluation_leaves_nothing(tmp_path, monkeypatch, suffix):
    model = model_with_boosts(menu_size=4)
    path = tmp_path / f"o{suffix}"
    path.write_text("the previous file")
    scan = scanning.scan

    def failing_scan(*args, **kwargs):
        yield next(scan(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "scan", failing_scan)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(model, num_samples=100, micro_batch_size=8, outcomes=path)
    assert os.listdir(tmp_path) == [path.name] and path.read_text() == "the previous file"


def test_writer_checks_shapes_and_count(tmp_path):
    path = tmp_path / "o.npz"
    with pytest.raises(ValueError, match="1 profiles written of 2"):
        with outcome_files.outcome_writer(path, 2, 1, 1, {}) as writer:
            writer.write({"bids": np.zeros((1, 1, 1)), "menu_index": np.zeros(1, np.int64),
                          "allocation": np.zeros((1, 1, 1)), "payments": np.zeros((1, 1)),
                          "values": np.zeros((1, 1))})
    with pytest.raises(ValueError, match="'payments' has shape"):
        with outcome_files.outcome_writer(path, 2, 1, 1, {}) as writer:
            writer.write({"bids": np.zeros((1, 1, 1)), "menu_index": np.zeros(1, np.int64),
                          "allocation": np.zeros((1, 1, 1)), "payments": np.zeros((1, 2)),
                          "values": np.zeros((1, 1))})
    assert os.listdir(tmp_path) == []


def test_files_that_are_not_outcome_files_are_refused_naming_them(tmp_path):
    """Were a KeyError (an .npz without its arrays) and empty shapes (a foreign CSV)."""
    np.savez(tmp_path / "other.npz", bids=np.ones((2, 1, 1)))
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    for name, problem in [("other.npz", r"it lacks \['allocation', 'info', 'menu_index'"),
                          ("other.csv", "its header is not one")]:
        with pytest.raises(ValueError, match=rf"{name}: not an outcome file written by tf_ama "
                                             rf"\(tf-ama evaluate --outcomes\): {problem}"):
            outcome_files.read_outcomes(tmp_path / name)
