"""Recipes (tf_ama.training.recipes), restarts and the polish in a training run (tf_ama.train_run),
and `tf-ama train --recipe`."""

import inspect
import json
import os

import numpy as np
import pytest
from interrupt import Stop, StopAt

import tf_ama
from tf_ama.core import bundle_sizes
from tf_ama.training import recipes, runs
from tf_ama.cli.app import build_parser, main
from tf_ama.training.run import RESTARTS, TrainingConfig, train_run

SETTING = "additive_2x2_uniform"
KWARGS = {"menu": "lottery", "menu_size": 16, "seed": 3, "boost_init_scale": 0.5}
RESTARTING = TrainingConfig(steps=60, steps_per_epoch=20, batch_size=256,
                            validation_samples=1000, restarts=3, final_temperature=300.0,
                            anneal_fraction=0.34)


@pytest.mark.parametrize("setting,menu,kind", [
    ("additive_3x1_exponential", None, "separable"),
    ("additive_2x2_uniform", None, "lottery+separable"),
    ("additive_3x10_uniform", None, "bundle-sizes"),
    ("additive_5x10_uniform", None, "bundle-sizes"),
    ("additive_5x5_uniform", None, "deterministic"),
    ("additive_2x5_uniform", None, "lottery+bundle-sizes"),
    ("additive_2x3_uniform", None, "lottery+separable"),
    ("additive_2x5_uniform", "lottery+separable", "lottery+separable"),
    ("unit_demand_2x2_uniform", None, "lottery"),
    ("unit_demand_2x4_spherical", None, "lottery"),
    ("additive_2x2_uniform", "deterministic", "deterministic"),
    ("additive_2x2_uniform", "lottery", "lottery"),
])
def test_the_default_recipe_follows_the_settings_kind(setting, menu, kind):
    chosen = recipes.recipe(setting, menu=menu)
    assert chosen.name == "default" and chosen.model["menu"] == kind and chosen.summary
    TrainingConfig(**chosen.training)  # every field is one of TrainingConfig's
    tf_ama.AffineMaximizerAuction(setting, **chosen.model)  # and of the model's


@pytest.mark.parametrize("bidders,items,kind", [
    (2, 6, "lottery+bundle-sizes"),  # 729 allocations: fewer than a lottery menu's 1024
    (4, 2, "lottery+separable"),  # 25 allocations, but 2 items
    (3, 3, "lottery+separable"),  # 64 allocations, 3 items
    (3, 4, "lottery+bundle-sizes"),  # 256 allocations, 4 items
    (2, 7, "deterministic"),  # 2187
    (5, 5, "deterministic"),  # 7776
    (2, 9, "bundle-sizes"),  # 19 683: beyond LARGE_DETERMINISTIC; 55 count vectors
    (10, 5, "bundle-sizes"),  # 161 051 allocations, 3003 count vectors: a large program
    (20, 4, "lottery+separable"),  # 10 626 count vectors: beyond BUNDLE_SIZE_STATES
    (1, 11, "lottery"),  # one bidder: 2048 bundles, but a lottery menu (measured only on 5x5)
])
def test_the_deterministic_menu_then_the_bundle_size_family_are_the_defaults_by_size(
        bidders, items, kind):
    setting = tf_ama.Setting(f"s{bidders}x{items}", bidders, items)
    chosen = recipes.recipe(setting)
    assert chosen.model["menu"] == kind
    if kind == "deterministic":  # large: 1000 steps, no polish, annealed
        assert chosen.training["steps"] == 1000 and not chosen.training["polish"]
        assert chosen.training["final_temperature"] == 1000.0
        assert str((bidders + 1) ** items) in chosen.summary
    if kind == "bundle-sizes":  # fewer, smaller steps above LARGE_PROGRAM count vectors
        states = bundle_sizes.count_state_number(bidders, items)
        large = states > recipes.LARGE_PROGRAM
        assert chosen.training == ({"steps": 200, "batch_size": 128} if large
                                   else {"steps": 600, "batch_size": 512})
        assert f"{states} count vectors" in chosen.summary


def test_a_small_deterministic_menu_is_polished_and_a_large_one_is_not():
    small = recipes.recipe("additive_2x5_uniform", menu="deterministic").training  # 243
    large = recipes.recipe("additive_5x5_uniform", menu="deterministic").training  # 7776
    assert small["polish"] and small["steps"] == 4000
    assert not large["polish"] and large["steps"] == 1000
    assert recipes.POLISHED_DETERMINISTIC < 7776 <= recipes.LARGE_DETERMINISTIC


@pytest.mark.parametrize("setting,temperature", [
    ("additive_2x2_uniform", 100.0), ("unit_demand_2x4_spherical", 100.0),
    ("additive_1x2_uniform_4_16_4_7", 10.0), ("additive_3x1_exponential", 10.0)])
def test_lambda_follows_the_order_of_magnitude_of_the_values(setting, temperature):
    assert recipes.temperature_for(tf_ama.get_setting(setting)) == temperature
    scaled = tf_ama.Setting("scaled", 2, 2, "additive", "uniform",
                            {"low": 0.0, "high": 100.0})
    chosen = recipes.recipe(scaled, menu="deterministic")
    assert chosen.model["temperature"] == 1.0 and chosen.training["final_temperature"] == 10.0
    assert recipes.recipe(scaled, "paper").model["temperature"] == 100.0


@pytest.mark.parametrize("distribution,params,match", [
    ("Pareto", {"concentration": 0.1}, "drew a profile whose values add up to inf"),
    ("uniform", {"low": 3e38, "high": 3.4e38}, r"add up to 1.*e\+39, beyond float32"),
])
def test_values_beyond_float32_are_refused_naming_the_setting(distribution, params, match):
    """They were an OverflowError (a float32 mean of the values) in the default recipe."""
    setting = tf_ama.Setting("huge", 2, 2, "additive", distribution, params)
    with pytest.raises(ValueError, match=rf"setting 'huge': its distribution .*{match}"):
        recipes.temperature_for(setting)


def test_lambda_of_values_near_float32s_largest_is_their_scale(tmp_path):
    """A float64 mean: values whose float32 sum overflows still give their scale."""
    np.save(tmp_path / "big.npy", np.full((300, 2, 2), 5e37))
    setting = tf_ama.empirical_setting("additive_2x2_uniform", str(tmp_path / "big.npy"))
    assert recipes.temperature_for(setting) == 100.0 / 1e38
    wide = tf_ama.Setting("wide", 2, 100_000)  # 10 000 profiles would be 8 GB: one block
    assert recipes.temperature_for(wide) == 100.0


def test_a_discrete_prior_trains_on_its_expectation_with_restarts_and_the_polish():
    training = recipes.recipe("unit_demand_2x4_spherical").training
    assert training["exact_expectation"] and training["restarts"] > 1 and training["polish"]
    deterministic = recipes.recipe("unit_demand_2x4_spherical", menu="deterministic")
    assert deterministic.training["exact_expectation"] and deterministic.training["polish"]


def test_the_paper_recipe_is_the_papers_budget():
    chosen = recipes.recipe("additive_3x10_uniform", "paper")
    assert chosen.model == {"menu": "lottery", "menu_size": 4096, "temperature": 100.0,
                            "active_margin": 25.0}
    assert chosen.training == {"steps": 9000, "batch_size": 2 ** 15, "learning_rate": 0.01}


def test_given_fields_override_the_recipe_and_are_recorded():
    model_kwargs, training, record = recipes.resolve(
        "unit_demand_2x4_spherical", "default", {"menu_size": 64}, {"steps": 40})
    assert model_kwargs["menu_size"] == 64 and model_kwargs["boost_init_scale"] == 1.0
    assert training.steps == 40 and training.restarts == 8
    assert training.steps_per_epoch == 40  # a run shorter than the recipe's epoch is one epoch
    assert record["name"] == "default" and record["overridden"] == ["menu_size", "steps"]
    assert json.loads(json.dumps(record)) == record


@pytest.mark.parametrize("call,message", [
    (lambda: recipes.recipe(SETTING, "fast"), "`recipe` must be one of"),
    (lambda: recipes.recipe(SETTING, menu="fixed"), "`menu` must be one of"),
    (lambda: recipes.resolve(SETTING, training_overrides={"stepz": 1}), "stepz"),
    (lambda: TrainingConfig(restarts=0), "`restarts`"),
    (lambda: TrainingConfig(steps=1000, restart_steps=150), "multiple of `steps_per_epoch`"),
    (lambda: TrainingConfig(steps=1000, final_temperature=1000, restart_steps=700),
     "before annealing starts"),
])
def test_bad_recipe_arguments_are_refused_by_name(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_selection_steps_end_before_annealing_or_halfway():
    assert TrainingConfig(steps=1000).selection_steps == 500
    assert TrainingConfig(steps=1000, final_temperature=1000,
                          anneal_fraction=0.3).selection_steps == 700
    assert TrainingConfig(steps=1000, restart_steps=300).selection_steps == 300


# ------------------------------------------------------------------------------ restarts
@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("restarts") / "run")
    return out, train_run(SETTING, out, KWARGS, RESTARTING, verbose=0)


@pytest.mark.slow
def test_restarts_are_recorded_and_the_best_one_is_trained_on(restarted):
    out, model = restarted
    start = runs.read_config(out)["start"]
    assert [row["seed"] for row in start["restarts"]] == [3, 1003, 2003]
    revenues = [row["validation_revenue"] for row in start["restarts"]]
    assert start["kept"] == int(np.argmax(revenues))
    # Each restart is a run of its own, trained to the selection point (step 40, where
    # annealing starts), on the same training data; the kept one goes on to step 60.
    for row in start["restarts"]:
        restart, config = runs.load_run(os.path.join(out, row["run"]))
        assert config["training"]["steps"] == 40 and config["model"]["data_seed"] == 3
        assert int(restart.optimizer.iterations) == 40
    assert int(model.optimizer.iterations) == 60 and model.seed == 3
    with open(os.path.join(out, runs.HISTORY)) as file:
        rows = file.read().splitlines()
    assert rows[0] == "epoch,loss,temperature,val_revenue" and len(rows) == 1 + 3


@pytest.mark.slow
def test_an_interrupted_restarted_run_resumes_bit_identically(restarted, tmp_path):
    # Stopped in the second restart's second epoch, then in the final phase (epoch 2).
    out = str(tmp_path / "run")
    for stop in (StopAt(1), StopAt(2)):
        with pytest.raises(Stop):
            train_run(SETTING, out, KWARGS, RESTARTING, verbose=0, callbacks=[stop])
    resumed = train_run(SETTING, out, KWARGS, RESTARTING, verbose=0)
    for got, want in zip(resumed.exact_menu(), restarted[1].exact_menu(), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.slow
def test_one_restart_is_the_plain_run(tmp_path):
    out = str(tmp_path / "run")
    train_run(SETTING, out, KWARGS, TrainingConfig(steps=20, steps_per_epoch=20,
                                                   batch_size=256, validation_samples=500),
              verbose=0)
    assert not os.path.exists(os.path.join(out, RESTARTS))
    assert "start" not in runs.read_config(out)


@pytest.mark.slow
def test_a_polished_run_keeps_the_menu_with_the_higher_held_out_revenue(tmp_path):
    out = str(tmp_path / "run")
    model = train_run(SETTING, out, {"menu": "deterministic", "reserves": None},
                      TrainingConfig(steps=20, steps_per_epoch=20, batch_size=256,
                                     validation_samples=2000, polish=True), verbose=0)
    with open(os.path.join(out, runs.POLISH)) as file:
        record = json.load(file)
    held_out = record["holdout_revenue"]
    assert record["kept"] == ("polished" if held_out["polished"] > held_out["trained"]
                              else "trained")
    assert record["holdout"] == {"samples": 2000, "seed": tf_ama.utils.seeds.holdout_seed(0)}
    # The saved model is the kept one: its exact revenue on the held-out sample.
    holdout = tf_ama.valuation_dataset(SETTING, 2000, seed=tf_ama.utils.seeds.holdout_seed(0))
    saved = runs.load_run(out)[0]
    assert saved.evaluate(holdout, verbose=0, return_dict=True)["revenue"] == pytest.approx(
        held_out[record["kept"]], rel=1e-6)
    assert model.evaluate(holdout, verbose=0, return_dict=True)["revenue"] == pytest.approx(
        held_out[record["kept"]], rel=1e-6)


# ------------------------------------------------------------------------------ CLI
def test_the_command_lines_recipes_are_the_librarys():
    from tf_ama.cli.flags import RECIPES

    assert RECIPES == recipes.RECIPES


def test_train_without_flags_overrides_nothing():
    """Flags not given are not set, so the recipe decides every field; the value `--help`
    shows beside "else" is the library's own default."""
    args = build_parser().parse_args(["train", SETTING, "--out", "x"])
    for section in ("model", "training"):
        assert not any(hasattr(args, name) for name in args.sections[section])
    training_defaults = TrainingConfig().to_dict()
    model_defaults = tf_ama.AffineMaximizerAuction(SETTING).own_config()
    menu_defaults = model_defaults.pop("menu")["config"]
    contextual = inspect.signature(tf_ama.ContextualMenu).parameters
    for name, shown in args.shown_defaults.items():
        if name in args.sections["contextual"]:  # contextual settings only (their defaults)
            if name in ("hidden", "heads", "blocks"):  # the others depend on the sizes
                assert shown == contextual[name].default, name
            continue
        if name in training_defaults:
            assert shown == training_defaults[name], name
        elif name == "menu":
            assert shown == "lottery"
        elif name not in ("learn_bidder_weights",):
            assert shown == {**menu_defaults, **model_defaults}[name], name


@pytest.mark.slow
def test_tf_ama_train_shows_and_records_its_recipe(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "additive_3x1_exponential", "--steps", "20", "--batch-size", "256",
                 "--validation-samples", "500", "--samples", "1000", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: recipe 'default': the item-separable family alone" in printed
    assert "steps=20*" in printed and "(* given, overriding the recipe)" in printed
    record = runs.read_config(out)["recipe"]
    assert record["model"] == {"menu": "separable", "temperature": 10.0}  # values ~ 3
    assert record["overridden"] == ["batch_size", "evaluation_samples", "steps",
                                    "validation_samples"]
    # The same command resumes (the record is not compared); another recipe is refused.
    assert main(["train", "additive_3x1_exponential", "--steps", "20", "--batch-size", "256",
                 "--validation-samples", "500", "--samples", "1000", "--out", out]) == 0
    assert main(["train", "additive_3x1_exponential", "--out", out]) == 2
    error = capsys.readouterr().err
    assert "already holds a run with a different configuration" in error
    # Only training fields differ: the recorded values, as the flags that give them.
    assert "give the recorded ones: --batch-size 256 --samples 1000 --steps 20" in error


def test_a_soft_start_raises_lambda_to_the_models_temperature_then_anneals(tmp_path):
    training = TrainingConfig(steps=60, steps_per_epoch=10, initial_temperature=10.0,
                              warmup_fraction=0.34, final_temperature=1000.0,
                              anneal_fraction=0.34)
    [scheduler] = training.annealing_callbacks(100.0)
    assert [round(scheduler.schedule(epoch), 6) for epoch in range(6)] == [
        10.0, 31.622777, 100.0, 100.0, 316.227766, 1000.0]
    # At least one epoch, and never into the annealing.
    assert TrainingConfig(steps=100, initial_temperature=10.0,
                          warmup_fraction=0.01).warmup_epochs == 1
    assert TrainingConfig(steps=200, initial_temperature=10.0, warmup_fraction=1.0,
                          final_temperature=1000.0).warmup_epochs == 1
    assert TrainingConfig(steps=200, warmup_fraction=1.0).warmup_epochs == 0
    with pytest.raises(ValueError, match="before the restarts are compared"):
        TrainingConfig(steps=1000, initial_temperature=10.0, warmup_fraction=0.5,
                       restart_steps=300, restarts=2)


def test_every_training_field_has_a_flag():
    args = build_parser().parse_args(["train", SETTING, "--out", "x"])
    assert set(args.sections["training"]) == set(TrainingConfig().to_dict())


def test_the_kept_restarts_history_keeps_its_own_temperatures(tmp_path):
    from tf_ama.training.history import copy_history

    source, target = tmp_path / "restart.csv", tmp_path / "run.csv"
    source.write_text("epoch,loss,temperature,val_revenue\n0,-1,10.0,0.5\n1,-2,100.0,0.6\n")
    copy_history(str(source), str(target), {"temperature": 100.0})
    assert target.read_text().splitlines() == [
        "epoch,loss,temperature,val_revenue", "0,-1,10.0,0.5", "1,-2,100.0,0.6"]
    source.write_text("epoch,loss,val_revenue\n0,-1,0.5\n")
    copy_history(str(source), str(target), {"temperature": 100.0})
    assert target.read_text().splitlines() == ["epoch,loss,temperature,val_revenue",
                                               "0,-1,100.0,0.5"]


@pytest.mark.parametrize("num_sizes,steps", [(1, 1000), (2, 1000), (3, 1500), (6, 3000),
                                             (9, 3000)])
def test_a_contextual_budget_is_500_steps_per_size_from_1000_to_3000(num_sizes, steps):
    assert recipes.contextual_steps(num_sizes) == steps


@pytest.mark.parametrize("setting,given,steps,menu_size", [
    ("contextual_a", {}, 3000, 128),  # its 6 sizes, 3x10 among them
    ("contextual_a", {"sizes": "2x5"}, 1000, 64),
    ("contextual_a", {"sizes": ["2x2", "2x5", "3x5"]}, 1500, 64),
    ("contextual_b", {}, 3000, 128),  # its 9 sizes, 10x2 among them
    ("contextual_a", {"sizes": "2x5", "menu": "separable"}, 1000, 1),
])
def test_a_contextual_recipe_follows_its_sizes(setting, given, steps, menu_size):
    from tf_ama.training.contextual import contextual_training

    model_kwargs, training, record = recipes.resolve(setting, "default", given)
    assert (training.steps, training.batch_size, training.learning_rate) == (steps, 512, 0.001)
    assert model_kwargs["menu_size"] == menu_size and record["overridden"] == sorted(given)
    both = given.get("menu", "lottery+separable") == "lottery+separable"
    assert model_kwargs["bundles"] == model_kwargs["linear_family_boosts"] == both
    assert f"{steps} steps of 512 auctions" in record["summary"]
    # The library's default for the same sizes (tf_ama.train_run without a TrainingConfig);
    # without sizes or a setting, one size's.
    assert contextual_training(given.get("sizes"), setting) == training
    assert contextual_training().steps == 1000
    assert json.loads(json.dumps(record)) == record


@pytest.mark.parametrize("given,message", [
    ({"menu": "separable", "menu_size": 8}, "menu_size=8: --menu separable is the item-separable"),
    ({"menu": "deterministic"}, r"`menu \(of a contextual setting\)` must be one of"),
    ({"initialization": "myerson"}, r"Not for a contextual setting: \['initialization'\]"),
    ({"sizes": "2x"}, "`sizes` must be a list of sizes"),
])
def test_bad_contextual_recipe_arguments_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        recipes.resolve("contextual_a", "default", given)
    with pytest.raises(ValueError, match=r"Not for a contextual setting: \['joint_steps'\]"):
        recipes.resolve("contextual_a", "default", {}, {"joint_steps": 5})
    with pytest.raises(ValueError, match="contextual settings have one recipe"):
        recipes.resolve("contextual_a", "paper")
    with pytest.raises(ValueError, match="`sizes`: only for a contextual setting"):
        recipes.recipe(SETTING, sizes="2x2")
