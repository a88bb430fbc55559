"""Tests of tf_ama.evaluation.reports: exact reports against the loop-based NumPy oracle, the menu
actually used, pruning, and bad input."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracle import numpy_ama

import tf_ama
from tf_ama.evaluation import reports as evaluation
from tf_ama.evaluation import scanning
from tf_ama.evaluation import usage
from tf_ama.utils import seeds

# Shapes of the house style: 1x1, 1x2, 2x2, 3x1 exponential, 2x4 unit-demand spherical.
TINY_1X1 = tf_ama.Setting("tiny_1x1_uniform", num_bidders=1, num_items=1)
SETTINGS = [TINY_1X1, "additive_1x2_uniform", "additive_2x2_uniform",
            "additive_3x1_exponential", "unit_demand_2x4_spherical"]


def random_model(setting, menu_size=24, seed=0, boost_scale=0.3, log_weights=None):
    """An untrained lottery AMA with random (nonzero) boosts, so that many entries compete,
    and optionally unequal bidder weights `exp(log_weights)`."""
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=menu_size, seed=seed,
                                          learn_bidder_weights=log_weights is not None)
    boosts = np.random.default_rng(seed).normal(size=model.menu_layer.boosts.shape) * boost_scale
    model.menu_layer.boosts.assign(boosts.astype("float32"))
    if log_weights is not None:
        model.bidder_weights_layer.log_weights.assign(np.asarray(log_weights, "float32"))
    return model


def make_model(setting):
    """A model for the parametrized tests: the trained one, a weighted one or a random one."""
    if setting == "weighted_2x2":
        return random_model("additive_2x2_uniform", menu_size=40, log_weights=[0.37, -0.21])
    return random_model(setting, menu_size=40)


def samples(model, num_samples, seed):
    """The profiles `evaluate` uses, drawn the same way."""
    return np.asarray(tf.cast(model.setting.sample(num_samples, seed), tf.float64))


def oracle_report(model, num_samples, seed):
    """Everything `evaluate` reports, from the loop-based oracle on the same profiles."""
    allocations, boosts, bidder_weights, *_ = model.exact_menu()
    outcome = numpy_ama(samples(model, num_samples, seed), allocations, boosts, bidder_weights)
    revenue = outcome["payments"].sum(axis=1)
    used = np.unique(outcome["menu_index"])
    lotteries = [k for k in used
                 if np.any(np.minimum(allocations[k], 1 - allocations[k]) > 0.01)]
    return outcome, dict(
        revenue=revenue.mean(),
        revenue_stderr=revenue.std(ddof=1) / np.sqrt(num_samples),
        revenue_per_bidder=outcome["payments"].mean(axis=0),
        welfare=outcome["values"].sum(axis=1).mean(),
        entries_used=len(used),
        lottery_entries_used=len(lotteries),
    )


def assert_report_matches(report, expected):
    for key in ("revenue", "revenue_stderr", "revenue_per_bidder", "welfare"):
        np.testing.assert_allclose(getattr(report, key), expected[key], rtol=1e-9, atol=1e-12,
                                   err_msg=key)
    assert report.entries_used == expected["entries_used"]
    assert report.lottery_entries_used == expected["lottery_entries_used"]


@pytest.fixture(scope="module")
def trained():
    """A small lottery AMA trained for a few dozen steps on additive_2x2_uniform."""
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=48, seed=0)
    model.compile(keras.optimizers.Adam(0.01))
    model.fit(tf_ama.fresh_valuations(512), epochs=1, steps_per_epoch=30, verbose=0)
    return model


class TestEvaluate:
    @pytest.mark.slow
    def test_trained_model_matches_oracle(self, trained):
        # A block size that does not divide the samples: several blocks and a ragged last one.
        report = evaluation.evaluate(trained, num_samples=1500, seed=5, baselines=False,
                                     micro_batch_size=400)
        _, expected = oracle_report(trained, 1500, 5)
        assert_report_matches(report, expected)
        assert report.ir_violations == 0
        assert report.max_regret <= 1e-9
        assert report.menu_size == 48 and report.num_samples == 1500 and report.seed == 5
        assert report.baselines == {}
        # Training found a few entries out of 48, as in the paper's Table 4.
        assert 1 <= report.entries_used < 48

    @pytest.mark.slow
    def test_micro_batch_size_does_not_change_the_report(self, trained):
        whole = evaluation.evaluate(trained, num_samples=1500, seed=5, baselines=False)
        chunked = evaluation.evaluate(trained, num_samples=1500, seed=5, baselines=False,
                                      micro_batch_size=97)
        assert whole.entries_used == chunked.entries_used
        np.testing.assert_allclose(whole.revenue, chunked.revenue, rtol=1e-12)
        np.testing.assert_allclose(whole.revenue_stderr, chunked.revenue_stderr, rtol=1e-9)

    @pytest.mark.slow
    def test_xla_and_plain_evaluations_agree(self, trained):
        # evaluate's default (XLA) and the served computation (plain): the same entries, the
        # same revenue up to the last bits; the report otherwise identical.
        xla = evaluation.evaluate(trained, num_samples=1500, seed=5, baselines=False)
        plain = evaluation.evaluate(trained, num_samples=1500, seed=5, baselines=False,
                                    jit_compile=False)
        assert xla.entries_used == plain.entries_used
        assert xla.ir_violations == plain.ir_violations == 0
        np.testing.assert_allclose(xla.revenue, plain.revenue, rtol=1e-12)
        np.testing.assert_allclose(xla.revenue_per_bidder, plain.revenue_per_bidder, rtol=1e-12)
        assert ([e.index for e in usage.menu_usage(trained, 1500, seed=5)]
                == [e.index for e in usage.menu_usage(trained, 1500, seed=5,
                                                           jit_compile=False)])

    @pytest.mark.parametrize("setting", SETTINGS + ["weighted_2x2"],
                             ids=lambda s: getattr(s, "name", s))
    @pytest.mark.slow
    def test_ir_and_zero_regret_on_every_shape(self, setting):
        model = make_model(setting)
        report = evaluation.evaluate(model, num_samples=600, seed=2, baselines=False,
                                     micro_batch_size=250)
        assert report.ir_violations == 0
        assert report.max_regret <= 1e-9
        assert len(report.revenue_per_bidder) == model.setting.num_bidders
        _, expected = oracle_report(model, 600, 2)
        assert_report_matches(report, expected)

    @pytest.mark.slow
    def test_ties_and_deterministic_menu(self):
        # Entries 1 and 2 are identical (same allocation and boost): ties go to entry 1.
        setting = tf_ama.get_setting("additive_1x2_uniform")
        allocations = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[1.0, 1.0]], [[1.0, 0.0]]])
        boosts = np.array([0.0, -0.8, -0.8, -0.45])
        model = tf_ama.AffineMaximizerAuction.from_menu(setting, allocations, boosts, [1.0])
        report = evaluation.evaluate(model, num_samples=2000, seed=3, baselines=False)
        used = usage.menu_usage(model, num_samples=2000, seed=3)
        assert 2 not in [entry.index for entry in used]
        assert report.entries_used == len(used) == 3
        assert report.lottery_entries_used == 0
        _, expected = oracle_report(model, 2000, 3)
        assert_report_matches(report, expected)

    def test_report_serializes_and_formats(self, trained):
        report = evaluation.evaluate(trained, num_samples=500, seed=1, baselines=False)
        payload = json.loads(json.dumps(report.to_dict()))
        assert payload["revenue"] == report.revenue
        assert payload["setting"] == "additive_2x2_uniform"
        table = report.format_table()
        assert f"{report.revenue:.4f}" in table and "IR violations" in table
        with pytest.raises(dataclasses.FrozenInstanceError):
            report.revenue = 0.0

    def test_baselines_are_reported(self, trained):
        report = evaluation.evaluate(trained, num_samples=2000, seed=1, baselines=True)
        assert {"vcg", "separate_myerson", "grand_bundle"} <= set(report.baselines)
        assert all("revenue" in result for result in report.baselines.values())
        json.dumps(report.to_dict())
        assert "vcg" in report.format_table()


class TestMenuUsage:
    @pytest.mark.slow
    def test_counts_match_oracle(self, trained):
        entries = usage.menu_usage(trained, num_samples=1500, seed=5, micro_batch_size=333)
        outcome, _ = oracle_report(trained, 1500, 5)
        counts = np.bincount(outcome["menu_index"], minlength=trained.menu_size)
        assert {entry.index: entry.count for entry in entries} == {
            int(k): int(counts[k]) for k in np.flatnonzero(counts)}
        assert [entry.count for entry in entries] == sorted(
            (entry.count for entry in entries), reverse=True)
        assert sum(entry.share for entry in entries) == pytest.approx(1.0)
        allocations, boosts, *_ = trained.exact_menu()
        for entry in entries:
            np.testing.assert_array_equal(entry.allocation, allocations[entry.index])
            assert entry.boost == boosts[entry.index]
            assert entry.is_lottery == scanning.is_lottery(allocations[entry.index])

    def test_table_lists_the_entries_in_order(self, trained):
        entries = usage.menu_usage(trained, num_samples=1000, seed=5)
        table = usage.format_menu_table(entries)
        rows = [line.split() for line in table.splitlines()[1:] if line.split()[0].isdigit()]
        assert [int(row[1]) for row in rows] == [entry.index for entry in entries]
        short = usage.format_menu_table(entries, max_entries=1)
        assert "more entries" in short or len(entries) == 1


class TestPrune:
    @pytest.mark.parametrize("setting", SETTINGS + ["weighted_2x2", "trained"],
                             ids=lambda s: getattr(s, "name", s))
    @pytest.mark.slow
    def test_same_outcomes_on_the_pruning_samples(self, setting, trained):
        model = trained if setting == "trained" else make_model(setting)
        pruned = usage.prune(model, num_samples=1200, seed=4)
        kept = pruned.kept_indices
        assert kept[0] == 0 and np.all(np.diff(kept) > 0)
        assert pruned.menu_size == len(kept) <= model.menu_size
        used = {entry.index for entry in usage.menu_usage(model, 1200, seed=4)}
        assert used <= set(kept.tolist())
        allocations, boosts, bidder_weights, *_ = model.exact_menu()
        pruned_allocations, pruned_boosts, pruned_weights, *_ = pruned.exact_menu()
        np.testing.assert_array_equal(pruned_allocations, allocations[kept])
        np.testing.assert_array_equal(pruned_boosts, boosts[kept])
        np.testing.assert_array_equal(pruned_weights, bidder_weights)

        bids = tf.constant(samples(model, 1200, 4))
        full, small = model(bids), pruned(bids)
        np.testing.assert_array_equal(kept[small["menu_index"].numpy()], full["menu_index"])
        np.testing.assert_array_equal(small["allocation"], full["allocation"])
        # Bit-identical where TF's einsum gives the same floats for a sub-menu (measured:
        # up to 3 items); with 4+ items its GEMM kernel may differ in the last bit.
        if model.setting.num_items <= 3:
            np.testing.assert_array_equal(small["payments"], full["payments"])
        else:
            np.testing.assert_allclose(small["payments"], full["payments"], rtol=0, atol=1e-12)

    @pytest.mark.slow
    def test_fresh_samples_revenue_ir_and_regret(self, trained):
        pruned = usage.prune(trained, num_samples=3000, seed=4)
        full = evaluation.evaluate(trained, num_samples=2000, seed=11, baselines=False)
        small = evaluation.evaluate(pruned, num_samples=2000, seed=11, baselines=False)
        assert abs(small.revenue - full.revenue) <= 3 * full.revenue_stderr
        assert small.ir_violations == 0 and small.max_regret <= 1e-9
        assert small.menu_size < full.menu_size

    @pytest.mark.slow
    def test_counterfactual_entries_are_kept(self):
        # Two unit-demand bidders on the spherical distribution: the entries that set
        # payments (argmax of W_-i) are mostly never chosen; keeping only the chosen ones
        # would change payments. `prune` keeps them, so payments stay the same.
        model = random_model("unit_demand_2x4_spherical", menu_size=64, seed=3, boost_scale=0.0)
        used = sorted({0} | {e.index for e in usage.menu_usage(model, 1000, seed=4)})
        pruned = usage.prune(model, num_samples=1000, seed=4)
        assert len(pruned.kept_indices) > len(used)
        allocations, boosts, bidder_weights, *_ = model.exact_menu()
        chosen_only = tf_ama.AffineMaximizerAuction.from_menu(
            model.setting, allocations[used], boosts[used], bidder_weights)
        bids = tf.constant(samples(model, 1000, 4))
        full = model(bids)["payments"].numpy()
        assert np.abs(chosen_only(bids)["payments"].numpy() - full).max() > 1e-3
        np.testing.assert_allclose(pruned(bids)["payments"], full, rtol=0, atol=1e-12)


class TestBadInput:
    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    @pytest.mark.parametrize("num_samples", [0, -3, 2.5, True])
    def test_num_samples(self, function, num_samples):
        model = random_model("additive_1x2_uniform", menu_size=4)
        with pytest.raises(ValueError, match="num_samples"):
            function(model, num_samples=num_samples)

    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    def test_not_a_model(self, function):
        with pytest.raises(TypeError, match="`model` must be a tf_ama.AffineMaximizerAuction"):
            function("additive_2x2_uniform", num_samples=10)

    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    def test_jit_compile(self, function):
        model = random_model("additive_1x2_uniform", menu_size=4)
        with pytest.raises(ValueError, match="`jit_compile` must be True or False"):
            function(model, num_samples=10, jit_compile=1)

    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    @pytest.mark.parametrize("micro_batch_size", [0, 2.5, True])
    def test_micro_batch_size(self, function, micro_batch_size):
        model = random_model("additive_1x2_uniform", menu_size=4)
        with pytest.raises(ValueError, match="`micro_batch_size` must be None or an int >= 1"):
            function(model, num_samples=10, micro_batch_size=micro_batch_size)

    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    @pytest.mark.parametrize("seed", [-1, 2**31, 1.0, (1, 2), True])
    def test_seed(self, function, seed):
        model = random_model("additive_1x2_uniform", menu_size=4)
        with pytest.raises(ValueError, match="`seed` must be an int in"):
            function(model, num_samples=10, seed=seed)


class TestDefaultsAndDeprecations:
    """The seeds of `tf_ama.utils.seeds` by default; `chunk_size`, the old name of
    `micro_batch_size`, still works (with a DeprecationWarning) and changes nothing."""

    @pytest.mark.slow
    def test_evaluate_and_menu_usage_default_to_the_evaluation_seed(self):
        model = random_model("additive_2x2_uniform", menu_size=16, seed=7)
        default = evaluation.evaluate(model, num_samples=300, baselines=False)
        explicit = evaluation.evaluate(model, num_samples=300, seed=9, baselines=False)
        assert default.seed == 9 == seeds.evaluation_seed(model.seed)
        assert default == explicit
        assert (usage.menu_usage(model, num_samples=300)
                == usage.menu_usage(model, num_samples=300, seed=9))

    def test_prune_defaults_to_the_validation_seed(self):
        model = random_model("additive_2x2_uniform", menu_size=64, seed=3)
        default = usage.prune(model, num_samples=20)
        np.testing.assert_array_equal(
            default.kept_indices, usage.prune(model, num_samples=20, seed=4).kept_indices)
        assert seeds.validation_seed(model.seed) == 4
        # Not the evaluation seed: on this menu the two samples keep different entries.
        assert not np.array_equal(
            default.kept_indices, usage.prune(model, num_samples=20, seed=5).kept_indices)

    def test_a_loaded_model_with_seed_0_is_evaluated_on_seed_2(self):
        model = tf_ama.AffineMaximizerAuction.from_menu(
            "additive_1x2_uniform", np.array([[[0.0, 0.0]], [[1.0, 1.0]]]), np.zeros(2), [1.0])
        assert model.seed == 0
        assert evaluation.evaluate(model, num_samples=100, baselines=False).seed == 2

    @pytest.mark.parametrize("function", [evaluation.evaluate, usage.menu_usage,
                                          usage.prune])
    def test_chunk_size_is_a_deprecated_name_of_micro_batch_size(self, function):
        model = random_model("additive_2x2_uniform", menu_size=16)
        options = dict(num_samples=300, seed=4, jit_compile=False)
        if function is evaluation.evaluate:
            options["baselines"] = False
        with pytest.warns(DeprecationWarning, match="`chunk_size` is deprecated") as warned:
            old = function(model, chunk_size=7, **options)
        assert warned[0].filename == __file__  # points at the caller
        new = function(model, micro_batch_size=7, **options)
        if function is usage.prune:
            np.testing.assert_array_equal(old.kept_indices, new.kept_indices)
            np.testing.assert_array_equal(old.exact_menu()[0], new.exact_menu()[0])
        else:
            assert old == new
        with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="only"):
            function(model, chunk_size=7, micro_batch_size=7, **options)


def block_profiles(setting, num_samples, seed, block):
    """The oracle of `settings.sample_blocks` with `block` profiles per block: block 0 drawn
    with `seed`, block b > 0 with the stateless seed (b, seed), concatenated."""
    sizes = [min(block, num_samples - start) for start in range(0, num_samples, block)]
    return np.concatenate([np.asarray(setting.sample(size, seed if b == 0 else (b, seed)),
                                      np.float64) for b, size in enumerate(sizes)])


class TestStreaming:
    """`evaluate` draws `settings.sample_blocks` block by block and re-cuts it into calls."""

    def test_sample_blocks_follow_the_block_rule(self, monkeypatch):
        setting = tf_ama.get_setting("additive_2x2_uniform")
        assert tf_ama.data.settings.sample_block_size(tf_ama.get_setting("additive_3x10_uniform")) \
            == 279_620
        monkeypatch.setattr(tf_ama.data.settings, "SAMPLE_BLOCK_ELEMENTS", 4 * 300)
        blocks = list(tf_ama.data.settings.sample_blocks(setting, 700, 5))
        assert [len(block) for block in blocks] == [300, 300, 100]
        assert all(block.dtype == np.float64 for block in blocks)
        np.testing.assert_array_equal(blocks[0], samples(random_model(setting), 300, 5))
        np.testing.assert_array_equal(np.concatenate(blocks),
                                      block_profiles(setting, 700, 5, 300))

    def test_streaming_equals_the_blocks_evaluated_in_one_go(self, monkeypatch):
        # 300 profiles per sample block, 512 per call: calls straddle the blocks.
        model = random_model("additive_2x2_uniform", menu_size=40, seed=2)
        monkeypatch.setattr(tf_ama.data.settings, "SAMPLE_BLOCK_ELEMENTS", 4 * 300)
        report = evaluation.evaluate(model, num_samples=1000, seed=6, micro_batch_size=64,
                                     jit_compile=False)
        bids = block_profiles(model.setting, 1000, 6, 300)
        outcome = tf_ama.exact_outcome(bids, *model.menu(tf.float64))
        revenue = outcome["payments"].numpy().sum(axis=1)
        np.testing.assert_allclose(report.revenue, revenue.mean(), rtol=1e-13)
        np.testing.assert_allclose(report.revenue_stderr,
                                   revenue.std(ddof=1) / np.sqrt(1000), rtol=1e-9)
        np.testing.assert_allclose(report.revenue_per_bidder,
                                   outcome["payments"].numpy().mean(axis=0), rtol=1e-13)
        allocations, boosts, bidder_weights, *_ = model.exact_menu()
        oracle = numpy_ama(bids, allocations, boosts, bidder_weights)
        np.testing.assert_array_equal(outcome["menu_index"], oracle["menu_index"])
        assert report.entries_used == len(np.unique(oracle["menu_index"]))
        counts = np.bincount(oracle["menu_index"], minlength=model.menu_size)
        assert {e.index: e.count for e in usage.menu_usage(model, 1000, seed=6)} == {
            int(k): int(counts[k]) for k in np.flatnonzero(counts)}
        # The baselines are computed on the same profiles (paired).
        from tf_ama.evaluation import baselines as baseline_auctions

        vcg = baseline_auctions.vcg_revenues(bids, "additive")
        assert report.baselines["vcg"]["revenue"] == pytest.approx(vcg.mean(), rel=0, abs=1e-12)


class TestConfidenceInterval:
    def test_arithmetic(self):
        assert evaluation.Z_95 == pytest.approx(1.959963984540054, rel=0, abs=1e-15)
        low, high = evaluation.confidence_interval(2.0, 0.5)
        assert (low, high) == (2.0 - 0.5 * evaluation.Z_95, 2.0 + 0.5 * evaluation.Z_95)
        assert evaluation.confidence_interval(1.0, 0.1, z=1.0) == [0.9, 1.1]

    def test_report_and_table(self, trained):
        report = evaluation.evaluate(trained, num_samples=800, seed=3, baselines=False)
        low, high = report.revenue_ci95
        assert [low, high] == evaluation.confidence_interval(report.revenue,
                                                             report.revenue_stderr)
        assert high - low == pytest.approx(2 * 1.959963984540054 * report.revenue_stderr)
        assert f"(standard error; 95% CI [{low:.4f}, {high:.4f}])" in report.format_table()
        assert json.loads(json.dumps(report.to_dict()))["revenue_ci95"] == [low, high]


def test_progress_bar_goes_to_stderr(capsys):
    model = random_model("additive_2x2_uniform", menu_size=8)
    evaluation.evaluate(model, num_samples=500, seed=1)
    out, err = capsys.readouterr()  # off by default
    assert out == "" and "Exact evaluation" not in err
    evaluation.evaluate(model, num_samples=500, seed=1, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Exact evaluation of additive_2x2_uniform on 500 profiles" in err
    assert "500/500" in err and "Baselines of additive_2x2_uniform" in err
    with pytest.raises(ValueError, match="`progress` must be True or False"):
        evaluation.evaluate(model, num_samples=10, progress=1)


@pytest.mark.slow
def test_memory_benchmark_smoke(tmp_path):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "evaluation_memory.py")
    spec = importlib.util.spec_from_file_location("evaluation_memory", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    rows = benchmark.main(["--setting", "additive_1x2_uniform", "--menu-size", "8",
                           "--samples", "300", "--outcomes", "npz",
                           "--run-dir", str(tmp_path / "run"), "--json"])
    (row,) = rows
    # The benchmark reports what it measured (its values are for benchmarks/README.md).
    assert row["samples"] == 300 and {"peak_rss_gb", "seconds"} <= set(row)
    assert row["revenue_ci95"][0] <= row["revenue"] <= row["revenue_ci95"][1]
    assert row["outcomes_bytes"] > 300 * 8 * 4 and set(row["baselines"]) == {
        "vcg", "separate_myerson", "grand_bundle"}


def test_baselines_beyond_the_reserve_searchs_work_are_refused_before_the_models_pass(
        tmp_path, monkeypatch):
    """evaluate --samples 10**15 ran the model over every profile before the baselines
    refused the same size."""
    from tf_ama.data import reserves

    monkeypatch.setattr(reserves, "MAX_RESERVE_DRAWS", 100)
    model = tf_ama.AffineMaximizerAuction("additive_2x2_uniform", menu_size=4)
    with pytest.raises(ValueError, match=r"reserve search would draw 400 values"):
        tf_ama.evaluate(model, num_samples=100, outcomes=tmp_path / "o.npz")
    assert not os.listdir(tmp_path)
