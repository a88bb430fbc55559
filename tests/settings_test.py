"""Tests of tf_ama.data.settings: the named settings of docs/design.md §4, serialization, validation
and sampling."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.data import settings

# docs/design.md §4: name -> (num_bidders, num_items, demand, distribution).
DESIGN_SETTINGS = {
    "additive_1x2_uniform": (1, 2, "additive", "uniform"),
    "additive_1x2_uniform_4_16_4_7": (1, 2, "additive", "uniform"),
    "unit_demand_1x2_uniform": (1, 2, "unit_demand", "uniform"),
    "additive_2x2_uniform": (2, 2, "additive", "uniform"),
    "unit_demand_2x2_uniform": (2, 2, "unit_demand", "uniform"),
    "additive_2x3_uniform": (2, 3, "additive", "uniform"),
    "additive_2x5_uniform": (2, 5, "additive", "uniform"),
    "additive_5x5_uniform": (5, 5, "additive", "uniform"),
    "additive_3x10_uniform": (3, 10, "additive", "uniform"),
    "additive_5x10_uniform": (5, 10, "additive", "uniform"),
    "additive_3x1_exponential": (3, 1, "additive", "exponential"),
    "unit_demand_2x4_spherical": (2, 4, "unit_demand", "spherical"),
}


def test_every_design_setting_is_listed():
    assert set(DESIGN_SETTINGS) <= set(tf_ama.list_settings())
    assert tf_ama.list_settings() == settings.list_settings()


@pytest.mark.parametrize("name", sorted(DESIGN_SETTINGS))
def test_named_setting(name):
    setting = tf_ama.get_setting(name)
    num_bidders, num_items, demand, distribution = DESIGN_SETTINGS[name]
    assert isinstance(setting, tf_ama.Setting)
    assert setting.name == name
    assert (setting.num_bidders, setting.num_items) == (num_bidders, num_items)
    assert setting.demand == demand and setting.distribution == distribution
    assert setting.shape_name == f"{num_bidders}x{num_items}"
    assert tf_ama.get_setting(setting) is setting  # a Setting passes through
    samples = setting.sample(16, seed=(3, 4))
    assert samples.shape == (16, num_bidders, num_items)
    assert samples.dtype == tf.float32
    assert setting.sample(4, seed=1, dtype=tf.float64).dtype == tf.float64
    assert np.all(samples.numpy() >= 0)


def test_every_built_in_setting_passes_the_checks_of_a_new_one():
    """Built-ins skip building their distribution at import (tf_ama.data.settings._BUILT_IN);
    made again as a user's setting, each one is checked in full."""
    for name in tf_ama.list_settings():
        setting = tf_ama.get_setting(name)
        assert tf_ama.Setting.from_dict(setting.to_dict()) == setting


def test_named_setting_parameters():
    assert tf_ama.get_setting("additive_3x1_exponential").distribution_params == {"mean": 3.0}
    assert tf_ama.get_setting("unit_demand_2x4_spherical").distribution_params == {"base": 2.0}
    assert tf_ama.get_setting("additive_1x2_uniform_4_16_4_7").distribution_params == {
        "low": 4.0, "high": [16.0, 7.0]}


@pytest.mark.parametrize("name", sorted(DESIGN_SETTINGS))
def test_round_trip_through_dict_and_json(name):
    setting = tf_ama.get_setting(name)
    config = setting.to_dict()
    assert set(config) == {field.name for field in dataclasses.fields(tf_ama.Setting)}
    assert tf_ama.Setting.from_dict(config) == setting
    through_json = tf_ama.Setting.from_dict(json.loads(json.dumps(config)))
    assert through_json == setting
    assert hash(through_json) == hash(setting)  # frozen: usable as a dict key


def test_to_dict_is_a_copy():
    setting = tf_ama.get_setting("additive_3x1_exponential")
    config = setting.to_dict()
    config["distribution_params"]["mean"] = 100.0
    assert setting.distribution_params == {"mean": 3.0}


def test_setting_is_frozen():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setting.num_bidders = 3


def test_custom_setting_with_per_bidder_bounds():
    setting = tf_ama.Setting("additive_2x2_asym", num_bidders=2, num_items=2, demand="additive",
                             distribution="uniform",
                             distribution_params={"low": 0.0, "high": [[1.0, 2.0], [3.0, 4.0]]},
                             symmetric=False)
    samples = setting.sample(2000, seed=(0, 9)).numpy()
    maxima = samples.max(axis=0)
    assert np.all(maxima <= [[1.0, 2.0], [3.0, 4.0]])
    assert np.all(maxima >= 0.97 * np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert tf_ama.Setting.from_dict(json.loads(json.dumps(setting.to_dict()))) == setting


def test_same_seed_same_samples_different_seed_different_samples():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    first = setting.sample(64, seed=(1, 2)).numpy()
    np.testing.assert_array_equal(first, setting.sample(64, seed=(1, 2)).numpy())
    np.testing.assert_array_equal(first, setting.sample(64, seed=tf.constant([1, 2])).numpy())
    assert not np.array_equal(first, setting.sample(64, seed=(1, 3)).numpy())
    assert not np.array_equal(first, setting.sample(64, seed=(2, 2)).numpy())
    # An int seed is stateless too.
    np.testing.assert_array_equal(setting.sample(8, seed=7).numpy(),
                                  setting.sample(8, seed=7).numpy())


@pytest.mark.slow
def test_sampling_is_stateless_in_a_graph():
    setting = tf_ama.get_setting("unit_demand_2x4_spherical")

    @tf.function
    def sample(seed):
        return setting.sample(32, seed=seed)

    seed = tf.constant([5, 6], tf.int32)
    np.testing.assert_array_equal(sample(seed).numpy(), sample(seed).numpy())
    np.testing.assert_array_equal(sample(seed).numpy(), setting.sample(32, seed=(5, 6)).numpy())
    # Keras' SeedGenerator state is int64: accepted and cast.
    np.testing.assert_array_equal(sample(tf.constant([5, 6], tf.int64)).numpy(),
                                  sample(seed).numpy())


def valid(**change):
    fields = dict(name="x", num_bidders=2, num_items=2, demand="additive",
                  distribution="uniform", distribution_params={}, symmetric=True)
    fields.update(change)
    return fields


@pytest.mark.parametrize("fields,match", [
    (valid(name=""), r"`name` must be a non-empty string"),
    (valid(name=None), r"`name` must be a non-empty string"),
    (valid(num_bidders=0), r"`num_bidders` must be an int >= 1; got 0"),
    (valid(num_bidders="2"), r"`num_bidders` must be an int >= 1; got '2'"),
    (valid(num_bidders=True), r"`num_bidders` must be an int >= 1; got True"),
    (valid(num_items=2.0), r"`num_items` must be an int >= 1; got 2.0"),
    (valid(num_items=-1), r"`num_items` must be an int >= 1"),
    (valid(demand="multi_unit"), r"`demand` must be one of \('additive', 'unit_demand'\)"),
    (valid(distribution_params=[1.0]), r"`distribution_params` must be a dict; got list"),
    (valid(distribution_params={"high": np.ones(2)}), r"must be JSON-serializable"),
    (valid(distribution="beta_unknown"), r"Unknown distribution 'beta_unknown'"),
    (valid(distribution_params={"low": 2.0, "high": 1.0}), r"`low` must be < `high`"),
    (valid(distribution_params={"scale": 2.0}), r"Bad parameters \{'scale': 2.0\} for distribution "
                                                r"'uniform'.*scale"),
    (valid(distribution="exponential", distribution_params={"mean": 0.0}),
     r"`mean` must be finite and > 0"),
    (valid(distribution="spherical"), r"`directions` must have shape \[num_points, num_items=2\]"),
])
def test_bad_settings_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        tf_ama.Setting(**fields)


def test_from_dict_refuses_unknown_fields():
    config = tf_ama.get_setting("additive_2x2_uniform").to_dict()
    config["num_agents"] = 2
    with pytest.raises(ValueError, match=r"Unknown setting fields \['num_agents'\]"):
        tf_ama.Setting.from_dict(config)
    config = tf_ama.get_setting("additive_2x2_uniform").to_dict()
    config["demand"] = "bogus"
    with pytest.raises(ValueError, match=r"`demand` must be one of"):
        tf_ama.Setting.from_dict(config)


@pytest.mark.parametrize("name", ["additive_2x2", "", "Additive_2x2_uniform"])
def test_unknown_setting_name(name):
    with pytest.raises(ValueError, match=rf"Unknown setting {name!r}. Known settings: .*"
                                         r"additive_2x2_uniform"):
        tf_ama.get_setting(name)


def test_bad_seed_is_refused():
    setting = tf_ama.get_setting("additive_2x2_uniform")
    with pytest.raises(ValueError, match=r"`seed` must be an int or a pair of ints"):
        setting.sample(4, seed=(1, 2, 3))


# ------------------------------------------------------------------ settings from JSON files
@pytest.mark.parametrize("name", list(DESIGN_SETTINGS))
def test_a_built_in_printed_as_json_loads_back_equal(tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(tf_ama.setting_json(name))
    assert tf_ama.load_setting(str(path)) == tf_ama.get_setting(name)
    assert tf_ama.get_setting(str(path)) == tf_ama.get_setting(name)


def test_a_tfp_class_by_name_with_per_item_parameters(tmp_path):
    path = tmp_path / "gamma.json"
    path.write_text(json.dumps(valid(name="gamma_2x2", distribution="Gamma", distribution_params={
        "concentration": [2.0, 5.0], "rate": 1.0})))
    setting = tf_ama.get_setting(str(path))
    values = setting.sample(20_000, seed=(0, 1)).numpy()
    assert values.shape == (20_000, 2, 2) and values.min() >= 0
    np.testing.assert_allclose(values.mean(axis=0), [[2.0, 5.0], [2.0, 5.0]], rtol=0.03)


@pytest.mark.parametrize("fields,match", [
    (valid(distribution="Normal", distribution_params={"loc": 0.0, "scale": 1.0}),
     r"`distribution`: tfd.Normal.* can draw a value that is negative"),
    # Its draws are rarely negative, but its support reaches below 0.
    (valid(distribution="Normal", distribution_params={"loc": 3.5, "scale": 1.0}),
     r"`distribution`: tfd.Normal.* can draw a value that is negative"),
    (valid(distribution="TruncatedNormal", distribution_params={
        "loc": 1.0, "scale": 1.0, "low": -0.5, "high": 5.0}), r"can draw a value that is negative"),
    (valid(distribution="Bernoulli", distribution_params={"probs": 0.5}),
     r"tfd.Bernoulli draws int32 values"),
    (valid(distribution="Gamma", distribution_params={"concentration": -1.0, "rate": 1.0}),
     r"`distribution_params` of tfd.Gamma"),
    (valid(distribution="Gamma", distribution_params={"concentration": [1.0, 2.0, 3.0],
                                                      "rate": 1.0}),
     r"`distribution_params.concentration` must be a scalar or broadcast to"),
    (valid(distribution="Gamma", distribution_params={"shape": 1.0}),
     r"`distribution_params` of tfd.Gamma"),
    (valid(distribution="Dirichlet", distribution_params={"concentration": 1.0}),
     r"not one scalar per bidder and item|`distribution_params` of tfd.Dirichlet"),
    (valid(distribution="Normalish"), r"Unknown distribution 'Normalish'"),
    (valid(symmetric="yes"), r"`symmetric` must be"),
    (valid(distribution=3), r"`distribution` must be a non-empty string"),
])
def test_bad_setting_files_name_the_file_and_the_field(tmp_path, fields, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=rf"setting file .*bad.json: (.|\n)*{match}"):
        tf_ama.get_setting(str(path))


def test_setting_files_that_are_not_settings_are_refused(tmp_path):
    cases = {"broken.json": ("{", "not valid JSON"),
             "list.json": ("[1]", "must hold a JSON object"),
             "short.json": ('{"name": "x"}', r"Missing setting fields \['num_bidders', 'num_items'\]"),
             "clash.json": (json.dumps({**tf_ama.get_setting("additive_2x2_uniform").to_dict(),
                                        "num_items": 3}),
                            "is a built-in setting with other fields; give yours another name")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=match):
            tf_ama.get_setting(str(tmp_path / name))
    with pytest.raises(ValueError, match="cannot be read"):
        tf_ama.get_setting(str(tmp_path / "missing.json"))


def test_setting_files_of_bad_bytes_are_refused_naming_the_file(tmp_path):
    """Each was a traceback, or (the key given twice) silently the last value."""
    cases = {"latin.json": ('{"name": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
             "digits.json": (b'{"name": "x", "num_bidders": ' + b"9" * 5000 + b"}",
                             "a number of 5000 digits"),
             "twice.json": (b'{"name": "x", "num_bidders": 2, "num_bidders": 3, "num_items": 2}',
                            r"the key\(s\) \['num_bidders'\] appear twice"),
             "deep.json": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply to parse")}
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"^setting file .*{name}: {match}") as error:
            tf_ama.get_setting(str(tmp_path / name))
        assert "\n" not in str(error.value)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ValueError, match=r"setting file .*folder.json: is a directory, not a"):
        tf_ama.get_setting(str(tmp_path / "folder.json"))


def test_setting_files_that_are_not_regular_files_or_too_large_are_refused(tmp_path):
    """A pipe blocked and /dev/zero was read until memory ran out."""
    os.mkfifo(tmp_path / "pipe.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    for name in ("pipe.json", "zero.json"):
        with pytest.raises(ValueError, match=rf"setting file .*{name}: not a regular file"):
            tf_ama.get_setting(str(tmp_path / name))
    (tmp_path / "UPPER.JSON").write_text(json.dumps(valid(name="upper")))
    assert tf_ama.get_setting(str(tmp_path / "UPPER.JSON")).name == "upper"
    with pytest.raises(TypeError, match=r"`setting` must be a tf_ama.Setting, a built-in name "
                                        r"or a .json file; got list"):
        tf_ama.get_setting(["additive_2x2_uniform"])


@pytest.mark.parametrize("params, match", [
    ({"low": False, "high": True}, r"`low` must hold real numbers only; got False \(bool\)"),
    ({"high": "2"}, r"`high` must hold real numbers only; got '2' \(str\)"),
    ({"high": 9007199254740993}, r"`high`: the integer 9007199254740993 is not exactly a "
                                 r"float64"),
    ({"high": 10**400}, r"`high`: the integer 1000+ is not exactly a float64"),
    ({"high": 1e39}, r"uniform with \{'high': 1e\+39\} draws inf, but values must be finite "
                     r"in float32"),
    ({"low": 1.0, "high": 1.00000001}, r"`low` must be < `high` everywhere, also in float32"),
])
def test_distribution_parameters_are_real_numbers_that_float32_holds(tmp_path, params, match):
    """Each was coerced (True as 1, "2" as 2, 2**53 + 1 rounded), an OverflowError (10**400),
    a distribution drawing inf (1e39), or one constant value (bounds equal in float32)."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps(valid(distribution_params=params)))
    with pytest.raises(ValueError, match=rf"^setting file .*s.json: .*{match}") as error:
        tf_ama.get_setting(str(path))
    assert "\n" not in str(error.value)


def test_a_discrete_tfp_class_on_the_nonnegative_integers_is_a_prior(tmp_path):
    """Poisson has no event-space bijector (it was an AttributeError); its draws decide."""
    path = tmp_path / "poisson.json"
    path.write_text(json.dumps(valid(name="poisson_2x2", distribution="Poisson",
                                     distribution_params={"rate": 3.0})))
    values = tf_ama.get_setting(str(path)).sample(20_000, seed=(0, 1)).numpy()
    assert values.min() >= 0 and np.all(values == np.round(values))
    np.testing.assert_allclose(values.mean(), 3.0, rtol=0.02)
    path.write_text(json.dumps(valid(name="skellam_2x2", distribution="Skellam",
                                     distribution_params={"rate1": 3.0, "rate2": 3.0})))
    with pytest.raises(ValueError, match="can draw a value that is negative"):
        tf_ama.get_setting(str(path))
