"""Tests of tf_ama.serving.export: the SavedModel contract of docs/design.md §6.

The exported `serving_default` must equal `tf_ama.exact_outcome` on the in-memory model bit
for bit. Two slow subprocesses (`saved_model_cli`, and an export killed with SIGKILL) start
in a module fixture and are checked by the last tests, so that they overlap the others.
"""

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.serving import export, versions
from tf_ama.serving.export import ExportError, export_saved_model, load_menu_model, read_export_config
from tf_ama.core.mechanism import exact_outcome
from tf_ama.utils import files

sys.path.insert(0, os.path.dirname(__file__))
from oracle import numpy_ama  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = ("allocation", "payments", "menu_index")


def _tie_model():
    """A fixed AMA with duplicate entries (1 == 2, and 3 == 4 with equal boosts)."""
    allocations = np.array([
        [[0, 0], [0, 0]],
        [[1, 0], [0, 1]],
        [[1, 0], [0, 1]],
        [[0.5, 0.5], [0.5, 0.5]],
        [[0.5, 0.5], [0.5, 0.5]],
        [[0, 1], [1, 0]],
    ], np.float64)
    boosts = np.array([0.0, 0.1, 0.1, 0.3, 0.3, 0.1])
    return tf_ama.AffineMaximizerAuction.from_menu(
        "additive_2x2_uniform", allocations, boosts, np.ones(2))


def _trained_model():
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=8, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(tf_ama.fresh_valuations(batch_size=128), epochs=1, steps_per_epoch=3, verbose=0)
    return model


def _joined_model():
    """A lottery menu joined with the item-separable family, both parts winning often."""
    model = tf_ama.AffineMaximizerAuction("additive_2x5_uniform", menu="lottery+separable",
                                          menu_size=12, seed=2, init_scale=3.0,
                                          reserves=[0.3, 0.5, 0.4, 0.5, 0.6])
    model.menu_layer.boosts.assign(np.linspace(0.5, 1.5, 11))
    model.menu_layer.family_boosts.assign([[0.1, 0.0, -0.1, 0.0, 0.0], [0.0, 0.2, 0.0, 0.0, 0.1],
                                           [0.3, 0.5, 0.4, 0.5, 0.6]])
    return model


def _models():
    weighted = tf_ama.AffineMaximizerAuction(
        "additive_2x2_uniform", menu_size=16, seed=0, learn_bidder_weights=True, init_scale=2.0)
    weighted.bidder_weights_layer.log_weights.assign([0.3, -0.2])  # weights that exp(log(w)) may not return
    weighted.menu_layer.boosts.assign(np.linspace(-0.2, 0.3, 15))
    return {
        "additive_lottery": weighted,
        "unit_demand_lottery": tf_ama.AffineMaximizerAuction(
            "unit_demand_2x4_spherical", menu_size=16, seed=1, init_scale=2.0),
        "deterministic": tf_ama.AffineMaximizerAuction(
            "additive_2x2_uniform", menu="deterministic"),
        "ties": _tie_model(),
        "trained": _trained_model(),
        "joined": _joined_model(),
    }


_KILLED_EXPORT = textwrap.dedent("""
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tf_ama
    from tf_ama.serving import export

    write_assets = export._write_assets
    def write_then_hang(*args, **kwargs):
        write_assets(*args, **kwargs)        # the SavedModel is complete, not yet renamed
        print("WRITTEN", flush=True)
        time.sleep(600)
    export._write_assets = write_then_hang
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)
    export.export_saved_model(model, sys.argv[1])
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, version dir, loaded SavedModel); starts the background subprocesses."""
    root = tmp_path_factory.mktemp("export")
    killed_dir = root / "killed"
    killed = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(killed_dir)],
                              stdout=subprocess.PIPE, text=True)
    result = {}
    for name, model in _models().items():
        # Several blocks per batch for one model (the others fit their batches in one block).
        micro_batch_size = 32 if name == "unit_demand_lottery" else None
        path = export_saved_model(model, root / name, training_config={"steps": 3},
                                  micro_batch_size=micro_batch_size)
        result[name] = (model, path, tf.saved_model.load(path))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = [cli] if os.path.exists(cli) else [
        sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    show = subprocess.Popen(command + ["show", "--all", "--dir", result["additive_lottery"][1]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result["_processes"] = {"killed": (killed, killed_dir), "saved_model_cli": show}
    yield result
    for process in (killed, show):
        if process.poll() is None:
            process.kill()
            process.wait()


def _bids(setting, batch, seed):
    return np.random.default_rng(seed).uniform(
        0, 2, size=(batch, setting.num_bidders, setting.num_items))


def _tie_bids(setting):
    """Integer bids: many exact welfare ties (e.g. all zero, all equal)."""
    shape = (setting.num_bidders, setting.num_items)
    return np.stack([np.zeros(shape), np.ones(shape), np.full(shape, 2.0),
                     np.eye(*shape), 1 - np.eye(*shape),
                     np.arange(np.prod(shape)).reshape(shape) % 2])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["additive_lottery", "unit_demand_lottery", "deterministic",
                                  "ties", "trained", "joined"])
def test_served_outcome_equals_exact_outcome_bit_for_bit(exported, name):
    model, _, loaded = exported[name]
    menu = model.menu(tf.float64)
    for bids in (_bids(model.setting, 150, seed=1), _tie_bids(model.setting)):
        served = loaded.signatures["serving_default"](bids=tf.constant(bids))
        expected = exact_outcome(bids, *menu)
        for key in OUTPUTS:
            assert served[key].dtype == expected[key].dtype
            assert np.array_equal(served[key].numpy(), expected[key].numpy()), key


def test_ties_go_to_the_lowest_index(exported):
    model, _, loaded = exported["ties"]
    bids = np.concatenate([_tie_bids(model.setting), _bids(model.setting, 40, seed=2)])
    served = loaded.signatures["serving_default"](bids=tf.constant(bids))
    oracle = numpy_ama(bids, *model.exact_menu())
    assert np.array_equal(served["menu_index"].numpy(), oracle["menu_index"])
    assert not np.isin(served["menu_index"].numpy(), [2, 4]).any()  # duplicates never chosen
    assert served["menu_index"].numpy()[0] == 3  # zero bids: W = boosts, tie of 3 and 4


def test_outcome_of_a_profile_does_not_depend_on_its_batch(exported):
    """Batch of 1 vs the same profile in batches of other sizes (TF Serving batches requests).
    Measured: without export's padding to whole blocks, this fails for 2x4 and 3x10."""
    model, _, loaded = exported["unit_demand_lottery"]
    serve = loaded.signatures["serving_default"]
    bids = _bids(model.setting, 130, seed=4)
    full = serve(bids=tf.constant(bids))
    for start, size in [(0, 1), (17, 1), (64, 1), (5, 3), (60, 70)]:
        part = serve(bids=tf.constant(bids[start:start + size]))
        for key in OUTPUTS:
            assert np.array_equal(part[key].numpy(), full[key].numpy()[start:start + size]), key


def test_menu_signature_and_load_menu_model(exported):
    model, path, loaded = exported["additive_lottery"]
    menu = loaded.signatures["menu"](dummy=tf.constant(0))
    for key, value in zip(("allocations", "boosts", "bidder_weights"), model.exact_menu()):
        assert menu[key].dtype == tf.float64
        assert np.array_equal(menu[key].numpy(), value), key
    rebuilt = load_menu_model(os.path.dirname(path))  # the model folder: its highest version
    assert rebuilt.menu_layer.kind == "fixed" and rebuilt.setting == model.setting
    for got, want in zip(rebuilt.exact_menu(), model.exact_menu()):
        assert np.array_equal(got, want)
    bids = _bids(model.setting, 50, seed=5)
    for key in OUTPUTS:
        assert np.array_equal(rebuilt(bids)[key].numpy(), model(bids)[key].numpy())


def test_a_joined_menu_serves_its_family_and_the_owners(exported):
    """With the item-separable family: `menu` adds `separable_boosts`, `serving_default`
    adds `owners` (the family entry's owner per item, -1 for an explicit entry); both
    agree with the loop oracle over the enumerated family, and the model loads back."""
    model, path, loaded = exported["joined"]
    menu = loaded.signatures["menu"](dummy=tf.constant(0))
    assert set(menu) == {"allocations", "boosts", "bidder_weights", "separable_boosts"}
    for key, value in model.exact_menu()._asdict().items():
        if value is not None:  # no `size_boosts`: not the bundle-size family
            assert np.array_equal(menu[key].numpy(), value), key
    bids = np.concatenate([_bids(model.setting, 200, seed=6), _tie_bids(model.setting)])
    served = loaded.signatures["serving_default"](bids=tf.constant(bids))
    oracle = numpy_ama(bids, *model.exact_menu())
    index = served["menu_index"].numpy()
    assert np.array_equal(index, oracle["menu_index"])
    np.testing.assert_allclose(served["payments"].numpy(), oracle["payments"], rtol=0,
                               atol=1e-12)
    family = index >= model.menu_size
    assert 0.1 < family.mean() < 0.9  # both parts serve
    owners = served["owners"].numpy()
    assert owners.dtype == np.int64 and owners.shape == (len(bids), 5)
    assert np.all(owners[~family] == -1)
    allocation = served["allocation"].numpy()
    for profile in np.flatnonzero(family):
        for item, owner in enumerate(owners[profile]):
            expected = np.zeros(2)
            if owner:
                expected[owner - 1] = 1.0
            assert np.array_equal(allocation[profile, :, item], expected)
    rebuilt = load_menu_model(path)
    assert rebuilt.menu_layer.kind == "fixed" and rebuilt.menu_layer.separable
    for got, want in zip(rebuilt.exact_menu(), model.exact_menu(), strict=True):
        assert np.array_equal(got, want)


def test_a_family_outside_the_exactness_limits_is_refused_before_writing(tmp_path):
    model = _joined_model()
    model.menu_layer.family_boosts.assign(np.full((3, 5), 3e37, np.float32))
    with pytest.raises(ExportError, match=r"Not exported: .*`separable_boosts` must be finite "
                                          r"with sum_j max_o \|c\[o, j\]\| <= 1e\+38"):
        export_saved_model(model, tmp_path / "family")
    assert not os.path.exists(tmp_path / "family" / "1")


@pytest.mark.slow
def test_export_with_prune_keeps_the_family(tmp_path):
    model = _joined_model()
    path = export_saved_model(model, tmp_path, prune=True, prune_samples=2000, seed=3)
    config = read_export_config(path)
    kept = np.array(config["kept_indices"])
    assert config["menu_size"] == len(kept) < model.menu_size
    bids = np.asarray(model.setting.sample(2000, 3), np.float64)[:300]
    served = tf.saved_model.load(path).signatures["serving_default"](bids=tf.constant(bids))
    full = exact_outcome(bids, *model.menu(tf.float64))
    index = served["menu_index"].numpy()
    # Explicit entries map back through kept_indices, family entries shift by the sizes.
    mapped = np.where(index < len(kept), kept[np.minimum(index, len(kept) - 1)],
                      index - len(kept) + model.menu_size)
    assert np.array_equal(mapped, full["menu_index"].numpy())
    assert (index >= len(kept)).any()
    np.testing.assert_allclose(served["payments"].numpy(), full["payments"].numpy(),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("bids, message", [
    (np.full((1, 2, 2), np.nan), "must be finite"),
    (np.array([[[0.5, np.inf], [0.1, 0.2]]]), "must be finite"),
    (np.array([[[0.5, -0.1], [0.1, 0.2]]]), "must be >= 0"),
    (np.ones((4, 3, 2)), r"wrong shape: expected \[batch, num_bidders=2, num_items=2\]"),
    (np.ones((4, 2, 3)), r"wrong shape: expected \[batch, num_bidders=2, num_items=2\]"),
    (np.ones((2, 2)), "leading batch axis"),
    (np.ones((1, 2, 2, 1)), "wrong shape"),
    (np.ones((1, 2, 2), np.float32), "expected to be a double tensor but is a float tensor"),
], ids=["nan", "inf", "negative", "bidders", "items", "rank2", "rank4", "float32"])
def test_bad_bids_are_refused_with_a_message(exported, bids, message):
    serve = exported["additive_lottery"][2].signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(bids=tf.constant(bids))


def test_plain_tensorflow_and_tfsm_layer_as_documented(exported):
    """The serving/README.md snippets: inference without importing tf_ama's model code."""
    model, path, _ = exported["deterministic"]
    bids = np.array([[[0.5, 0.2], [0.3, 0.9]]])
    expected = exact_outcome(bids, *model.menu(tf.float64))
    outcome = tf.saved_model.load(path).signatures["serving_default"](bids=tf.constant(bids))
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default", dtype="float64")
    from_layer = layer(bids)
    for key in OUTPUTS:
        assert np.array_equal(outcome[key].numpy(), expected[key].numpy())
        assert np.array_equal(np.asarray(from_layer[key]), expected[key].numpy())


def test_layout_config_and_warmup(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    model, path, loaded = exported["trained"]
    assert os.path.basename(path) == "1"
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
    with open(os.path.join(path, "assets.extra", "tf_ama_config.json")) as file:
        config = json.load(file)
    assert tf_ama.Setting.from_dict(config["setting"]) == model.setting
    assert config["model"] == model.own_config()  # the model's arguments, the menu layer's nested
    assert config["model"]["menu"]["class_name"] == "LotteryMenu" and config["menu_size"] == 8
    assert config["model"]["menu"]["config"]["menu_size"] == 8
    assert config["serving"]["micro_batch_size"] >= 1
    assert config["training"] == {"steps": 3} and config["pruned"] is False
    assert config["tf_ama_version"] == tf_ama.__version__
    # Whoever serves the model reads what the signature accepts and guarantees.
    assert config["exactness"]["max_bid"] == tf_ama.core.exactness.MAX_BID == 1e38
    assert config["exactness"]["bidder_weight_range"] == [1e-6, 1e6]
    records = list(tf.data.TFRecordDataset(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests")).as_numpy_iterator())
    assert len(records) >= 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        bids = tf.make_ndarray(request.inputs["bids"])
        assert bids.dtype == np.float64 and bids.shape[1:] == (1, 2)
        loaded.signatures["serving_default"](bids=tf.constant(bids))  # valid warm-up input


def _fake_write(module, directory):
    """Stands in for the (slow) SavedModel writer where only the versioning is tested."""
    with open(os.path.join(directory, "saved_model.pb"), "wb") as file:
        file.write(b"partial")


@pytest.mark.slow
def test_versions_are_numbered_and_never_overwritten(tmp_path, monkeypatch):
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)
    assert export_saved_model(model, tmp_path) == str(tmp_path / "1")
    assert export_saved_model(model, tmp_path) == str(tmp_path / "2")
    assert os.path.exists(tmp_path / "2" / "saved_model.pb")
    monkeypatch.setattr(export, "_write_saved_model", _fake_write)
    with pytest.raises(ExportError, match="Version 2 already exists"):
        export_saved_model(model, tmp_path, version=2)
    assert export_saved_model(model, tmp_path, version=7) == str(tmp_path / "7")
    assert export_saved_model(model, tmp_path) == str(tmp_path / "8")
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "7", "8"]


def test_bad_arguments_name_the_argument(tmp_path):
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ExportError, match="`model` must be a tf_ama.AffineMaximizerAuction"):
        export_saved_model(keras.Sequential(), tmp_path)
    with pytest.raises(ExportError, match="`base_dir`.*is a file"):
        export_saved_model(model, a_file)
    for version in (0, -1, "1", 1.0, True):
        with pytest.raises(ExportError, match="`version` must be None"):
            export_saved_model(model, tmp_path / "m", version=version)
    with pytest.raises(ExportError, match="`training_config` must be JSON"):
        export_saved_model(model, tmp_path / "m", training_config={"x": object()})
    for name, value in (("prune_samples", 0), ("micro_batch_size", 2.0), ("prune", 1)):
        with pytest.raises(ExportError, match=f"`{name}` must be"):
            export_saved_model(model, tmp_path / "m", **{name: value})
    with pytest.raises(ExportError, match="not a tf_ama SavedModel version folder"):
        load_menu_model(tmp_path)
    assert not os.path.exists(tmp_path / "m")  # refused before anything is written


def test_chunk_size_is_the_deprecated_name_of_micro_batch_size(tmp_path):
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)
    with pytest.warns(DeprecationWarning, match="`chunk_size` is deprecated"):
        path = export_saved_model(model, tmp_path / "m", chunk_size=16)
    with open(os.path.join(path, "assets.extra", "tf_ama_config.json")) as file:
        assert json.load(file)["serving"]["micro_batch_size"] == 16


def test_failed_export_leaves_no_version_folder(tmp_path, monkeypatch):
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)

    def fail(module, directory):
        _fake_write(module, directory)  # half written
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export, "_write_saved_model", fail)
    with pytest.raises(ExportError, match=r"into '.*': a write failed; no version folder was "
                                          r"written\. .*\(OSError: disk full \(simulated\)\)"):
        export_saved_model(model, tmp_path)
    assert os.listdir(tmp_path) == []  # neither a version nor the temporary folder


@contextlib.contextmanager
def _small_disk(path, size, monkeypatch):
    """`path` on a device with only `size` of space: a real tmpfs when this process may mount
    one (root on Linux); else every write through TensorFlow's file layer (saved_model.pb)
    fails as on a full device (same error, measured on a full tmpfs)."""
    path.mkdir()
    mount = shutil.which("mount")
    mounted = bool(mount) and hasattr(os, "geteuid") and os.geteuid() == 0 and subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True).returncode == 0
    if not mounted:
        from tensorflow.python.lib.io import file_io

        def no_space(self, file_content):
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{self.name}; No space left on device")

        monkeypatch.setattr(file_io.FileIO, "write", no_space)
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def _run_dir(path, model):
    """A finished run directory holding `model` (what `tf-ama train` leaves)."""
    from tf_ama.training import runs

    files.write_json_atomic(path / runs.CONFIG, {"training": {"steps": 10}})
    runs.save_model_atomic(model, str(path / runs.MODEL))
    return path


def _export_script_main():
    script = os.path.join(REPO, "export", "export_model.py")
    namespace = {"__name__": "export_model"}
    exec(compile(open(script).read(), script, "exec"), namespace)
    return namespace["main"]


# 4k: the variables (TensorFlow's SaveV2 op) do not fit; 64k: saved_model.pb (TensorFlow's
# Python file layer) does not (measured with TF 2.18; the later files fail the same way).
@pytest.mark.parametrize("size, command", [("4k", "export_model.py"), ("64k", "tf-ama export")])
def test_a_full_disk_is_one_line_naming_the_folder_and_no_version(tmp_path, monkeypatch, capsys,
                                                                    size, command):
    from tf_ama.cli.app import main as tf_ama_main

    run_dir = _run_dir(tmp_path / "run", tf_ama.AffineMaximizerAuction(
        "additive_1x2_uniform", menu_size=4, seed=2))
    with _small_disk(tmp_path / "disk", size, monkeypatch) as disk:
        base = disk / "models" / "a12"
        argv = [str(run_dir), "--to", str(base)]
        if command == "export_model.py":
            assert _export_script_main()(argv) == 2
        else:
            assert tf_ama_main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"Could not export into {str(base)!r}: no space left on its device; no version " \
               "folder was written. To fix: free space there" in err
        assert os.listdir(base) == []  # neither a version nor the temporary folder


@pytest.mark.parametrize("weights, boosts, message", [
    ([5e-324], [0.5], r"`bidder_weights` must lie in \[1e-06, 1e\+06\]; got \[5e-324\]"),
    ([2e6], [0.5], r"`bidder_weights` must lie in"),
    ([1.0], [1e39], r"`boosts` must be finite with \|boosts\| <= 1e\+38"),
    ([1.0], [np.inf], r"`boosts` must be finite"),
], ids=["tiny_weight", "huge_weight", "huge_boost", "inf_boost"])
def test_a_menu_outside_the_exactness_limits_is_refused_before_writing(tmp_path, weights,
                                                                        boosts, message):
    """`from_menu` refuses such menus, so they are assigned directly (as a learned model's
    parameters could drift there); the served auction would refuse every request."""
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu="fixed", menu_size=2)
    model.menu_layer.allocations.assign([[[0.0, 0.0]], [[1.0, 1.0]]])
    model.bidder_weights_layer.given_weights.assign(weights)
    model.menu_layer.boosts.assign(boosts)
    base = tmp_path / "models" / "a12"
    with pytest.raises(ExportError, match=r"Not exported: the served auction would refuse "
                                          r"every request for this menu\. " + message):
        export_saved_model(model, base)
    assert not os.path.exists(base)  # nothing written, not even the model folder


@pytest.fixture(scope="module")
def tiny_version(tmp_path_factory):
    """The version folder of a tiny exported menu (fast to export and to load)."""
    model = tf_ama.AffineMaximizerAuction.from_menu(
        "additive_1x2_uniform", [[[0.0, 0.0]], [[1.0, 1.0]]], [0.0, 0.5], [1.0])
    return export_saved_model(model, tmp_path_factory.mktemp("tiny") / "a12")


def _truncate(path):
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)


def _variables_data(version):
    return next(os.path.join(version, "variables", name)
                for name in os.listdir(os.path.join(version, "variables")) if ".data-" in name)


# What each damage raised before load_menu_model named the folder: IndexError, OpError,
# OSError, JSONDecodeError, TypeError (printed as tracebacks or as bare parser messages).
_DAMAGES = {
    "variables_data_truncated": lambda version: _truncate(_variables_data(version)),
    "variables_index_truncated": lambda version: _truncate(
        os.path.join(version, "variables", "variables.index")),
    "saved_model_pb_truncated": lambda version: _truncate(
        os.path.join(version, "saved_model.pb")),
    "config_truncated": lambda version: _truncate(
        os.path.join(version, "assets.extra", "tf_ama_config.json")),
    "config_not_an_object": lambda version: open(
        os.path.join(version, "assets.extra", "tf_ama_config.json"), "w").write("[]"),
}


@pytest.mark.parametrize("damage", list(_DAMAGES))
def test_a_damaged_version_folder_is_named_with_the_fix(tiny_version, tmp_path, damage):
    version = str(tmp_path / "a12" / "1")
    shutil.copytree(tiny_version, version)
    _DAMAGES[damage](version)
    config = os.path.join(version, "assets.extra", "tf_ama_config.json")
    if damage.startswith("config"):
        named = (re.escape(f"{config!r} is damaged: ") + ".*"
                 + re.escape(f" Delete the version folder {version!r} and "))
    else:
        named = re.escape(f"The version folder {version!r} is damaged: its SavedModel cannot "
                          "be loaded. Delete that folder and ")
    fix = re.escape(f"export the run again (tf-ama export RUN_DIR --to {tmp_path / 'a12'})")
    with pytest.raises(ExportError, match=named + fix) as raised:
        load_menu_model(version)
    message = str(raised.value)
    assert "\n" not in message


def test_export_with_prune(tmp_path):
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=64, seed=0)
    path = export_saved_model(model, tmp_path, prune=True, prune_samples=2000, seed=3)
    with open(os.path.join(path, "assets.extra", "tf_ama_config.json")) as file:
        config = json.load(file)
    kept = np.array(config["kept_indices"])
    assert config["pruned"] is True and config["menu_size"] == len(kept) < 64
    # On the profiles prune looked at, the pruned auction gives the same outcome.
    bids = np.asarray(model.setting.sample(2000, 3), np.float64)[:300]
    served = tf.saved_model.load(path).signatures["serving_default"](bids=tf.constant(bids))
    full = exact_outcome(bids, *model.menu(tf.float64))
    assert np.array_equal(kept[served["menu_index"].numpy()], full["menu_index"].numpy())
    assert np.array_equal(served["allocation"].numpy(), full["allocation"].numpy())
    np.testing.assert_allclose(served["payments"].numpy(), full["payments"].numpy(),
                               rtol=0, atol=1e-12)


@pytest.mark.slow
def test_export_command_line(tmp_path, capsys):
    from tf_ama.training import runs

    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4, seed=2)
    run_dir = tmp_path / "run"
    files.write_json_atomic(run_dir / runs.CONFIG, {"training": {"steps": 10}})
    runs.save_model_atomic(model, str(run_dir / runs.MODEL))
    script = os.path.join(REPO, "export", "export_model.py")
    namespace = {"__name__": "export_model"}
    exec(compile(open(script).read(), script, "exec"), namespace)
    base = tmp_path / "models" / "additive_1x2_uniform"
    assert namespace["main"]([str(run_dir), "--to", str(base)]) == 0
    assert capsys.readouterr().out.strip() == str(base / "1")
    with open(base / "1" / "assets.extra" / "tf_ama_config.json") as file:
        assert json.load(file)["training"] == {"steps": 10}
    # Errors: one line on stderr, no traceback, exit status 2.
    assert namespace["main"]([str(run_dir), "--to", str(base), "--version", "1"]) == 2
    assert namespace["main"]([str(tmp_path / "nope"), "--to", str(base)]) == 2
    err = capsys.readouterr().err
    assert "Version 1 already exists" in err and "not a tf_ama run directory" in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["--help"],
    ["RUN", "--to", "models/a12", "--prune-samples", "0"],  # refused by the parser
    ["no/such/run", "--to", "models/a12"],  # refused by the export: one line, status 2
], ids=["help", "bad_flag", "missing_run"])
def test_export_script_is_tf_ama_export(tmp_path, argv):
    """export/export_model.py has tf-ama export's flags and errors (tf_ama.cli.app is their home)."""
    script = os.path.join(REPO, "export", "export_model.py")
    tf_ama_command = os.path.join(os.path.dirname(sys.executable), "tf-ama")
    results = [subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
               for command in ([sys.executable, script, *argv], [tf_ama_command, "export", *argv])]
    # TensorFlow may log lines on stderr before the error: compare the last line.
    script_result, cli_result = [(result.returncode, result.stdout,
                                  (result.stderr.splitlines() or [""])[-1]) for result in results]
    assert script_result == cli_result
    status, out, last_error_line = cli_result
    if argv == ["--help"]:
        assert status == 0 and "--to BASE_DIR" in out and "--prune-samples" in out
    elif "--prune-samples" in argv:
        assert status == 2 and last_error_line == (
            "tf-ama export: error: argument --prune-samples: must be an int >= 1; got 0.")
    else:
        assert status == 2 and last_error_line.startswith(
            "tf-ama export: error: 'no/such/run' is not a tf_ama run directory")
        assert "Traceback" not in results[0].stderr


def test_export_killed_midway_leaves_no_version_folder(exported):
    process, base_dir = exported["_processes"]["killed"]
    deadline = time.monotonic() + 240
    line = ""
    while line.strip() != "WRITTEN":
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            break
        line = process.stdout.readline()
        if not line:  # the subprocess ended
            break
    assert line.strip() == "WRITTEN", "the exporting subprocess did not reach the rename"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    names = os.listdir(base_dir)
    assert not [name for name in names if name.isdigit()]
    assert len(names) == 1 and names[0].startswith(".tmp-export-")  # ignored by TF Serving
    assert os.path.exists(os.path.join(base_dir, names[0], "saved_model.pb"))
    # The next export takes version 1 and removes the dead process's temporary folder.
    assert names[0].startswith(f".tmp-export-{versions._host()}-{process.pid}-")
    # Another host's temporary (same dead pid) is left alone: its process cannot be checked.
    elsewhere = os.path.join(base_dir, f".tmp-export-other-host.example-{process.pid}-abc_12")
    os.mkdir(elsewhere)
    model = tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4)
    assert export_saved_model(model, base_dir) == os.path.join(base_dir, "1")
    assert sorted(os.listdir(base_dir)) == [os.path.basename(elsewhere), "1"]


def test_saved_model_cli_shows_both_signatures(exported):
    process = exported["_processes"]["saved_model_cli"]
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    serving = out[out.index("signature_def['serving_default']"):]
    menu = out[out.index("signature_def['menu']"):out.index("signature_def['serving_default']")]
    for text, tensor, dtype, shape in [
        (serving, "inputs['bids']", "DT_DOUBLE", "(-1, 2, 2)"),
        (serving, "outputs['allocation']", "DT_DOUBLE", "(-1, 2, 2)"),
        (serving, "outputs['payments']", "DT_DOUBLE", "(-1, 2)"),
        (serving, "outputs['menu_index']", "DT_INT64", "(-1)"),
        (menu, "inputs['dummy']", "DT_INT32", "()"),
        (menu, "outputs['allocations']", "DT_DOUBLE", "(16, 2, 2)"),
        (menu, "outputs['boosts']", "DT_DOUBLE", "(16)"),
        (menu, "outputs['bidder_weights']", "DT_DOUBLE", "(2)"),
    ]:
        block = text[text.index(tensor):][:200]
        assert f"dtype: {dtype}" in block and f"shape: {shape}\n" in block, (tensor, block)
