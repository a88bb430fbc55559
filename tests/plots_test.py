"""Tests of tf_ama.evaluation.plots: the menu figure and the training curves are real, decodable PNGs,
written atomically, and the menu figure draws the entries the menu table lists."""

import os

import keras
import matplotlib.image
import numpy as np
import pytest
from PIL import Image

import tf_ama
from tf_ama.evaluation import plots, usage


def decoded(path):
    """The PNG at `path` as an `[height, width, channels]` array (asserts it is one)."""
    assert os.path.isfile(path) and os.path.getsize(path) > 0
    image = matplotlib.image.imread(path, format="png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0.5  # not a blank canvas
    return image


def no_temporary_files(directory):
    return not [name for name in os.listdir(directory) if name.startswith(".tmp-")]


@pytest.fixture(scope="module")
def menu_entries():
    """`(setting, entries)` of an untrained lottery menu with random boosts (many entries used)."""
    model = tf_ama.AffineMaximizerAuction("unit_demand_2x4_spherical", menu_size=48, seed=1)
    boosts = np.random.default_rng(1).normal(size=model.menu_layer.boosts.shape) * 0.2
    model.menu_layer.boosts.assign(boosts.astype("float32"))
    return model.setting, usage.menu_usage(model, num_samples=2000, seed=1)


class TestPlotMenu:
    @pytest.mark.parametrize("max_entries", [24, 3])
    @pytest.mark.slow
    def test_png_and_table_show_the_same_entries(self, menu_entries, tmp_path, max_entries):
        setting, entries = menu_entries
        assert len(entries) > 3
        path = str(tmp_path / "menu.png")
        assert plots.plot_menu(entries, setting, path, max_entries=max_entries) == path
        decoded(path)
        drawn = [int(k) for k in Image.open(path).text[plots.MENU_INDICES_KEY].split(",")]
        table = usage.format_menu_table(entries, max_entries=max_entries)
        listed = [int(line.split()[1]) for line in table.splitlines()[1:]
                  if line.split()[0].isdigit()]
        assert drawn == listed == [entry.index for entry in entries[:max_entries]]
        assert no_temporary_files(tmp_path)

    @pytest.mark.slow
    def test_overwrites_atomically_and_creates_directories(self, menu_entries, tmp_path):
        setting, entries = menu_entries
        path = str(tmp_path / "new" / "menu.png")
        plots.plot_menu(entries, setting, path, max_entries=2)
        first = os.path.getsize(path)
        plots.plot_menu(entries, setting, path, max_entries=12)
        assert os.path.getsize(path) != first  # replaced by the larger figure
        decoded(path)
        assert no_temporary_files(tmp_path / "new")

    @pytest.mark.slow
    def test_deterministic_menu_of_every_shape(self, tmp_path):
        for name in ("additive_1x2_uniform", "additive_3x1_exponential"):
            model = tf_ama.AffineMaximizerAuction(name, menu="deterministic")
            entries = usage.menu_usage(model, num_samples=500, seed=0)
            decoded(plots.plot_menu(entries, model.setting, str(tmp_path / f"{name}.png")))

    def test_bad_input(self, menu_entries, tmp_path):
        setting, entries = menu_entries
        with pytest.raises(ValueError, match="max_entries"):
            plots.plot_menu(entries, setting, str(tmp_path / "x.png"), max_entries=0)
        with pytest.raises(ValueError, match="entries"):
            plots.plot_menu([], setting, str(tmp_path / "x.png"))
        assert not os.path.exists(tmp_path / "x.png")


@pytest.mark.parametrize("setting", ["additive_1x2_uniform", "additive_5x10_uniform"])
def test_plot_separable_boosts(setting, tmp_path):
    model = tf_ama.AffineMaximizerAuction(setting, menu="separable")
    path = plots.plot_separable_boosts(model, str(tmp_path / "family.png"))
    decoded(path)
    assert no_temporary_files(tmp_path)
    with pytest.raises(ValueError, match="'lottery'\\) has no item-separable family to draw"):
        plots.plot_separable_boosts(tf_ama.AffineMaximizerAuction(setting, menu_size=4),
                                    str(tmp_path / "none.png"))


def test_plot_the_bundle_size_family_adds_its_boosts_per_size(tmp_path):
    model = tf_ama.AffineMaximizerAuction("additive_2x3_uniform", menu="bundle-sizes")
    two = decoded(plots.plot_separable_boosts(
        tf_ama.AffineMaximizerAuction("additive_2x3_uniform", menu="separable"),
        str(tmp_path / "separable.png")))
    three = decoded(plots.plot_separable_boosts(model, str(tmp_path / "sizes.png")))
    assert three.shape[1] > 1.3 * two.shape[1]  # a third panel: g[owner, k]
    assert no_temporary_files(tmp_path)


class TestTrainingCurves:
    @pytest.mark.slow
    def test_from_a_real_fit_history(self, tmp_path):
        setting = tf_ama.get_setting("additive_1x2_uniform")
        model = tf_ama.AffineMaximizerAuction(setting, menu_size=16, seed=0)
        model.compile(keras.optimizers.Adam(0.01))
        history = model.fit(tf_ama.fresh_valuations(128), epochs=3, steps_per_epoch=2,
                            verbose=0, validation_data=tf_ama.valuation_dataset(setting, 256, 1))
        assert {"loss", "val_revenue"} <= set(history.history)
        path = plots.plot_training_curves(history, str(tmp_path / "curves.png"),
                                          baselines={"vcg": 0.5, "optimum": 0.5491},
                                          steps_per_epoch=2)
        decoded(path)
        assert no_temporary_files(tmp_path)

    def test_from_csv_logger_file(self, tmp_path):
        csv_path = tmp_path / "history.csv"
        csv_path.write_text("epoch,loss,val_revenue\n0,-0.61,0.63\n1,-0.70,0.71\n2,-0.75,\n")
        baselines = {"vcg": {"name": "vcg", "revenue": 0.6667, "stderr": 0.001},
                     "grand_bundle": 0.839}
        decoded(plots.plot_training_curves(str(csv_path), str(tmp_path / "c.png"),
                                           baselines=baselines))

    def test_without_validation(self, tmp_path):
        decoded(plots.plot_training_curves({"loss": [-0.5, -0.6, -0.65]},
                                           str(tmp_path / "c.png")))

    def test_bad_input(self, tmp_path):
        with pytest.raises(ValueError, match="loss"):
            plots.plot_training_curves({"val_revenue": [0.1]}, str(tmp_path / "c.png"))
        with pytest.raises(TypeError, match="history"):
            plots.plot_training_curves(42, str(tmp_path / "c.png"))
