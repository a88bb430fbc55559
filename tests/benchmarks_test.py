"""Smoke runs of every script in benchmarks/ at tiny sizes, so that a benchmark an API change
breaks fails here (issue #18). Each test runs the script's own code path (its `main(argv)`,
or the function its command line calls) and checks what it REPORTS: keys, row counts,
numbers that agree with the run directories it read them from. Never a time or memory bound:
timings are for benchmarks/README.md, measured, not asserted.

`benchmarks/evaluation_memory.py` has its smoke test in tests/evaluation_test.py
(`test_memory_benchmark_smoke`).

The scripts that start `tf-ama train / evaluate / export` per configuration (recipe_runs,
separable_runs, contextual_runs, data_runs) run here with those commands in process
(`_tf_ama_in_process`: the same argv through `tf_ama.cli.app.main`), so that one TensorFlow
import serves them all; train_step_benchmark runs in ONE child process, as its user does.
What remains costly is each tiny `tf-ama train` itself (tracing, XLA compiles of the
validation and evaluation passes: seconds each, a contextual one tens of seconds on a
loaded 2-core machine), hence one run per kind, and `slow` on the tests that pay for them.
"""

import contextlib
import itertools
import importlib.util
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tf_ama
from builders import compiled_model, lottery_menu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")

# `tf-ama train` at tiny sizes: 2 steps of 64 profiles, small validation and evaluation.
TINY_TRAIN = ["--steps", "2", "--steps-per-epoch", "2", "--batch-size", "64",
              "--validation-samples", "200", "--samples", "300"]
# A contextual run: also a small network and menu.
TINY_CONTEXTUAL = ["--steps", "2", "--steps-per-epoch", "2", "--batch-size", "16",
                   "--validation-samples", "16", "--samples", "100", "--selection-samples",
                   "64", "--menu-size", "4", "--hidden", "8", "--blocks", "1"]


def _load(name, monkeypatch=None):
    """benchmarks/NAME.py as a module (benchmarks/ on sys.path, as when it is run)."""
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(BENCHMARKS)  # `from recipe_runs import ...`
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}",
                                                  os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _tf_ama_in_process(monkeypatch):
    """Runs the `tf-ama` commands the benchmarks start (`python -m tf_ama.cli.app ARGV` or the
    `tf-ama` script beside the interpreter) through `tf_ama.cli.app.main(ARGV)` in this process;
    any other command runs for real. Yields the list of the argv run."""
    from tf_ama.cli.app import main

    real_run, commands = subprocess.run, []

    def run(command, *args, check=False, capture_output=False, text=False, **kwargs):
        command = list(command)
        if command[:3] == [sys.executable, "-m", "tf_ama.cli.app"]:
            argv = command[3:]
        elif os.path.basename(command[0]) == "tf-ama":
            assert os.path.exists(command[0]), f"the benchmark runs {command[0]}: not there"
            argv = command[1:]
        else:
            return real_run(command, *args, check=check, capture_output=capture_output,
                            text=text, **kwargs)
        commands.append(argv)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout) if capture_output else contextlib.nullcontext():
            try:
                code = main(argv)
            except SystemExit as exit:  # argparse's errors: a process would exit with 2
                code = exit.code
        out = stdout.getvalue() if capture_output else None
        if check and code:
            raise subprocess.CalledProcessError(code, command, out)
        return subprocess.CompletedProcess(command, code, out if text or out is None
                                           else out.encode(), None)

    monkeypatch.setattr(subprocess, "run", run)
    yield commands


@pytest.fixture
def _in_process_tf_ama(monkeypatch):
    with _tf_ama_in_process(monkeypatch) as commands:
        yield commands


def _finite(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _read(path, name="evaluation.json"):
    with open(os.path.join(path, name)) as file:
        return json.load(file)


@pytest.mark.slow
def test_evaluation_benchmark_smoke():
    benchmark = _load("evaluation_benchmark")
    result = benchmark.main(["--menu-size", "16", "--steps", "2", "--batch-size", "100",
                             "--samples", "300", "--repeats", "1", "--json"])
    assert (result["setting"], result["menu_size"], result["samples"]) == (
        "additive_2x2_uniform", 16, 300)
    timed = ["train_seconds", "prune_seconds", "evaluate_full_plain_seconds",
             "evaluate_full_xla_seconds", "evaluate_pruned_xla_seconds",
             "menu_usage_full_xla_seconds"]
    assert all(_finite(result[key]) and result[key] >= 0 for key in timed)
    assert 1 <= result["entries_used"] <= 16 and 1 <= result["entries_kept"] <= 16
    assert result["fraction_used"] == result["entries_used"] / 16
    assert result["fraction_kept"] == result["entries_kept"] / 16
    # XLA and plain: the same outcome up to rounding; the pruned menu is a valid AMA.
    assert abs(result["revenue_full_xla_minus_plain"]) < 1e-10
    assert _finite(result["revenue_full"], result["revenue_pruned"], result["revenue_stderr"])
    assert result["revenue_full"] >= 0 and result["revenue_stderr"] > 0
    assert result["pruned_ir_violations"] == 0 and result["pruned_max_regret"] < 1e-9
    kept = result["block_bound_kept"]
    assert sorted(kept) == [1, 8, 64, 1024] and all(1 <= kept[b] <= 16 for b in kept)
    # The one block of all 300 profiles holds every smaller block's bid ranges: its bound
    # keeps every entry that theirs keep.
    assert all(kept[block] <= kept[1024] for block in kept)


@pytest.mark.slow
def test_evaluation_benchmark_model_from(tmp_path):
    """`--model-from` measures a saved model's menu, without training."""
    benchmark = _load("evaluation_benchmark")
    model = compiled_model(menu_size=8, seed=3)
    model.fit(tf_ama.fresh_valuations(32), epochs=1, steps_per_epoch=1, verbose=0)
    model.save(tmp_path / "model.keras")
    result = benchmark.main(["--model-from", str(tmp_path / "model.keras"), "--samples", "200",
                             "--repeats", "1", "--bound-blocks", "1,200", "--json"])
    assert (result["setting"], result["menu_size"], result["train_steps"],
            result["train_seconds"]) == ("additive_2x2_uniform", 8, None, None)
    assert sorted(result["block_bound_kept"]) == [1, 200]
    assert result["pruned_ir_violations"] == 0 and result["pruned_max_regret"] < 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 3), st.integers(1, 9),
       st.sampled_from([1e-3, 1.0, 1e4]))
def test_block_bound_keeps_every_maximizer(seed, num_bidders, num_items, block, scale):
    """The block bound is sound: every profile's welfare maximizer and every counterfactual
    maximizer of W_-i (a NumPy loop over profiles) is kept on the profile's block."""
    benchmark = _load("evaluation_benchmark")
    rng = np.random.default_rng(seed)
    menu_size = 24
    allocations, boosts = lottery_menu(rng, num_bidders, num_items, menu_size, scale)
    weights = rng.uniform(0.5, 2, num_bidders)
    profiles = rng.uniform(0, scale, (40, num_bidders, num_items))
    masks = benchmark.block_bound_masks(profiles, allocations, boosts, weights, block)
    assert masks.shape == (-(-40 // block), menu_size)
    for index, bids in enumerate(profiles):
        terms = [weights[i] * (allocations[:, i] @ bids[i]) for i in range(num_bidders)]
        maximizers = [np.argmax(boosts + sum(terms))]
        maximizers += [np.argmax(boosts + sum(t for j, t in enumerate(terms) if j != i))
                       for i in range(num_bidders)]
        assert masks[index // block, maximizers].all()
    if block == 1:  # one profile: only its maximizers and exact ties survive
        assert masks.sum(axis=1).max() <= num_bidders + 1


@pytest.mark.slow
def test_exactness_benchmark_smoke():
    benchmark = _load("exactness_benchmark")

    def in_git(revision):
        try:
            return subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"],
                                  cwd=ROOT, capture_output=True).returncode == 0
        except OSError:
            return False

    # The reference is tf_ama/core/mechanism.py at the benchmark's default revision when the clone
    # has it (a shallow checkout may not: then HEAD's, the same code path).
    reference = next((r for r in (benchmark.REFERENCE, "HEAD") if in_git(r)), None)
    if reference is None:
        pytest.skip("not a git clone: the benchmark reads tf_ama/core/mechanism.py from git history")
    # Three bidders: where the others' welfare is summed, not subtracted.
    rows = benchmark.main(["--cases", "3x2:8", "--samples", "300", "--calls", "3",
                           "--rounds", "1", "--reference", reference, "--json"])
    assert [row["case"] for row in rows] == ["3x2 K=8"]
    keys = {"latency_ms", "evaluate_plain_s", "evaluate_xla_s"}
    for row in rows:
        assert set(row["exact"]) == set(row["reference"]) == set(row["ratio"]) == keys
        for key in keys:
            assert row["exact"][key] > 0 and row["reference"][key] > 0
            assert row["ratio"][key] == pytest.approx(row["exact"][key] / row["reference"][key])


def test_import_benchmark_smoke(tmp_path):
    benchmark = _load("import_benchmark")
    cases = ["tf-ama --help", "import tf_ama"]
    results = benchmark.main(["--runs", "1", "--cases", *cases,
                              "--json", str(tmp_path / "import.json")])
    assert list(results) == cases
    for row in results.values():
        assert row["runs"] == 1 and 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        # The start-up of issue 13: neither loads TensorFlow.
        assert set(row["loaded"]) <= set(benchmark.HEAVY) and "tensorflow" not in row["loaded"]
    assert json.loads((tmp_path / "import.json").read_text()) == results


def test_roofline_smoke():
    benchmark = _load("roofline")
    report = benchmark.main(["--bandwidth-mb", "4", "--matmul-size", "128", "--json"])
    machine = report["machine"]
    assert set(machine) == {"bandwidth_gbs", "matmul_f32_gflops", "matmul_f64_gflops"}
    assert all(_finite(value) and value > 0 for value in machine.values())
    two, three, evaluation = report["rows"]
    # The paper-size steps of benchmarks/README.md: 403 M and 537 M elements per step.
    assert (two["elements_per_step_millions"], three["elements_per_step_millions"]) == (403, 537)
    for row, (m, n) in ((two, (2, 2)), (three, (3, 10))):
        contraction, plain, _ = benchmark.step_floors(machine, m, n, 4096, 2**15)
        assert row["contraction_floor_s"] == round(contraction, 3)
        assert row["plain_dram_floor_s"] == round(plain, 2)
        assert row["bytes_per_pass_gb"] == round(4 * 2**15 * (m + 1) * 4096 / 1e9, 2)
    assert "exact evaluation 3x10" in evaluation["step"] and evaluation["contraction_floor_s"] > 0


@pytest.mark.slow
def test_serving_benchmark_smoke(tmp_path):
    """In process (`tf.saved_model.load` of the exported model): no `tensorflow_model_server`
    is needed, so nothing is skipped."""
    from tf_ama.core.blocks import outcome_block_size

    benchmark = _load("serving_benchmark")
    out = tmp_path / "serving.json"
    results = benchmark.main(["--menu-sizes", "16", "8", "--train-steps", "2",
                              "--prune-samples", "200", "--calls", "3",
                              "--throughput-calls", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["machine"]["cores"] == os.cpu_count()
    runs = results["runs"]
    assert [(run["menu"].split()[0], run["variant"]) for run in runs] == [
        ("additive_2x2_uniform", "full"), ("additive_2x2_uniform", "pruned"),
        ("additive_3x10_uniform", "full"), ("additive_3x10_uniform", "pruned")]
    assert [runs[0]["menu_size"], runs[2]["menu_size"]] == [16, 8]
    bidders = {"additive_2x2_uniform": 2, "additive_3x10_uniform": 3}
    for full, pruned in (runs[:2], runs[2:]):
        assert 1 <= pruned["menu_size"] <= full["menu_size"]
    for run in runs:
        assert run["micro_batch_size"] == outcome_block_size(
            bidders[run["menu"].split()[0]], run["menu_size"])
        assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"]
        assert _finite(run["throughput_profiles_per_s"]) and run["throughput_profiles_per_s"] > 0


@pytest.mark.slow
def test_recipe_runs_smoke(tmp_path, monkeypatch, _in_process_tf_ama):
    benchmark = _load("recipe_runs", monkeypatch)
    out, table = tmp_path / "recipes", tmp_path / "recipes.md"
    # Row 3: additive_2x2_uniform --menu deterministic (annealing and the polish).
    lines = benchmark.main(["--out", str(out), "--rows", "3", "--seeds", "0",
                            "--table", str(table), "--", *TINY_TRAIN])
    run = out / "additive_2x2_uniform-menu-deterministic" / "seed-0"
    assert _in_process_tf_ama == [["train", "additive_2x2_uniform", "--menu", "deterministic",
                                   "--seed", "0", *TINY_TRAIN, "--out", str(run)]]
    assert table.read_text() == "\n".join(lines) + "\n" and len(lines) == 3
    revenue = _read(run)["revenue"]
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[:4] == ["`additive_2x2_uniform`", "--menu deterministic",
                         f"**{revenue:.4f}** ({revenue:.4f} / {revenue:.4f})", f"{revenue:.4f}"]
    assert cells[4] == f"0.865 (0.8673): {'met' if revenue >= 0.865 else 'MISSED'}, goal " \
                       f"{'met' if revenue >= 0.8673 else 'missed'}"
    assert cells[5] == f"{_read(run, 'seconds.json') / 60:.1f} (10)"
    # Finished runs are only read: a second call runs nothing and gives the same table.
    assert benchmark.main(["--out", str(out), "--rows", "3", "--seeds", "0"]) == lines
    assert len(_in_process_tf_ama) == 1


@pytest.fixture(scope="module")
def separable_runs(tmp_path_factory):
    """benchmarks/separable_runs.py on additive_2x2_uniform, seed 0, tiny: `(its table's
    lines, OUT, the tf-ama argv it ran)`."""
    out = tmp_path_factory.mktemp("separable")
    with pytest.MonkeyPatch.context() as monkeypatch, \
            _tf_ama_in_process(monkeypatch) as commands:
        benchmark = _load("separable_runs", monkeypatch)
        lines = benchmark.main(["--out", str(out), "--settings", "additive_2x2_uniform",
                                "--seeds", "0", "--separable-steps", "2", "--", *TINY_TRAIN,
                                "--menu-size", "8", "--joint-steps", "2"])
    return lines, out, commands


@pytest.mark.slow
def test_separable_runs_smoke(separable_runs):
    lines, out, commands = separable_runs
    assert [argv[1:4] for argv in commands] == [
        ["additive_2x2_uniform", "--menu", "separable"],
        ["additive_2x2_uniform", "--menu", "lottery+separable"]]
    assert len(lines) == 3
    separable = _read(out / "additive_2x2_uniform" / "separable-0")
    joined = _read(out / "additive_2x2_uniform" / "lottery+separable-0")
    lottery = _read(out / "additive_2x2_uniform" / "lottery+separable-0" / "lottery")
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[:7] == [
        "`additive_2x2_uniform`", f"{separable['revenue']:.4f}", f"{lottery['revenue']:.4f}",
        f"**{joined['revenue']:.4f}**", f"{joined['family_share']:.0%}",
        f"{joined['baselines']['separate_myerson']['revenue']:.4f}",
        f"{joined['baselines']['vcg']['revenue']:.4f}"]
    assert all(_finite(r["revenue"]) and r["revenue"] >= 0 for r in (separable, joined, lottery))


@pytest.mark.slow
def test_separable_join_smoke(separable_runs):
    # A finished lottery run: the lottery phase of the joined run above (`RUN/lottery`).
    lottery_run = str(separable_runs[1] / "additive_2x2_uniform" / "lottery+separable-0"
                      / "lottery")
    benchmark = _load("separable_join")
    report = benchmark.main([lottery_run, "--samples", "300"])
    assert (report["run"], report["setting"], report["menu_size"]) == (
        lottery_run, "additive_2x2_uniform", 8)
    for name in ("lottery_alone", "family_alone", "joined"):
        assert _finite(report[name]["revenue"], report[name]["stderr"])
        assert report[name]["revenue"] >= 0 and report[name]["stderr"] > 0
    assert report["family_alone"]["family_share"] == 1.0
    assert 0 <= report["joined"]["family_share"] <= 1
    # The shift is the best one on the validation sample.
    by_shift = report["validation_by_shift"]
    assert len(by_shift) > 1 and report["shift_chosen_on_validation"] in by_shift
    assert by_shift[report["shift_chosen_on_validation"]] == max(by_shift.values())


@pytest.mark.slow
def test_contextual_runs_smoke(tmp_path, monkeypatch, _in_process_tf_ama):
    """Row 0 (contextual_a on 2x5), seed 0, tiny; its lottery AMA without contexts, tiny; and
    the transfer job with one row whose "unseen" size is the row's own: the same code path
    (train the size unless its run is there, `tf-ama evaluate --sizes`, the table) without a
    second contextual training (each costs tens of seconds here)."""
    benchmark = _load("contextual_runs", monkeypatch)
    out = str(tmp_path / "contextual")
    benchmark.main(["--out", out, "--jobs", "contextual", "--rows", "0", "--seeds", "0",
                    "--", *TINY_CONTEXTUAL])
    row = benchmark.row_dir(out, "contextual_a", "2x5", 0)
    lottery = benchmark.lottery_without_contexts(
        "contextual_a", "2x5", 0, os.path.join(row, "lottery"), menu_size=8, profiles=256,
        batch_size=64, epochs=1, steps_per_epoch=2, evaluation_samples=100)
    assert _finite(lottery["revenue"], lottery["revenue_stderr"]) and lottery["revenue"] >= 0
    monkeypatch.setattr(benchmark, "TRANSFER", (("contextual_a", "2x5", "2x5", 0),))
    table = tmp_path / "contextual.md"
    text = benchmark.main(["--out", out, "--jobs", "transfer", "--transfer-samples", "100",
                           "--table", str(table), "--", *TINY_CONTEXTUAL])
    assert _in_process_tf_ama == [
        ["train", "contextual_a", "--sizes", "2x5", "--seed", "0", *TINY_CONTEXTUAL, "--out",
         row],
        ["evaluate", row, "--sizes", "2x5", "--json", "--samples", "100"]]
    assert table.read_text() == text + "\n"

    report = _read(row)["2x5"]
    lines = text.splitlines()
    (first,) = [line for line in lines if line.startswith("| contextual_a | --sizes 2x5 |")]
    cells = [cell.strip() for cell in first.strip("|").split("|")]
    assert cells[2:7] == [
        f"**{report['revenue']:.4f}** ({report['revenue']:.4f})", f"{report['myerson']:.4f}",
        f"{report['gain']:+.4f} ± {report['gain_stderr']:.4f}", f"{report['vcg']:.4f}",
        f"{lottery['revenue']:.4f}"]
    assert cells[7] == f"{_read(row, 'seconds.json') / 60:.1f}"
    transfer = _read(row, "transfer.json")["2x5"]
    assert all(_finite(transfer[key]) for key in ("revenue", "vcg", "myerson"))
    assert f"| contextual_a | 2x5 | 2x5 | {transfer['revenue']:.4f} | {transfer['vcg']:.4f} | " \
           f"{transfer['myerson']:.4f} | {report['revenue']:.4f} | " \
           f"{transfer['revenue'] - report['revenue']:+.4f} |" in lines


@pytest.mark.slow
def test_contextual_defaults_smoke(tmp_path, monkeypatch, _in_process_tf_ama):
    """The defaults job (issue 32) on one tiny run, with one unseen size: the run, `tf-ama
    evaluate --sizes` of the unseen one, and the per-size table; then the alone job, whose
    size-trained run the table puts beside the mixture's row."""
    benchmark = _load("contextual_runs", monkeypatch)
    monkeypatch.setattr(benchmark, "DEFAULTS", (("contextual_a", (0,)),))
    monkeypatch.setattr(benchmark, "UNSEEN", {"contextual_a": "2x3"})
    out = str(tmp_path / "contextual")
    flags = [*TINY_CONTEXTUAL, "--sizes", "2x2"]
    text = benchmark.main(["--out", out, "--jobs", "defaults", "--transfer-samples", "100",
                           "--", *flags])
    run = benchmark.row_dir(out, "contextual_a", "defaults", 0)
    assert _in_process_tf_ama == [
        ["train", "contextual_a", "--seed", "0", *flags, "--out", run],
        ["evaluate", run, "--sizes", "2x3", "--json", "--samples", "100"]]
    reports, unseen = _read(run), _read(run, "unseen.json")
    selection = _read(run, "selection.json")
    lines = [line for line in text.splitlines() if line.startswith("| contextual_a | 2x")]
    assert len(lines) == 2
    for line, (size, report, seen) in zip(lines, [("2x2", reports["2x2"], "yes"),
                                                   ("2x3", unseen["2x3"], "no")]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        served = "M" if size in selection["myerson_sizes"] or selection["kept"] == "myerson" \
            else "t"
        assert cells[1:7] == [
            size, seen, f"**{report['revenue']:.4f}** ({report['revenue']:.4f})",
            f"{report['myerson']:.4f}", f"{report['gain']:+.4f} ± {report['gain_stderr']:.4f}",
            served if seen == "yes" else "-"]
        assert cells[7] == "-"  # no size-trained run yet

    # The alone job trains the seen size by itself; the table puts it beside the mixture.
    _in_process_tf_ama.clear()
    text = benchmark.main(["--out", out, "--jobs", "alone", "--sizes", "2x2", "2x3",
                           "--", *TINY_CONTEXTUAL])
    alone = benchmark.row_dir(out, "contextual_a", "2x2", 0)
    assert _in_process_tf_ama == [  # 2x3 is not a size contextual_a trains: skipped
        ["train", "contextual_a", "--sizes", "2x2", "--seed", "0", *TINY_CONTEXTUAL, "--out",
         alone]]
    (line,) = [line for line in text.splitlines() if line.startswith("| contextual_a | 2x2 |")]
    revenue, mixture = _read(alone)["2x2"]["revenue"], reports["2x2"]["revenue"]
    assert line.split("|")[8].strip() == f"{revenue:.4f} ({mixture / revenue - 1:+.1%})"


@pytest.mark.slow
def test_bundle_discount_smoke():
    """The table of the untrained bundles' discount: one size, two discounts, tiny; each cell
    is `evaluate_contextual` of that menu; at 0 the menu is per-context Myerson's outcome."""
    benchmark = _load("bundle_discount")
    text = benchmark.main(["--sizes", "contextual_b:3x2", "--discounts", "0", "0.3",
                           "--samples", "300", "--seed", "5"])
    reports = benchmark.measure("contextual_b", "3x2", [0.0, 0.3], 300, 5)
    cells = [cell.strip() for cell in text.splitlines()[-1].strip("|").split("|")]
    assert cells[:3] == ["contextual_b", "3x2", f"{reports[0.0].myerson:.4f}"]
    assert cells[3:] == [f"{r.revenue:.4f} ({r.gain:+.4f} ± {r.gain_stderr:.4f})"
                         for r in reports.values()]
    assert abs(reports[0.0].gain) <= 1e-12 and reports[0.3].gain != 0.0


def test_boost_structure_fits_a_menu_whose_boosts_are_in_the_family():
    """A deterministic 2x2 menu at separate Myerson is item-separable: both fits give its
    boosts and its exact revenue back. Boosts with a price per bundle size are only in the
    larger family: the separable fit misses them (and earns otherwise), the bundle-size fit
    does not."""
    benchmark = _load("boost_structure")
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu="deterministic")
    rng = np.random.default_rng(0)
    validation, evaluation = rng.uniform(size=(2, 2000, 2, 2))
    start = benchmark.structure(model, validation, evaluation)
    for name in ("separable", "bundle sizes"):
        assert start[name]["rms_residual"] < 1e-6
        assert start[name]["revenue"] == pytest.approx(start["trained"]["revenue"], abs=1e-9)
    allocations = model.menu_layer.allocations.numpy()
    owner = benchmark.owners(allocations)
    np.testing.assert_array_equal(owner[0], [2, 2])  # the empty entry: both items kept
    assert sorted(map(tuple, owner)) == sorted(itertools.product(range(3), repeat=2))
    counts = (owner < 2).sum(axis=1)  # items sold; a price of 0.3 for selling both
    boosts = model.menu_layer.boosts.numpy() - 0.3 * (counts[1:] == 2)
    model.menu_layer.boosts.assign(boosts.astype(np.float32))
    priced = benchmark.structure(model, validation, evaluation)
    assert priced["bundle sizes"]["rms_residual"] < 1e-6 < priced["separable"]["rms_residual"]
    assert priced["bundle sizes"]["revenue"] == pytest.approx(priced["trained"]["revenue"],
                                                              abs=1e-6)
    assert abs(priced["separable"]["revenue"] - priced["trained"]["revenue"]) > 1e-4


@pytest.mark.parametrize("num_bidders,num_items,scale", [
    (2, 3, 1.0), (3, 2, 1e-3), (2, 4, 1e3), (1, 3, 1.0), (3, 3, 10.0)])
def test_bundle_size_payments_are_the_enumerated_amas(num_bidders, num_items, scale):
    """The dynamic program's payments are `tf_ama.exact_outcome`'s on the menu of every 0/1
    allocation with the family's boost `sum_j c[o_j, j] + sum_o g[o, k_o]`."""
    benchmark = _load("bundle_size_search")
    rng = np.random.default_rng(num_bidders * 10 + num_items)
    c = rng.normal(scale=0.3 * scale, size=(num_bidders + 1, num_items))
    g = rng.normal(scale=0.3 * scale, size=(num_bidders + 1, num_items + 1))
    g[:, 0] = 0.0
    values = rng.uniform(high=scale, size=(200, num_bidders, num_items))
    allocations = tf_ama.deterministic_allocations(num_bidders, num_items, "additive")
    owner = np.where(allocations.sum(axis=1) > 0.5, allocations.argmax(axis=1), num_bidders)
    counts = np.stack([(owner == o).sum(axis=1) for o in range(num_bidders + 1)], axis=1)
    boosts = (c[owner, np.arange(num_items)].sum(axis=1)
              + g[np.arange(num_bidders + 1), counts].sum(axis=1))
    exact = tf_ama.exact_outcome(values, allocations, boosts, np.ones(num_bidders))
    np.testing.assert_allclose(benchmark.payments(values, c, g), exact["payments"].numpy(),
                               rtol=1e-9, atol=1e-12 * scale)


def test_a_count_vector_member_is_the_enumerated_ama():
    """`--family count-vectors`: the boost `G` of each sorted count vector, the same for the
    two orders of the bidders, served by the dynamic program as `tf_ama.exact_outcome` serves
    the listed menu; at `G = sum_o g[o, k_o]` it is the bundle-size member."""
    benchmark = _load("bundle_size_search")
    rng = np.random.default_rng(5)
    reserves = np.array([0.5, 0.4, 0.6])
    tables = benchmark.count_states(2, 3)
    classes, _ = benchmark.count_classes(tables[0])
    assert classes[0] == (0, 0) and len(classes) == benchmark.parameters(2, 3, "count-vectors")
    theta = np.r_[0.1, rng.normal(scale=0.3, size=len(classes) - 1)]
    values = rng.uniform(size=(200, 2, 3))

    def served(theta, family):  # the dynamic program's payments
        c, terminal = benchmark.member(theta, reserves, tables, family)
        return benchmark.payments(values, c, None, tables, terminal)

    allocations = tf_ama.deterministic_allocations(2, 3, "additive")
    held = allocations.sum(axis=2).astype(int)  # [K, 2]: each bidder's item count
    boosts = ((1 - allocations.sum(axis=1)) @ (reserves + 0.1)
              + np.r_[0.0, theta[1:]][[classes.index(tuple(sorted(k))) for k in held]])
    exact = tf_ama.exact_outcome(values, allocations, boosts, np.ones(2))
    np.testing.assert_allclose(served(theta, "count-vectors"), exact["payments"].numpy(),
                               rtol=1e-9, atol=1e-12)
    sizes = np.r_[0.1, 0.2, -0.1, 0.3, -0.2, 0.1, 0.4]  # shift, g of a bidder, of nobody
    np.testing.assert_allclose(
        served(benchmark.as_count_vectors(sizes, reserves, tables), "count-vectors"),
        served(sizes, "bundle-sizes"), rtol=1e-12, atol=1e-12)


def test_bundle_size_search_starts_at_separate_myerson_and_only_climbs(capsys):
    """With g = 0 the symmetric member is separate Myerson (`exact_outcome` with the
    item-separable family); the search's revenue never falls below its start."""
    benchmark = _load("bundle_size_search")
    values = np.random.default_rng(3).uniform(size=(300, 2, 3))
    reserves = np.array([0.5, 0.4, 0.6])
    c, g = benchmark.symmetric(np.zeros(7), reserves, 2)
    family = np.zeros((3, 3))
    family[2] = reserves
    separate = tf_ama.exact_outcome(values, np.zeros((1, 2, 3)), np.zeros(1), np.ones(2),
                                    family)["payments"].numpy()
    np.testing.assert_allclose(benchmark.payments(values, c, g), separate, atol=1e-12)
    theta, revenue = benchmark.search(values, reserves, [0.3, 0.1], log=lambda line: None)
    assert revenue >= separate.sum(axis=1).mean() - 1e-12
    assert revenue == pytest.approx(benchmark.payments(
        values, *benchmark.symmetric(theta, reserves, 2)).sum(axis=1).mean(), abs=1e-12)
    report = benchmark.main(["additive_2x2_uniform", "--profiles", "200", "--test-profiles",
                             "300", "--steps", "0.3"])
    assert len(report["theta"]) == 5 and report["gain_stderr"] >= 0.0
    assert "additive_2x2_uniform: bundle sizes" in capsys.readouterr().out
    report = benchmark.main(["additive_2x2_uniform", "--profiles", "200", "--test-profiles",
                             "300", "--steps", "0.3", "--family", "count-vectors"])
    assert report["family"] == "count-vectors" and len(report["theta"]) == 4  # shift, 3 G
    _, revenue = benchmark.search(values, reserves, [0.3], log=lambda line: None,
                                  family="count-vectors")
    assert revenue >= separate.sum(axis=1).mean() - 1e-12
    assert "additive_2x2_uniform: count vectors" in capsys.readouterr().out


def test_bundle_sizes_benchmark_smoke(capsys):
    benchmark = _load("bundle_sizes_benchmark")
    [result] = benchmark.main(["--settings", "additive_2x3_uniform", "--profiles", "64",
                               "--batch", "16", "--repeats", "1"])
    assert result["outcome_ratio"][f"block {result['default_block']}"] == 1.0
    assert set(result["step_seconds"]) == {"plain", "XLA"}
    assert all(v > 0 for v in result["outcome_seconds"].values())
    assert "additive_2x3_uniform: exact outcome of 64 profiles" in capsys.readouterr().out


@pytest.mark.slow
def test_data_runs_smoke(tmp_path, _in_process_tf_ama):
    benchmark = _load("data_runs")
    out = tmp_path / "data"
    # A run on data validates and evaluates on its held-out rows (no --samples).
    summary = benchmark.main(["--out", str(out), "--rows", "600", "--", *TINY_TRAIN[:6],
                              "--menu", "lottery", "--menu-size", "8"])
    assert [argv[0] for argv in _in_process_tf_ama] == ["train", "export"]
    assert sum(summary["rows"].values()) == 600 and min(summary["rows"].values()) > 0
    report = _read(out / "run")
    assert summary["test_revenue"] == report["revenue"] and summary["stderr"] > 0
    assert set(summary["baselines"]) == {"vcg", "separate_myerson", "grand_bundle"}
    assert all(_finite(v) for v in summary["baselines"].values())
    assert set(summary["seconds"]) == {"train", "export"} and summary["peak_memory_gb"] >= 0
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "models" / "1" / "saved_model.pb").exists()
    with open(out / "bids.csv") as file:
        assert sum(1 for _ in file) == 1 + 600  # the header, then one profile per row


@pytest.mark.slow
def test_train_step_benchmark_smoke(monkeypatch, capsys):
    """ONE child process (the active set's fused step, as its user runs it) while the plain
    step runs in this process: the script's `main()` with its own parser (`sys.argv` set), so
    that flags it gains keep their defaults here."""
    script = os.path.join(BENCHMARKS, "train_step_benchmark.py")
    child = subprocess.Popen(
        [sys.executable, script, "--setting", "additive_2x2_uniform", "--menu-size", "256",
         "--batch-size", "100", "--steps", "2", "--active-margin", "25"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        benchmark = _load("train_step_benchmark")
        monkeypatch.setattr(sys, "argv", [
            script, "--setting", "additive_2x2_uniform", "--menu-size", "64", "--batch-size",
            "100", "--steps", "2", "--objective", "plain", "--micro-batch-size", "none",
            "--jit-objective", "off"])
        benchmark.main()
        out, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err[-3000:]

    def result(text):
        (line,) = [line for line in text.splitlines() if line.startswith("{")]
        return json.loads(line)

    fused, plain = result(out), result(capsys.readouterr().out)
    assert (fused["setting"], fused["menu_size"], fused["batch_size"]) == (
        "additive_2x2_uniform", 256, 100)
    assert (fused["objective"], fused["active_margin"], fused["trained_menu"]) == (
        "fused", 25.0, False)
    assert 1 <= fused["active_entries"] <= 256
    assert (plain["objective"], plain["menu_size"], plain["micro_batch_size"],
            plain["active_margin"], plain["active_entries"]) == ("plain", 64, None, None, None)
    for row in (fused, plain):
        assert len(row["step_seconds"]) == 2
        assert all(_finite(row[key]) and row[key] > 0
                   for key in ("seconds_per_step", "median_seconds", "peak_gb", "tensor_peak_gb"))
        assert row["tensor_peak_gb"] < row["peak_gb"]  # the tensors are part of the process


@pytest.mark.slow
def test_contextual_evaluation_smoke():
    """The eager / traced table: one size, one tiny sample; both modes ran (the default
    threshold restored after) and gave the same revenue (else `main` raises)."""
    from tf_ama.evaluation import contextual

    threshold = contextual.TRACED_FROM_BLOCKS
    benchmark = _load("contextual_evaluation")
    text = benchmark.main(["--sizes", "contextual_a:2x2", "--samples", "100"])
    cells = [cell.strip() for cell in text.splitlines()[-1].strip("|").split("|")]
    assert cells[:3] == ["contextual_a", "2x2", "100 (1)"]
    assert float(cells[3]) > 0 and float(cells[4]) > 0
    assert float(cells[5]) == pytest.approx(float(cells[3]) / float(cells[4]), abs=0.01)
    assert contextual.TRACED_FROM_BLOCKS == threshold
