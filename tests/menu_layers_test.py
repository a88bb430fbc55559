"""Menu kinds as Keras layers: JSON round trips of every layer's and the model's config, the
registry (a new kind is one class), the errors of `make_menu`, the 0.1 attribute names."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.menus import layers as menu_layers
from tf_ama.menus.layers import (MENU_KINDS, BidderWeights, DeterministicMenu, FixedMenu,
                                LotteryMenu, MenuLayer, make_menu, menu_kind)

LAYERS = {
    "lottery_additive": lambda: LotteryMenu(2, 3, "additive", menu_size=7, seed=5,
                                            init_scale=2.0, boost_init_scale=0.5),
    "lottery_unit_demand": lambda: LotteryMenu(2, 4, "unit_demand", menu_size=5, seed=1),
    "deterministic": lambda: DeterministicMenu(2, 2, "additive", seed=3, boost_init_scale=0.25),
    "fixed": lambda: FixedMenu(1, 2, "additive", menu_size=3),
}


def _json(config):
    return json.loads(json.dumps(config))


def _menu_tensors(layer):
    return [t.numpy() for t in layer.allocations_and_boosts(tf.float64)]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_menu_layer_config_round_trips_through_json(name):
    layer = LAYERS[name]()
    config = layer.get_config()
    rebuilt = type(layer).from_config(_json(config))
    assert rebuilt.get_config() == config
    for mine, theirs in zip(_menu_tensors(layer), _menu_tensors(rebuilt), strict=True):
        np.testing.assert_array_equal(mine, theirs)  # seeded: the same initial menu
    # ... and through Keras' serialization, which names the registered class.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"tf_ama>{type(layer).__name__}"
    assert type(keras.saving.deserialize_keras_object(_json(serialized))) is type(layer)


@pytest.mark.parametrize("learned,given", [(False, False), (True, False), (False, True)])
def test_bidder_weights_config_round_trips_through_json(learned, given):
    layer = BidderWeights(3, learned=learned, given=given)
    rebuilt = BidderWeights.from_config(_json(layer.get_config()))
    assert rebuilt.get_config() == layer.get_config()
    assert len(rebuilt.trainable_variables) == int(learned)
    np.testing.assert_array_equal(rebuilt.values(tf.float64).numpy(), np.ones(3))


@pytest.mark.parametrize("menu,options", [
    ("lottery", {"menu_size": 9, "init_scale": 2.0, "boost_init_scale": 1.0}),
    ("deterministic", {"boost_init_scale": 0.5}),
    ("fixed", {"menu_size": 4}),
])
def test_model_config_round_trips_through_json(menu, options):
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu=menu, seed=3,
                                          learn_bidder_weights=True, temperature=30.0, **options)
    config = _json(model.get_config())
    rebuilt = tf_ama.AffineMaximizerAuction.from_config(config)
    assert _json(rebuilt.get_config()) == config
    assert rebuilt.own_config() == model.own_config()
    assert "setting" not in model.own_config() and "name" not in model.own_config()
    for mine, theirs in zip(model.exact_menu(), rebuilt.exact_menu(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_flat_options_of_0_1_build_the_same_layer_as_the_layer_itself():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    flat = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=6, seed=2,
                                         boost_init_scale=1.0)
    layer = LotteryMenu.for_setting(setting, menu_size=6, seed=2, boost_init_scale=1.0)
    given = tf_ama.AffineMaximizerAuction(setting, menu=layer, seed=2)
    assert flat.get_config()["menu"] == given.get_config()["menu"]
    for mine, theirs in zip(flat.exact_menu(), given.exact_menu(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # 0.1 passed menu_size and init_scale to every kind: a deterministic menu ignores them.
    deterministic = tf_ama.AffineMaximizerAuction(setting, menu="deterministic", menu_size=64,
                                                  init_scale=3.0)
    assert deterministic.menu_size == 9


def test_variables_keep_the_order_of_0_1():
    """The optimizer's state and 0.1 files depend on it: allocations, boosts, weights."""
    model = tf_ama.AffineMaximizerAuction("unit_demand_2x4_spherical", menu_size=4,
                                          learn_bidder_weights=True)
    assert [v.name for v in model.trainable_variables] == [
        "item_logits", "bidder_logits", "boosts", "log_bidder_weights"]


@pytest.mark.parametrize("call,match", [
    (lambda s: make_menu("lotery", s), "`menu` must be one of"),
    (lambda s: make_menu(3, s), "`menu` must be a menu kind"),
    (lambda s: make_menu(LotteryMenu(2, 2, menu_size=4), s, menu_size=8), "options of the menu"),
    (lambda s: make_menu(LotteryMenu(3, 2, menu_size=4), s), "for 3 additive bidders"),
    (lambda s: make_menu("lottery", s, menu_sise=8), "menu_sise"),
    (lambda s: LotteryMenu(2, 2, menu_size=1), "`menu_size` must be an int >= 2"),
    (lambda s: LotteryMenu(2, 2, init_scale=True), "`init_scale`"),
    (lambda s: LotteryMenu(2, 2, boost_init_scale=-1.0), "`boost_init_scale`"),
    (lambda s: LotteryMenu(2, 2, demand="both"), "`demand`"),
    (lambda s: FixedMenu(2, 2, menu_size=0), "`menu_size`"),
])
def test_bad_menus_are_refused_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(tf_ama.get_setting("additive_2x2_uniform"))


def test_arguments_after_menu_are_keyword_only():
    """0.1 took `menu_size` third: a positional call fails instead of meaning another thing."""
    with pytest.raises(TypeError, match="positional"):
        tf_ama.AffineMaximizerAuction("additive_2x2_uniform", "lottery", 64)


def test_a_menu_built_outside_the_strategy_scope_is_refused_by_name():
    devices = tf.config.list_logical_devices("CPU")[:2]
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in devices], cross_device_ops=tf.distribute.ReductionToOneDevice())
    outside = LotteryMenu(2, 2, menu_size=4)
    with strategy.scope():
        with pytest.raises(ValueError, match="`menu` was built outside the scope"):
            tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu=outside)
        inside = LotteryMenu(2, 2, menu_size=4)
        assert tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu=inside).menu_size == 4


def test_a_kind_name_is_registered_once():
    with pytest.raises(ValueError, match="'lottery' is already LotteryMenu"):
        @menu_kind("lottery")
        class AnotherLottery(MenuLayer):
            pass
    assert MENU_KINDS["lottery"] is LotteryMenu and tf_ama.MENU_KINDS is MENU_KINDS


def test_0_1_attribute_names_still_work_with_a_deprecation_warning():
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=4,
                                          boost_init_scale=0.5)
    with pytest.warns(DeprecationWarning, match="model.menu_layer.boosts"):
        assert model.learned_boosts is model.menu_layer.boosts
    with pytest.warns(DeprecationWarning):
        assert model.menu_type == "lottery" and model.boost_init_scale == 0.5
    with pytest.warns(DeprecationWarning):
        assert model.log_bidder_weights is model.bidder_weights_layer.log_weights
    with pytest.raises(AttributeError, match="no_such_thing"):
        model.no_such_thing  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a probe of a name this kind lacks stays silent
        assert not hasattr(model, "fixed_bidder_weights")


@pytest.fixture
def single_lottery_kind():
    """A new menu kind, as a user would add one: ONE class, registered by the decorator."""

    @menu_kind("single_lottery")
    class SingleLotteryMenu(MenuLayer):
        """The empty entry and one learned lottery with its learned boost."""

        SEED_OFFSETS = {"logits": 1}

        def __init__(self, num_bidders, num_items, demand="additive", seed=0, **kwargs):
            super().__init__(num_bidders, num_items, demand, seed, **kwargs)
            self.menu_size = 2
            self.logits = self.add_weight(shape=(1, num_bidders + 1, num_items), name="logits",
                                          initializer=self.initializer("logits", 1.0))
            self.boosts = self.add_weight(shape=(1,), name="boosts", initializer="zeros")
            self.built = True

        def allocations_and_boosts(self, dtype):
            allocations = tf_ama.core.allocations.additive_lottery(tf.cast(self.logits, dtype))
            return allocations, self._boosts(self.boosts, dtype)

    yield SingleLotteryMenu
    del MENU_KINDS["single_lottery"]


def test_a_new_menu_kind_trains_saves_and_loads(single_lottery_kind, tmp_path):
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu="single_lottery",
                                          seed=4, jit_objective=False)
    assert isinstance(model.menu_layer, single_lottery_kind) and model.menu_size == 2
    before = [array.copy() for array in model.exact_menu()[:3]]
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    model.fit(tf_ama.fresh_valuations(64), epochs=1, steps_per_epoch=2, verbose=0)
    assert not np.array_equal(model.exact_menu()[1], before[1])  # it learned its boost
    path = str(tmp_path / "single.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    bids = tf.constant(np.random.default_rng(0).uniform(size=(16, 1, 2)))
    for key, value in model(bids).items():
        np.testing.assert_array_equal(loaded(bids)[key].numpy(), value.numpy())


def test_registry_lists_the_built_in_kinds():
    assert {"lottery", "deterministic", "separable", "lottery+separable", "fixed"} <= set(MENU_KINDS)
    assert all(MENU_KINDS[kind].kind == kind for kind in MENU_KINDS)
    assert menu_layers.MENU_KINDS is tf_ama.menus.layers.MENU_KINDS


def test_a_deterministic_menu_starts_at_separate_myerson_where_bidders_are_additive():
    """Boosts `-sum of the allocated items' reserves`: the same outcome as the
    item-separable family at separate Myerson; unit demand (and `reserves=None`) starts at
    VCG (all boosts 0)."""
    bids = np.asarray(tf_ama.get_setting("additive_2x2_uniform").sample(2000, 4), np.float64)
    deterministic = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu="deterministic")
    separable = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu="separable")
    assert deterministic.menu_layer.reserves == separable.menu_layer.reserves
    for key in ("allocation", "payments"):
        np.testing.assert_allclose(deterministic(bids)[key].numpy(),
                                   separable(bids)[key].numpy(), rtol=0, atol=1e-6)
    vcg = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu="deterministic",
                                        reserves=None)
    unit = tf_ama.AffineMaximizerAuction("unit_demand_2x2_uniform", menu="deterministic")
    for model in (vcg, unit):
        assert not np.any(model.exact_menu().boosts)
    with pytest.raises(ValueError, match="one value per item"):
        DeterministicMenu(2, 2, "additive", reserves=[0.5])
