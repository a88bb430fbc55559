"""The `tf-ama` command end to end: settings, baselines, train -> evaluate -> menu -> export."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.training import runs
from tf_ama.cli.app import build_parser, main, run_command
from tf_ama.utils import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow", "keras", "tensorflow_probability", "matplotlib")


def _tf_ama(*args):
    """Runs the installed console command in a subprocess (as a user would)."""
    command = [os.path.join(os.path.dirname(sys.executable), "tf-ama"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _start_python(code):
    """Starts `code` in a fresh interpreter (see `_fresh_python`); returns the process."""
    probe = ("import atexit, json, sys\n"
             f"atexit.register(lambda: print('\\nLOADED', json.dumps([name for name in {HEAVY!r} "
             "if name in sys.modules])))\n")
    return subprocess.Popen([sys.executable, "-c", probe + code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _finish_python(process):
    """`(result, loaded)` of a process of `_start_python`, once it has exited."""
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert "\nLOADED " in result.stdout, result.stderr
    return result, json.loads(result.stdout.rsplit("\nLOADED ", 1)[1])


def _fresh_python(code):
    """Runs `code` in a fresh interpreter; returns the finished process and the HEAVY
    packages it had loaded when it exited (also through SystemExit)."""
    return _finish_python(_start_python(code))


def _cli(*argv):
    return f"import sys; from tf_ama.cli.app import main; sys.exit(main({list(argv)!r}))"


@pytest.mark.parametrize("argv", [
    ["--help"], ["export", "--help"], ["query", "--help"], ["settings"], ["train", "--help"],
], ids=lambda argv: " ".join(argv))
def test_the_command_line_starts_without_tensorflow(argv):
    result, loaded = _fresh_python(_cli(*argv))
    assert result.returncode == 0, result.stderr
    assert loaded == []


def test_import_tf_ama_is_lazy_and_keeps_every_public_name():
    result, loaded = _fresh_python(
        "import tf_ama\n"
        "assert tf_ama.core.exactness.MAX_BID == 1e38 and tf_ama.utils.seeds.evaluation_seed(0) == 2\n"
        "assert tf_ama.utils.checks.integer('n', 3) == 3 and tf_ama.__version__\n")
    assert result.returncode == 0, result.stderr
    assert loaded == []
    # Every name of __all__ is its module's object; dir() lists them and the submodules.
    for name in tf_ama.__all__:
        if name != "__version__":
            module = importlib.import_module(f"tf_ama.{tf_ama._MODULE_OF[name]}")
            assert getattr(tf_ama, name) is getattr(module, name), name
    assert {"AffineMaximizerAuction", "evaluate", "core", "utils", "cli"} <= set(dir(tf_ama))
    assert {"exactness", "mechanism"} <= set(dir(tf_ama.core))
    from tf_ama import AffineMaximizerAuction, export_saved_model  # noqa: F401
    with pytest.raises(AttributeError, match="module 'tf_ama' has no attribute 'nope'"):
        tf_ama.nope  # noqa: B018


LOADING_IMPORTS = [
    "import keras, tf_ama", "import tensorflow, tf_ama", "import tf_ama, keras",
    "import tf_ama, tensorflow",
    "import tf_ama; tf_ama.fresh_valuations(8)",  # a name whose module imports Keras half-way
    "import tf_ama; tf_ama.LotteryMenu",
    "import tf_ama.menus.layers",                  # a submodule imported directly
]


@pytest.fixture(scope="module")
def loading_processes():
    """The processes of the test below, started together: each spends ~20 s importing
    TensorFlow on one core, so side by side they take about a third of their sum."""
    path = os.path.join(REPO, "tests", "fixtures", "v0_1", "fixed.keras")
    started = {imports: _start_python(
        f"{imports}\nimport keras, tf_ama\nmodel = keras.saving.load_model({path!r})\n"
        "assert type(model) is tf_ama.AffineMaximizerAuction, type(model)\n")
        for imports in LOADING_IMPORTS}
    try:
        return {imports: _finish_python(process)[0] for imports, process in started.items()}
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("imports", LOADING_IMPORTS)
def test_a_fresh_process_that_imported_keras_and_tf_ama_loads_a_saved_model(
        imports, loading_processes):
    """A .keras file names "tf_ama>AffineMaximizerAuction", registered by tf_ama.models.auction; Keras
    imports no module named in a file, so tf_ama registers it as soon as Keras is loaded,
    before or after `import tf_ama`, whatever imported Keras."""
    result = loading_processes[imports]
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_keras_and_tf_ama_model_imported_by_two_threads_do_not_deadlock():
    result, _ = _fresh_python(textwrap.dedent("""
        import threading, tf_ama
        errors = []
        def run(name):
            try:
                __import__(name)
            except Exception as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=run, args=(n,)) for n in ("keras", "tf_ama.models.auction")]
        [thread.start() for thread in threads]
        [thread.join() for thread in threads]
        assert not errors, errors
        """))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_failing_registration_does_not_break_import_keras():
    """Another library's `import keras` must work even if tf_ama.models.auction cannot be imported."""
    result, loaded = _fresh_python(textwrap.dedent("""
        import sys, warnings
        sys.modules["tensorflow_probability"] = None  # tf_ama.models.auction cannot be imported
        import tf_ama
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import keras
        assert any("could not register" in str(w.message) for w in caught), caught
        """))
    assert result.returncode == 0, result.stderr
    assert "keras" in loaded


def test_rest_query_needs_no_tensorflow_and_errors_are_one_line():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    result, loaded = _fresh_python(_cli("query", "--rest", f"http://127.0.0.1:{port}", "--model",
                                        "m", "--bids", "[[[0.5, 0.5]]]", "--timeout", "5"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tf-ama query: error: cannot reach TF Serving at "
                                    f"http://127.0.0.1:{port}") and result.stderr.count("\n") == 1
    assert "tensorflow" not in loaded and "keras" not in loaded


@pytest.mark.parametrize("argv", [["--help"], ["--rest", "http://127.0.0.1:1", "--model", "m",
                                               "--bids", "[[[", "--timeout", "0"]])
def test_serving_client_script_is_tf_ama_query(argv):
    script = os.path.join(REPO, "serving", "client.py")
    command = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True,
                             timeout=600)
    query = _tf_ama("query", *argv)
    assert (command.returncode, command.stdout, command.stderr) == (
        query.returncode, query.stdout, query.stderr)
    if argv != ["--help"]:
        assert query.returncode == 2 and "argument --timeout: must be a finite number > 0 " \
            "and <= 1000000.0; got 0.0." in query.stderr


@pytest.mark.parametrize("argv, message", [
    (["train", "s", "--out", "o", "--lr", "nan"],
     "argument --lr/--learning-rate: must be a finite number > 0; got nan."),
    (["train", "s", "--out", "o", "--anneal-fraction", "1.5"],
     "argument --anneal-fraction: must be a finite number > 0 and <= 1; got 1.5."),
    (["train", "s", "--out", "o", "--micro-batch-size", "0"],
     "argument --micro-batch-size: must be 'auto', 'none' or an int >= 1; got '0'."),
    (["evaluate", "p", "--seed", "-1"], "argument --seed: must be an int in [0, 2**31); got -1."),
    (["baselines", "s", "--samples", "1.5"], "argument --samples: must be an int >= 1; got '1.5'."),
    (["export", "r", "--to", "b", "--version", "0"],
     "argument --version: must be an int >= 1 and <= 9223372036854775807; got 0."),
    (["query", "--grpc", "h:1", "--model", "m", "--menu", "--timeout", "inf"],
     "argument --timeout: must be a finite number > 0 and <= 1000000.0; got inf."),
    (["baselines", "s", "--samples", "1_000"], "argument --samples: must be an int >= 1; "
                                                "got '1_000'."),  # was read as 1000
])
def test_flag_values_are_checked_by_tf_ama_checks(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith(f"error: {message}")


@pytest.mark.parametrize("command", ["evaluate", "menu"])
def test_evaluate_and_menu_default_to_the_models_evaluation_seed(capsys, command):
    # None: evaluate / menu_usage draw tf_ama.utils.seeds.evaluation_seed(model.seed).
    assert build_parser().parse_args([command, "run"]).seed is None
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "default: the model's seed + 2, the sample `tf-ama train` evaluated on" in " ".join(
        capsys.readouterr().out.split())


def test_train_offers_every_menu_kind_but_the_fixed_one():
    from tf_ama.cli.flags import TRAINABLE_MENU_KINDS

    assert set(TRAINABLE_MENU_KINDS) == set(tf_ama.MENU_KINDS) - {"fixed"}


def test_settings_lists_every_built_in_setting(capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    for name in tf_ama.list_settings():
        assert name in out


def test_baselines_json(capsys):
    assert main(["baselines", "additive_2x2_uniform", "--samples", "20000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"vcg", "separate_myerson", "grand_bundle"}
    assert abs(report["separate_myerson"]["revenue"] - 0.8333) < 0.01
    # --progress draws on stderr only: stdout is the same JSON.
    assert main(["baselines", "additive_2x2_uniform", "--samples", "20000", "--json",
                 "--progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == report and "Baselines of additive_2x2_uniform" in captured.err


BAD_INPUT = [
    (["baselines", "additive_9x9_uniform"], "Unknown setting"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["train", "additive_2x2_uniform", "--steps", "150", "--steps-per-epoch", "100",
      "--out", "{tmp}/bad"], "multiple of"),
]


@pytest.fixture(scope="module")
def bad_input_processes(tmp_path_factory):
    """The commands of the test below, run side by side (each imports TensorFlow first)."""
    tmp = tmp_path_factory.mktemp("bad_input")
    command = os.path.join(os.path.dirname(sys.executable), "tf-ama")
    started = [subprocess.Popen([command, *[a.format(tmp=tmp) for a in argv]], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for argv, _ in BAD_INPUT]
    try:
        return [_returncode_and_stderr(process) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()


def _returncode_and_stderr(process):
    """`(returncode, stderr)` of a finished `subprocess.Popen` (stdout discarded)."""
    stderr = process.communicate(timeout=600)[1]
    return process.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[a[0] for a, _ in BAD_INPUT])
def test_bad_input_prints_one_line_and_exits_2(case, bad_input_processes):
    returncode, stderr = bad_input_processes[case]
    assert returncode == 2, stderr
    assert BAD_INPUT[case][1] in stderr
    assert "Traceback" not in stderr


def _one_line_error(capsys, prefix):
    """stderr, checked to be ONE line starting with `prefix` (no traceback)."""
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    return err


def test_a_multi_line_message_prints_as_one_line(tmp_path, capsys):
    """The "different configuration" error lists both configurations on further lines."""
    out = tmp_path / "run"
    files.write_json_atomic(out / runs.CONFIG, {})  # another run's configuration
    assert main(["train", "additive_1x2_uniform", "--out", str(out)]) == 2
    err = _one_line_error(capsys, f"tf-ama train: error: --out {str(out)!r} already holds a run "
                                  "with a different configuration")
    assert " existing: {} requested: {'setting': " in err


@pytest.mark.parametrize("error", [
    ValueError("first line\n  second line"),
    tf.errors.InvalidArgumentError(None, None, "bids must be finite\n\t [[{{node Assert}}]]"),
    # A graph's: where the node was built, then the message (the stack is left out).
    tf.errors.InvalidArgumentError(None, None, (
        "Graph execution error:\n\nDetected at node model/VerifyFinite/CheckNumerics defined at "
        "(most recent call last):\n  File \"/bin/tf-ama\", line 8, in <module>\n\n  File "
        "\"/tf_ama/core/validation.py\", line 84, in validate_menu\n\nbids must be finite : Tensor "
        "had NaN values\n\t [[{{node model/VerifyFinite/CheckNumerics}}]] [Op:__inference_x]")),
], ids=["ValueError", "InvalidArgumentError", "graph"])
def test_run_command_prints_a_multi_line_message_as_one_line(capsys, error):
    def command(args):
        raise error

    assert run_command("tf-ama x", command, None) == 2
    assert capsys.readouterr().err in (
        "tf-ama x: error: first line second line\n", "tf-ama x: error: bids must be finite\n",
        "tf-ama x: error: bids must be finite : Tensor had NaN values\n")


def test_run_command_does_not_hide_bugs():
    def command(args):
        return {}["missing"]

    with pytest.raises(KeyError):
        run_command("tf-ama x", command, None)


@pytest.fixture(scope="module")
def damaged_version(tmp_path_factory):
    """An exported version folder whose variables data file is truncated."""
    model = tf_ama.AffineMaximizerAuction.from_menu(
        "additive_1x2_uniform", [[[0.0, 0.0]], [[1.0, 1.0]]], [0.0, 0.5], [1.0])
    version = tf_ama.export_saved_model(model, tmp_path_factory.mktemp("models") / "a12")
    variables = os.path.join(version, "variables")
    data = next(os.path.join(variables, name) for name in os.listdir(variables)
                if ".data-" in name)
    with open(data, "r+b") as file:
        file.truncate(os.path.getsize(data) // 2)
    return version


@pytest.mark.parametrize("command", ["evaluate", "menu"])
def test_a_damaged_saved_model_is_named_in_one_line(damaged_version, capsys, command):
    """Before: an IndexError traceback ("Read less bytes than requested")."""
    assert main([command, damaged_version, "--samples", "100"]) == 2
    _one_line_error(capsys, f"tf-ama {command}: error: The version folder {damaged_version!r} "
                            "is damaged: its SavedModel cannot be loaded. Delete that folder "
                            "and export the run again (tf-ama export RUN_DIR --to "
                            f"{os.path.dirname(damaged_version)}).")


@pytest.mark.slow
def test_train_on_the_exact_expectation_of_a_discrete_setting(tmp_path, capsys):
    out = os.path.join(tmp_path, "sph")
    assert main(["train", "unit_demand_2x4_spherical", "--menu-size", "16", "--steps", "20",
                 "--steps-per-epoch", "10", "--exact-expectation", "--samples", "2000",
                 "--boost-init-scale", "0.5", "--restarts", "1", "--no-polish",
                 "--out", out]) == 0
    config = json.load(open(os.path.join(out, runs.CONFIG)))
    assert config["training"]["exact_expectation"]
    lines = open(os.path.join(out, runs.HISTORY)).read().splitlines()
    validated = float(lines[-1].split(",")[lines[0].split(",").index("val_revenue")])
    model, _ = runs.load_run(out)
    assert model.menu_layer.boost_init_scale == 0.5
    profiles, probabilities = tf_ama.data.distributions.finite_support(
        model.setting.distribution_fn("float64"))
    payments = model(profiles)["payments"].numpy().sum(axis=1)
    assert validated == pytest.approx(float(np.dot(probabilities, payments)), rel=1e-6)

    # A continuous setting has no finite support: refused before anything is written.
    capsys.readouterr()
    bad = os.path.join(tmp_path, "uniform")
    assert main(["train", "additive_2x2_uniform", "--exact-expectation", "--out", bad]) == 2
    assert "needs a discrete setting; 'additive_2x2_uniform'" in capsys.readouterr().err
    assert not os.path.exists(bad)


@pytest.mark.slow
def test_a_run_written_before_newer_arguments_existed_still_resumes(tmp_path, capsys):
    out = os.path.join(tmp_path, "old")
    model_kwargs = {"menu_size": 8}
    training = tf_ama.TrainingConfig(steps=2, steps_per_epoch=1, batch_size=32,
                                     validation_samples=64)
    tf_ama.train_run("additive_1x2_uniform", out, model_kwargs, training, verbose=0)
    path = os.path.join(out, runs.CONFIG)
    config = json.load(open(path))
    menu_config = config["model"]["menu"]["config"]  # the menu layer's arguments
    del menu_config["boost_init_scale"], config["training"]["exact_expectation"]
    json.dump(config, open(path, "w"))  # as an older version wrote it
    capsys.readouterr()
    tf_ama.train_run("additive_1x2_uniform", out, model_kwargs, training, verbose=0)
    assert "nothing to train" in capsys.readouterr().out
    # A missing argument counts as its default, not as anything: another value is refused.
    with pytest.raises(ValueError, match="different configuration"):
        tf_ama.train_run("additive_1x2_uniform", out, {**model_kwargs, "boost_init_scale": 0.5},
                         training, verbose=0)


@pytest.mark.slow
def test_unit_demand_report_shows_baselines_that_do_not_apply(tmp_path, capsys):
    out = os.path.join(tmp_path, "ud")
    assert main(["train", "unit_demand_1x2_uniform", "--menu-size", "8", "--steps", "10",
                 "--steps-per-epoch", "5", "--batch-size", "64", "--validation-samples", "500",
                 "--samples", "1000", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "separate_myerson" in printed and "n/a" in printed
    assert matplotlib.image.imread(os.path.join(out, runs.CURVES)).size > 0


@pytest.mark.slow
def test_train_evaluate_menu_export_and_resume(tmp_path, capsys):
    out = os.path.join(tmp_path, "run")
    argv = ["train", "additive_2x2_uniform", "--menu", "lottery", "--menu-size", "32",
            "--steps", "40",
            "--steps-per-epoch", "20", "--batch-size", "256", "--validation-samples", "2000",
            "--samples", "5000", "--final-temperature", "300", "--out", out]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "revenue" in printed and "separate_myerson" in printed
    for name in (runs.CONFIG, runs.MODEL, runs.HISTORY, runs.EVALUATION, runs.CURVES, runs.LOGS):
        assert os.path.exists(os.path.join(out, name)), name
    assert matplotlib.image.imread(os.path.join(out, runs.CURVES)).size > 0
    # Annealed over the last 40 % of the 2 epochs: epoch 2 trained at temperature 300.
    history_lines = open(os.path.join(out, runs.HISTORY)).read().splitlines()
    column = history_lines[0].split(",").index("temperature")
    assert [float(line.split(",")[column]) for line in history_lines[1:]] == [100.0, 300.0]
    evaluation = json.load(open(os.path.join(out, runs.EVALUATION)))
    assert evaluation["ir_violations"] == 0 and evaluation["max_regret"] <= 1e-9

    # Re-running the same command on a finished run trains nothing and keeps the model.
    history = open(os.path.join(out, runs.HISTORY)).read()
    model_bytes = open(os.path.join(out, runs.MODEL), "rb").read()
    assert main(argv) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert open(os.path.join(out, runs.HISTORY)).read() == history
    assert open(os.path.join(out, runs.MODEL), "rb").read() == model_bytes
    # A different configuration in the same directory is refused.
    assert main(argv[:-2] + ["--lr", "0.1", "--out", out]) == 2
    assert "different configuration" in capsys.readouterr().err

    # By default `evaluate` draws the sample `train` evaluated on (the model's seed + 2).
    assert main(["evaluate", out, "--samples", "5000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revenue"] == evaluation["revenue"]
    assert main(["evaluate", out, "--samples", "3000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 3000 and report["ir_violations"] == 0

    plot = os.path.join(tmp_path, "menu.png")
    assert main(["menu", out, "--samples", "3000", "--plot", plot]) == 0
    assert "share" in capsys.readouterr().out
    assert matplotlib.image.imread(plot).size > 0

    base = os.path.join(tmp_path, "models", "a22")
    assert main(["export", out, "--to", base]) == 0
    assert main(["export", out, "--to", base]) == 0
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert capsys.readouterr().out.split() == [os.path.join(base, "1"), os.path.join(base, "2")]
    assert main(["evaluate", os.path.join(base, "2"), "--samples", "3000", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["revenue"] == report["revenue"]  # same float64 menu, same samples
    # Without XLA: the computation the export serves; equal up to the last bits.
    assert main(["evaluate", os.path.join(base, "2"), "--samples", "3000", "--json",
                 "--no-xla"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert served["entries_used"] == report["entries_used"]
    assert abs(served["revenue"] - report["revenue"]) <= 1e-12


def _corrupt_model_keras(run_dir, damage):
    path = os.path.join(run_dir, runs.MODEL)
    data = bytearray(open(path, "rb").read())
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:  # one flipped byte in the middle (inside a member's compressed data)
        data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    return path


@pytest.mark.parametrize("command, damage", [
    ("evaluate", "truncated"), ("menu", "flipped_byte"), ("export", "truncated")])
def test_a_corrupt_model_keras_is_named_in_one_line(tmp_path, capsys, command, damage):
    """Before: Keras's "File not found: filepath=.../model.keras" for a file that is there."""
    run_dir = str(tmp_path / "run")
    files.write_json_atomic(os.path.join(run_dir, runs.CONFIG), {"training": {"steps": 10}})
    runs.save_model_atomic(tf_ama.AffineMaximizerAuction("additive_1x2_uniform", menu_size=4),
                           os.path.join(run_dir, runs.MODEL))
    path = _corrupt_model_keras(run_dir, damage)
    base = str(tmp_path / "models" / "a12")
    argv = [command, run_dir] + (["--to", base] if command == "export" else ["--samples", "100"])
    assert main(argv) == 2
    err = _one_line_error(capsys, f"tf-ama {command}: error: ")
    assert path in err and "not found" not in err.lower(), err
    assert not os.path.exists(base)


def _saved_run(run_dir, setting="additive_2x2_uniform", menu_size=8):
    files.write_json_atomic(os.path.join(run_dir, runs.CONFIG), {"training": {"steps": 10}})
    runs.save_model_atomic(tf_ama.AffineMaximizerAuction(setting, menu_size=menu_size),
                           os.path.join(run_dir, runs.MODEL))
    return run_dir


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_evaluate_progress_and_outcomes_keep_json_output_clean(tmp_path, capsys, suffix):
    from tf_ama.evaluation.outcome_files import read_outcomes

    run_dir = _saved_run(str(tmp_path / "run"))
    outcomes = str(tmp_path / f"outcomes{suffix}")
    assert main(["evaluate", run_dir, "--samples", "300", "--json", "--progress",
                 "--outcomes", outcomes]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # stdout is the report alone; the bar is on stderr
    assert report["num_samples"] == 300 and len(report["revenue_ci95"]) == 2
    assert "300/300" in err and "Exact evaluation of additive_2x2_uniform" in err
    written = read_outcomes(outcomes)
    assert written["payments"].shape == (300, 2)
    assert written["payments"].sum(axis=1).mean() == pytest.approx(report["revenue"], rel=1e-12)
    # Without --progress and off a terminal (as here): no bar.
    assert main(["evaluate", run_dir, "--samples", "300"]) == 0
    out, err = capsys.readouterr()
    assert "95% CI [" in out and "300/300" not in err


@pytest.mark.parametrize("name, message", [
    ("outcomes.txt", "must be a file name ending in .npz (NumPy, for millions of profiles) "
                     "or .csv (one line per profile); got"),
    ("file/outcomes.npz", "cannot be written:"),
])
def test_evaluate_refuses_a_bad_outcomes_path_naming_the_flag(tmp_path, capsys, name, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", str(tmp_path / "run"), "--outcomes", str(tmp_path / name)])
    assert exited.value.code == 2
    assert f"error: argument --outcomes: {message}" in capsys.readouterr().err
