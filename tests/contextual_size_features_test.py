"""The size features of a contextual menu (issue 32): every token of the network also sees
`log m` and/or `log n`, by default those of the dimensions in which the trained sizes
differ, so that one network can serve each size its own menu."""

import math

import keras
import numpy as np
import pytest

import tf_ama
from tf_ama.models.contextual import ContextualAuction

SMALL = dict(menu_size=12, hidden=8, heads=2, blocks=1, jit_objective=False)
SIZES = ["2x3", "3x4"]
BOTH = ("bidders", "items")


def model(sizes=SIZES, **kwargs):
    return ContextualAuction("contextual_a", sizes=sizes, **{**SMALL, **kwargs})


def test_by_default_the_dimensions_in_which_the_trained_sizes_differ():
    assert model().menu_layer.size_features == BOTH
    assert model(["2x3"]).menu_layer.size_features == ()  # nothing varies: nothing to tell
    assert model(["2x3", "2x5"]).menu_layer.size_features == ("items",)
    assert model(["2x2", "5x2", "9x2"]).menu_layer.size_features == ("bidders",)
    assert model(size_features=[]).menu_layer.size_features == ()
    assert model(["2x3"], size_features=["items", "bidders"]).menu_layer.size_features == BOTH
    for bad in (True, "sizes", ["items", "items"], ["bidders", 1]):
        with pytest.raises(ValueError, match="`size_features` must be a list of distinct"):
            model(size_features=bad)


@pytest.mark.parametrize("size, dimensions", [("3x4", BOTH), ("1x1", BOTH), ("5x2", ("items",))])
def test_the_size_is_a_bias_of_the_first_layer_its_logs_times_its_last_rows(size, dimensions):
    """Oracle: the network with the size features equals the one without them whose first
    embedding layer's bias is shifted by `log m * K[f] + log n * K[f + 1]` (K its kernel with
    the features, f the contexts' features; `log n` alone: `K[f]`)."""
    with_sizes, without = model(size_features=dimensions), model(size_features=[])
    _, x, y = with_sizes.setting.sample(6, 2, size)
    with_sizes.menu(x, y), without.menu(x, y)  # builds both
    first = with_sizes.menu_layer.embed.layers[0].kernel.numpy()
    features = with_sizes.setting.bidder_features + with_sizes.setting.item_features
    assert first.shape == (features + len(dimensions), 8)
    without.set_weights([w[:features] if w.shape != v.shape else w
                         for w, v in zip(with_sizes.get_weights(), without.get_weights())])
    m, n = map(int, size.split("x"))
    logs = [math.log({"bidders": m, "items": n}[d]) for d in dimensions]
    bias = without.menu_layer.embed.layers[0].bias
    bias.assign(bias.numpy() + np.dot(logs, first[features:]))
    got, want = with_sizes.menu(x, y), without.menu(x, y)
    for name in ("allocations", "boosts", "bidder_weights", "separable_boosts"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-5,
                                   atol=1e-5, err_msg=name)


def test_the_option_is_saved_and_a_menu_saved_before_it_loads_without_it(tmp_path):
    trained = model()
    _, x, y = trained.setting.sample(4, 1, "3x4")
    path = str(tmp_path / "model.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.menu_layer.size_features == BOTH
    np.testing.assert_array_equal(loaded.menu(x, y).boosts, trained.menu(x, y).boosts)
    config = trained.menu_layer.get_config()
    assert config.pop("size_features") == list(BOTH)
    assert tf_ama.ContextualMenu.from_config(config).size_features == ()


def test_the_command_line_chooses_them(capsys):
    from tf_ama.cli.app import build_parser, main
    from tf_ama.cli.commands import contextual_recipe

    for flags, want in (((), ("items",)), (("--size-features", "none"), ()),
                        (("--size-features", "items,bidders"), BOTH)):
        model_kwargs, _, _ = contextual_recipe(build_parser().parse_args([
            "train", "contextual_a", "--sizes", "2x2,2x3", *flags, "--out", "unused"]))
        built = ContextualAuction("contextual_a", **{**model_kwargs, **SMALL})
        assert built.menu_layer.size_features == want
    with pytest.raises(SystemExit):
        main(["train", "contextual_a", "--size-features", "sizes", "--out", "unused"])
    assert ("--size-features: must be bidders,items, bidders, items or none; got 'sizes'"
            in capsys.readouterr().err)
