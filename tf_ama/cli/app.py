r"""The `tf-ama` command: settings, baselines, train, evaluate, menu, export, query.

    tf-ama settings
    tf-ama baselines additive_2x2_uniform [--samples N] [--json]
    tf-ama train additive_2x2_uniform --out runs/a22              (the setting's recipe)
    tf-ama train additive_2x2_uniform --menu lottery --menu-size 256 --steps 600 --out runs/b
    tf-ama train unit_demand_2x4_spherical --recipe paper --out runs/sph
    tf-ama evaluate runs/a22 [--samples 100000] [--json]        (or a SavedModel version dir)
    tf-ama evaluate runs/a22 --samples 10000000 --outcomes outcomes.npz   (streamed; bar on stderr)
    tf-ama menu runs/a22 [--plot menu.png]
    tf-ama export runs/a22 --to models/additive_2x2_uniform
    tf-ama query --rest http://localhost:8501 --model additive_2x2_uniform \
        --bids '[[[0.5,0.2],[0.3,0.9]]]'
    tf-ama query --grpc localhost:8500 --model additive_2x2_uniform --menu   (or --metadata)

This module is the one home of the command line: every flag of every command (also those of
`export/export_model.py` and `serving/client.py`, thin wrappers over `main`) and its error
handling. Errors in the input or in the files (a missing or damaged run directory or
SavedModel, a full disk, a refusal by the server) are printed as one line naming the file and
the fix (no traceback) and exit with status 2; see `run_command`. Flag values are checked
while parsing, by `tf_ama.utils.checks` (argparse's usage line and message, status 2).

Importing this module and `tf-ama --help` load neither TensorFlow nor Keras: each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from tf_ama.utils import files


def _settings(args):
    from tf_ama.data.contexts import get_contextual_setting, list_contextual_settings
    from tf_ama.data.settings import ANCHORS, get_setting, list_settings, setting_json

    if args.show is not None:  # a starting point for one's own: tf-ama train FILE.json
        print(setting_json(args.show), end="")
        return

    rows = [("setting", "bidders x items", "demand", "values", "reference revenue")]
    for name in list_settings():
        setting = get_setting(name)
        params = ", ".join(f"{k}={v}" for k, v in setting.distribution_params.items())
        anchor = ANCHORS.get(name)
        rows.append((name, setting.shape_name, setting.demand,
                     f"{setting.distribution}({params})",
                     f"{anchor[1]} ({anchor[0]})" if anchor else ""))
    for name in list_contextual_settings():  # contexts: tf-ama train NAME --sizes MxN
        setting = get_contextual_setting(name)
        rows.append((name, ",".join(f"{m}x{n}" for m, n in setting.sizes), setting.demand,
                     f"{setting.values}(contexts d={setting.bidder_features},"
                     f"{setting.item_features})", "per-context Myerson (tf-ama train)"))
    print(_table(rows))


def _baselines(args):
    from tf_ama.evaluation.baselines import baseline_details, format_table

    details = baseline_details(args.setting, num_samples=args.samples, seed=args.seed,
                               progress=_progress(args))
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in details.items()}, indent=2))
    else:
        print(format_table(details))


def _train(args):
    """`tf-ama train`; with TF_CONFIG set, as one worker of several (tf_ama.utils.distributed):
    every worker trains, the chief alone evaluates the model and writes the run directory."""
    from tf_ama.training.contextual import is_contextual

    if is_contextual(args.setting):
        if os.environ.get("TF_CONFIG", "").strip():
            raise ValueError("TF_CONFIG is set, but contextual settings train on one machine "
                             "only: unset TF_CONFIG.")
        return _train_contextual(args)
    from tf_ama.utils import distributed

    strategy = distributed.strategy_from_environment()  # before TensorFlow runs anything
    _train_setting(args, strategy)
    distributed.wait_for_workers(strategy)  # no worker exits before the chief has written


def _train_setting(args, strategy):
    """`tf-ama train` of a setting without contexts, under `strategy`."""
    given = [flag for flag, dest in CONTEXTUAL_FLAGS.items() if hasattr(args, dest)]
    if given:
        raise ValueError(f"{', '.join(given)}: only for contextual settings "
                         "(tf-ama settings lists them).")
    from tf_ama.data.settings import get_setting

    setting = get_setting(args.setting)
    if args.valuations is not None:
        from tf_ama.data.empirical import empirical_setting

        ignored = [flag for flag, dest in (("--samples", "evaluation_samples"),
                                           ("--validation-samples", "validation_samples"))
                   if hasattr(args, dest)]
        if ignored:
            raise ValueError(f"{', '.join(ignored)}: a run on data validates and evaluates on "
                             "its held-out rows, all of them; set their shares with "
                             "--validation-fraction and --test-fraction.")

        setting = empirical_setting(setting, args.valuations, **{
            name: getattr(args, name) for name in DATA_FLAGS.values()
            if getattr(args, name) is not None})
        print(f"{args.valuations}: {setting.distribution_params['rows']} profiles (train, "
              "validation, test); training resamples the train rows, the final evaluation "
              "is on the test rows.")
    elif any(getattr(args, name) is not None for name in DATA_FLAGS.values()):
        raise ValueError(f"{', '.join(DATA_FLAGS)}: only with --valuations FILE.")
    from tf_ama.training import runs
    from tf_ama.utils import distributed, seeds
    from tf_ama.evaluation.reports import evaluate
    from tf_ama.evaluation.plots import plot_separable_boosts, plot_training_curves
    from tf_ama.training.recipes import resolve
    from tf_ama.training.run import train_run

    # Only the flags given override the recipe's fields (the others are not set: SUPPRESS).
    model_kwargs, training, recipe = resolve(setting, args.recipe, *(
        {name: getattr(args, name) for name in args.sections[section] if hasattr(args, name)}
        for section in ("model", "training")))
    with strategy.scope():  # several workers train together; the chief alone writes the run
        model = train_run(setting, args.out, model_kwargs, training, recipe=recipe)
    if not distributed.is_chief(strategy):
        print(f"{args.out}: trained as worker {strategy.cluster_resolver.task_id}; the chief "
              "evaluates the model and writes the run directory.")
        return
    from tf_ama.data.empirical import is_empirical

    # A setting made from data is evaluated on its test rows (all of them).
    samples = None if is_empirical(setting) else training.evaluation_samples
    report = evaluate(model, num_samples=samples,
                      seed=seeds.evaluation_seed(model.seed))
    files.write_json_atomic(os.path.join(args.out, runs.EVALUATION), report.to_dict())
    baselines = {k: v["revenue"] for k, v in report.baselines.items()}
    plot_training_curves(os.path.join(args.out, runs.HISTORY),
                         os.path.join(args.out, runs.CURVES), baselines=baselines,
                         steps_per_epoch=training.steps_per_epoch)
    print(report.format_table())
    if model.menu().separable_boosts is not None:
        plot_separable_boosts(model, os.path.join(args.out, runs.SEPARABLE_BOOSTS))
    start = runs.read_config(args.out).get("start", {})
    if "lottery_run" in start:  # a joined menu: its lottery phase alone, on the same profiles
        phase = os.path.join(args.out, start["lottery_run"])
        alone = evaluate(runs.load_run(phase)[0], num_samples=samples,
                         seed=report.seed, baselines=False)
        files.write_json_atomic(os.path.join(phase, runs.EVALUATION), alone.to_dict())
        print(f"  its lottery menu alone ({phase}): {alone.revenue:.4f} +- "
              f"{alone.revenue_stderr:.4f}")
    print(f"\nrun directory: {args.out} (model.keras, evaluation.json, {runs.CURVES}, "
          f"TensorBoard logs in {os.path.join(args.out, runs.LOGS)})")


def _train_contextual(args):
    """`tf-ama train contextual_a --sizes 2x5 ...`: `tf_ama.training.contextual`."""
    from tf_ama.training import runs
    from tf_ama.evaluation.contextual import evaluate_contextual, format_reports
    from tf_ama.training.contextual import contextual_defaults, train_contextual_run

    if args.recipe != "default":
        raise ValueError("--recipe: contextual settings have one recipe, the default.")
    if args.valuations is not None:
        raise ValueError("--valuations: contextual settings draw their own contexts and "
                         "values; data files are for settings without contexts.")
    given = {name: getattr(args, name) for section in ("model", "training", "contextual")
             for name in args.sections[section] if hasattr(args, name)}
    model_kwargs, training = contextual_defaults(args.setting, given)
    model = train_contextual_run(args.setting, args.out, model_kwargs, training)
    reports = evaluate_contextual(model, num_samples=training.evaluation_samples)
    files.write_json_atomic(os.path.join(args.out, runs.EVALUATION),
                           {size: report.to_dict() for size, report in reports.items()})
    print(format_reports(reports))
    print(f"\nrun directory: {args.out} (model.keras, evaluation.json, TensorBoard logs in "
          f"{os.path.join(args.out, runs.LOGS)})")


def _load_any(path):
    """A model from a run directory or from an exported SavedModel version directory."""
    from tf_ama.training import runs

    if not os.path.isdir(path):
        raise ValueError(f"{path!r} {'is a file' if os.path.exists(path) else 'does not exist'}: "
                         "give a run directory (tf-ama train ... --out RUN_DIR) or an exported "
                         "SavedModel folder (tf-ama export).")
    if os.path.isfile(os.path.join(path, runs.CONFIG)):
        return runs.load_run(path)[0]
    from tf_ama.serving.export import load_menu_model

    return load_menu_model(path)  # a SavedModel version folder or a model folder


def _evaluate(args):
    from tf_ama.evaluation.reports import evaluate

    model = _load_any(args.path)
    if _contextual_model(model):
        from tf_ama.evaluation.contextual import evaluate_contextual, format_reports

        if args.outcomes is not None:
            raise ValueError("--outcomes: not supported for a contextual model (its auctions "
                             "differ in size); evaluate without it.")
        reports = evaluate_contextual(model, sizes=args.sizes, seed=args.seed,
                                      **({} if args.samples is None else
                                         {"num_samples": args.samples}))
        print(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2) if args.json
              else format_reports(reports))
        return
    if args.sizes is not None:
        raise ValueError("--sizes: only for a contextual model.")
    progress = _progress(args)
    report = evaluate(model, num_samples=args.samples, seed=args.seed,
                      jit_compile=not args.no_xla, progress=progress, outcomes=args.outcomes)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())
    if args.outcomes is not None and not args.json:
        print(f"\nper-profile outcomes written to {args.outcomes} (columns: "
              "tf_ama.evaluation.outcome_files; read back with tf_ama.evaluation.outcome_files.read_outcomes)")


def _progress(args):
    """`--[no-]progress`: a progress bar on stderr; by default when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _contextual_model(model):
    return type(model).__name__ == "ContextualAuction"


def _menu(args):
    from tf_ama.evaluation.reports import format_menu_table, menu_usage

    model = _load_any(args.path)
    if _contextual_model(model):
        raise ValueError("A contextual model has a menu per auction; see its `menu` signature "
                         "once exported (tf-ama export), or model.menu(contexts) in Python.")
    entries = menu_usage(model, num_samples=args.samples, seed=args.seed,
                         jit_compile=not args.no_xla)
    print(format_menu_table(entries))
    if args.plot:
        from tf_ama.evaluation.plots import plot_menu

        plot_menu(entries, model.setting, args.plot)
        print(f"\nplot written to {args.plot}")
        if model.menu().separable_boosts is not None:
            from tf_ama.evaluation.plots import plot_separable_boosts

            stem, extension = os.path.splitext(args.plot)
            family = plot_separable_boosts(model, f"{stem}_separable{extension or '.png'}")
            print(f"the item-separable family's boosts drawn in {family}")


def _export(args):
    """Exports the run `args.run_dir` into `args.base_dir`; prints the new version folder."""
    from tf_ama.serving.export import export_saved_model
    from tf_ama.training.runs import load_run

    model, config = load_run(args.run_dir)
    print(export_saved_model(
        model, args.base_dir, version=args.version, prune=args.prune,
        prune_samples=args.prune_samples, seed=args.seed,
        training_config=config.get("training"), sizes=args.sizes))


def _query(args):
    """One request to TF Serving (predict, menu or metadata); prints the checked answer as
    JSON. REST needs no TensorFlow (but for --metadata, whose protos come with it)."""
    tls = {"tls": args.tls, "root_certificates": args.tls_ca, "private_key": args.tls_key,
           "certificate_chain": args.tls_cert}
    if args.rest and any(tls.values()):
        raise ValueError("--tls* options are for --grpc; for REST use an https:// URL (a "
                         "private CA: set REQUESTS_CA_BUNDLE=ca.pem)")
    contexts = {}
    if args.bids is not None:
        bids = _json("--bids", args.bids)
        contexts = {name: _json(flag, text) for name, flag, text in (
            ("bidder_context", "--bidder-context", args.bidder_context),
            ("item_context", "--item-context", args.item_context)) if text is not None}
    elif args.bidder_context is not None or args.item_context is not None:
        raise ValueError("--bidder-context and --item-context go with --bids.")
    from tf_ama.serving.client import GrpcClient, RestClient

    if args.rest:
        client = RestClient(args.rest, args.model, args.version, args.timeout)
    else:
        client = GrpcClient(args.grpc, args.model, args.version, args.timeout, **tls)
    with client:
        if args.metadata:
            result = client.metadata()
        else:
            result = client.menu() if args.menu else client.predict(bids, **contexts)
            result = {key: value.tolist() for key, value in result.items()}
    print(json.dumps(result, indent=2))


def _json(flag, text):
    from tf_ama.utils.files import parse_json  # the standard library only

    return parse_json(text, flag)


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ flags
def _checked(check, parse, **bounds):
    """An argparse `type`: `parse(text)` checked by `tf_ama.utils.checks.<check>(..., **bounds)`.

    Text that does not parse is refused by the same check (e.g. "must be an int >= 1; got
    '1.5'"); argparse names the flag before the message.
    """

    def convert(text):
        from tf_ama.utils import checks  # NumPy only, and only once a value is given

        try:  # ASCII digits only: int() and float() also read 1_000 and other scripts' digits
            value = parse(text) if text.isascii() and "_" not in text else text
        except ValueError:
            value = text
        try:
            return getattr(checks, check)("value", value, **bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).replace("`value` ", "", 1)) from None

    convert.__name__ = check
    return convert


# The menu kinds `tf-ama train` builds (tf_ama.MENU_KINDS without "fixed", which only a given
# menu makes); listed here so that the command line starts without TensorFlow.
TRAINABLE_MENU_KINDS = ("lottery", "deterministic", "separable", "lottery+separable")
RECIPES = ("default", "paper")  # tf_ama.training.recipes.RECIPES (tests/cli_test.py checks)
_COUNT = _checked("integer", int, minimum=1)
# The flags of contextual settings only (tf_ama.ContextualAuction), with their destinations.
# The flags that make a setting's prior a data file (tf_ama.empirical_setting), but the file.
DATA_FLAGS = {"--validation-fraction": "validation_fraction", "--test-fraction": "test_fraction",
              "--split-seed": "split_seed"}
CONTEXTUAL_FLAGS = {"--sizes": "sizes", "--hidden": "hidden", "--heads": "heads",
                    "--blocks": "blocks", "--linear-family-boosts": "linear_family_boosts",
                    "--bundles": "bundles"}


def _sizes(text):
    from tf_ama.data.contexts import parse_size  # no TensorFlow (imported when auctions are drawn)

    try:
        return [parse_size(part) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
_SEED = _checked("seed", int)
def _VERSION(text):
    from tf_ama.utils.checks import MAX_MODEL_VERSION  # NumPy only

    return _checked("integer", int, minimum=1, maximum=MAX_MODEL_VERSION)(text)


def _timeout(text):
    from tf_ama.serving.client import MAX_TIMEOUT  # NumPy only

    return _checked("number", float, above=0, maximum=MAX_TIMEOUT)(text)
_POSITIVE = _checked("number", float, above=0)


def _micro_batch(text):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return _COUNT(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto', 'none' or an int >= 1; got {text!r}.") from None


def _outcomes_file(text):
    """An argparse `type`: a writable .npz or .csv path (tf_ama.evaluation.outcome_files.check_path)."""
    from tf_ama.evaluation.outcome_files import check_path  # NumPy only

    try:
        return check_path("value", text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("`value` ", "", 1)) from None


def _add_progress_flag(sub):
    sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar on stderr (default: when stderr is a terminal)")


def _add_model_command(commands, name, help_text):
    """A command that reads a trained model and evaluates it on fresh samples."""
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("path", help="a run directory or an exported SavedModel (model or version folder)")
    sub.add_argument("--samples", type=_COUNT, default=None,
                     help="profiles drawn (default 100000); a model trained on data is "
                          "evaluated on its held-out test rows, all of them")
    sub.add_argument("--seed", type=_SEED, default=None,
                     help="default: the model's seed + 2, the sample `tf-ama train` evaluated on")
    sub.add_argument("--no-xla", action="store_true",
                     help="compute the exact outcome without XLA: slower, but bit for bit what "
                          "the exported model serves (XLA may round payments' last bits apart)")
    return sub


def _add_train_arguments(sub):
    """`tf-ama train`'s flags, in two sections whose destinations are the arguments of
    `AffineMaximizerAuction` (and its menu kind) and the fields of `TrainingConfig`: each
    flag given overrides that field of the recipe (`tf_ama.training.recipes.resolve`), so a new
    argument is one flag here. A flag not given is not set (argparse.SUPPRESS); the
    `default=` below is only what `--help` shows for settings the recipe leaves alone (the
    library's default, tests/cli_test.py checks that they agree)."""
    sections = {"model": [], "training": [], "contextual": []}
    groups = {"model": sub.add_argument_group("model (tf_ama.AffineMaximizerAuction, its menu)"),
              "training": sub.add_argument_group("training (tf_ama.TrainingConfig)"),
              "contextual": sub.add_argument_group(
                  "contextual settings only (tf_ama.ContextualAuction; the model flags above "
                  "--menu, --menu-size, --seed, --temperature, --learn-bidder-weights and "
                  "--micro-batch-size apply too)")}

    def add(section, *flags, default=None, help=None, **options):
        shown = "default: the recipe's" + ("" if default is None else f", else {default}")
        shown = shown if help is None else f"{help} ({shown})"
        action = groups[section].add_argument(*flags, default=argparse.SUPPRESS, help=shown,
                                              **options)
        sections[section].append(action.dest)
        defaults[action.dest] = default

    defaults = {}
    sub.add_argument("setting", help="a built-in setting (tf-ama settings) or a JSON file "
                                     "(tf-ama settings --show NAME prints one to edit)")
    sub.add_argument("--out", required=True, type=_checked("directory", str),
                     help="run directory (re-using it resumes the run)")
    data = sub.add_argument_group(
        "valuations from data (tf_ama.data.empirical): the setting gives bidders, items and demand")
    data.add_argument("--valuations", metavar="FILE", default=None,
                      help="profiles to train on instead of the setting's distribution: .npy "
                           "[N, m, n] or [N, m*n], .npz, or .csv (one profile per row, "
                           "bidder-major, optional header); training resamples the train "
                           "rows with replacement, validation and the final evaluation use "
                           "held-out rows")
    data.add_argument("--validation-fraction", type=_checked("number", float, above=0, maximum=1),
                      default=None, help="share of the rows held out for validation (0.1)")
    data.add_argument("--test-fraction", type=_checked("number", float, above=0, maximum=1),
                      default=None, help="share of the rows held out for the final "
                                         "evaluation (0.1)")
    data.add_argument("--split-seed", type=_SEED, default=None,
                      help="seeds the random split of the rows (0)")
    sub.add_argument("--recipe", choices=RECIPES, default="default",
                     help="the recipe of every field below that is not given "
                          "(tf_ama.training.recipes): 'default' is chosen from the setting's kind and "
                          "size (shown at start, recorded in the run's config); 'paper' is "
                          "the paper's budget (9000 x 2^15, K = 4096) over the active set")
    add("model", "--menu", choices=TRAINABLE_MENU_KINDS, default="lottery",
        help="the menu kind (tf_ama.MENU_KINDS): lottery entries, every deterministic "
             "allocation, the item-separable family (additive), or lottery entries joined "
             "with it")
    add("model", "--menu-size", type=_COUNT, default=1024,
        help="menu entries K of a lottery menu, the empty entry included")
    add("model", "--micro-batch-size", type=_micro_batch, default="auto",
        help="profiles per micro-batch: 'auto' (sized to stay in cache), 'none' (whole batch) "
             "or a number")
    add("model", "--active-margin", type=_POSITIVE, default=None,
        help="train over the active set (tf_ama.ActiveSet): the entries within "
             "margin / temperature of the best on a recent batch, each left-out one weighing "
             "at most exp(-margin), e.g. 25; the step then costs what the entries in play cost")
    add("model", "--active-refresh-steps", type=_COUNT, default=10,
        help="with --active-margin, choose the active set again every this many steps")
    add("model", "--temperature", type=_POSITIVE, default=100.0,
        help="lambda, the softmax's inverse temperature in the relaxation (larger is sharper)")
    add("model", "--seed", type=_SEED, default=0,
        help="seeds the initial parameters and the training data")
    add("model", "--boost-init-scale", type=_checked("number", float, minimum=0), default=0.0,
        help="standard deviation of random initial boosts")
    add("model", "--learn-bidder-weights", action=argparse.BooleanOptionalAction, default=None,
        help="learn the bidder weights; else only for asymmetric settings")
    add("training", "--steps", type=_COUNT, default=2000)
    add("training", "--batch-size", type=_COUNT, default=4096)
    add("training", "--lr", "--learning-rate", dest="learning_rate", type=_POSITIVE,
        default=0.01)
    add("training", "--final-temperature", type=_POSITIVE, default=None,
        help="anneal: raise the temperature geometrically to this value over the last "
             "--anneal-fraction of the epochs (learning rate scaled down in proportion)")
    add("training", "--anneal-fraction", type=_checked("number", float, above=0, maximum=1),
        default=0.4)
    add("training", "--initial-temperature", type=_POSITIVE, default=None,
        help="a soft start: lambda rises geometrically from this value to --temperature "
             "over the first --warmup-fraction of the epochs")
    add("training", "--warmup-fraction", type=_checked("number", float, above=0, maximum=1),
        default=0.5)
    add("training", "--exact-expectation", action=argparse.BooleanOptionalAction, default=False,
        help="discrete settings (e.g. spherical): train and validate on every profile "
             "weighted by its probability, with no sampling noise (--batch-size and "
             "--validation-samples are then unused)")
    add("training", "--joint-steps", type=_COUNT, default=1000,
        help="--menu lottery+separable: after --steps of the lottery menu alone (in "
             "OUT/lottery), steps of the lottery menu and the item-separable family together")
    add("training", "--joint-lr", "--joint-learning-rate", dest="joint_learning_rate",
        type=_POSITIVE, default=0.001, help="the learning rate of the --joint-steps")
    add("training", "--steps-per-epoch", type=_COUNT, default=100,
        help="steps between validation, logs and checkpoints")
    add("training", "--validation-samples", type=_COUNT, default=10_000)
    add("training", "--samples", dest="evaluation_samples", type=_COUNT, default=100_000,
        help="fresh samples for the final exact evaluation")
    add("training", "--jit", dest="jit_compile", default="auto",
        type=lambda text: {"auto": "auto", "on": True, "off": False}.get(text, text),
        choices=("auto", True, False), metavar="{auto,on,off}",
        help="XLA for the training step (Keras 'auto': on with an accelerator)")
    add("training", "--restarts", type=_COUNT, default=1,
        help="train this many initializations for --restart-steps, keep the best by exact "
             "validation revenue, train it on (OUT/restarts/R)")
    add("training", "--restart-steps", type=_COUNT, default=None,
        help="steps before the restarts are compared (default: before annealing, else half)")
    add("training", "--polish", action=argparse.BooleanOptionalAction, default=False,
        help="after training, an exact coordinate search on the boosts and learned weights "
             "(tf_ama.training.polish), kept if it raises the exact revenue on a held-out sample")
    add("training", "--polish-perturbations", type=_checked("integer", int, minimum=0),
        default=0, help="then an iterated local search of this many perturbations (for a "
                        "discrete prior's exact expectation, which it cannot overfit)")
    add("contextual", "--sizes", type=_sizes, default="the setting's",
        help="market sizes to train on, e.g. 2x5 or 3x5,3x10 (batches of one size at a time)")
    add("contextual", "--hidden", type=_COUNT, default=32, help="the menu network's width")
    add("contextual", "--heads", type=_COUNT, default=2, help="attention heads")
    add("contextual", "--blocks", type=_COUNT, default=2,
        help="blocks of attention along items and along bidders")
    add("contextual", "--linear-family-boosts", action=argparse.BooleanOptionalAction,
        default="on with lotteries and the family",
        help="add to each lottery's boost the family's boost extended linearly to it")
    add("contextual", "--bundles", action=argparse.BooleanOptionalAction,
        default="on with lotteries and the family",
        help="one more entry per bidder: the grand bundle, its boost from the family's")
    sub.set_defaults(sections=sections, shown_defaults=defaults)
    return sub


def _add_export_arguments(sub):
    """`tf-ama export`'s (and `export/export_model.py`'s) flags:
    `RUN_DIR --to BASE_DIR [--version N] [--prune] [--prune-samples N] [--seed S]`."""
    sub.add_argument("run_dir", metavar="RUN_DIR",
                     help="run directory written by `tf-ama train ... --out RUN_DIR`")
    sub.add_argument("--to", dest="base_dir", metavar="BASE_DIR", required=True,
                     help="model folder watched by TF Serving, e.g. models/additive_2x2_uniform")
    sub.add_argument("--version", type=_VERSION, default=None,
                     help="version number (default: next free one); never overwritten")
    sub.add_argument("--prune", action="store_true",
                     help="keep only the menu entries that matter (tf_ama.evaluation.reports.prune)")
    sub.add_argument("--prune-samples", type=_COUNT, default=None,
                     help="profiles used by --prune (default 100000; a run on data: its "
                          "validation rows)")
    sub.add_argument("--seed", type=_SEED, default=None,
                     help="seed of the --prune profiles and of the warm-up bids (default: the "
                          "model's seed + 1, its validation sample)")
    sub.add_argument("--sizes", type=_sizes, default=None,
                     help="a contextual model: the sizes served, e.g. 2x5,3x7 (default: the "
                          "trained ones)")
    return sub


def _add_query_arguments(sub):
    """`tf-ama query`'s (and `serving/client.py`'s) flags: `(--rest URL | --grpc HOST:PORT
    [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]) --model NAME [--version V]
    (--bids JSON | --menu | --metadata) [--timeout S]`."""
    where = sub.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", metavar="URL", help="REST endpoint, e.g. http://localhost:8501")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint, e.g. localhost:8500")
    sub.add_argument("--model", required=True, help="served model name")
    sub.add_argument("--version", type=_VERSION, default=None,
                     help="model version (default: the latest the server has)")
    what = sub.add_mutually_exclusive_group(required=True)
    what.add_argument("--bids", help="JSON [batch][bidder][item], e.g. '[[[0.5,0.2],[0.3,0.9]]]'")
    what.add_argument("--menu", action="store_true", help="print the served menu")
    what.add_argument("--metadata", action="store_true", help="print the signatures")
    sub.add_argument("--bidder-context", help="a contextual model: JSON [batch][bidder][feature]")
    sub.add_argument("--item-context", help="a contextual model: JSON [batch][item][feature]")
    sub.add_argument("--timeout", type=_timeout, default=30.0,
                     help="seconds per request (at most 1e6)")
    tls = sub.add_argument_group("gRPC over TLS (for REST, use an https:// URL)")
    tls.add_argument("--tls", action="store_true", help="TLS with gRPC's default root CAs")
    tls.add_argument("--tls-ca", metavar="FILE", help="PEM CA certificate(s) that signed the "
                     "server's certificate (implies --tls)")
    tls.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate chain, for "
                     "mutual TLS (with --tls-key)")
    tls.add_argument("--tls-key", metavar="FILE", help="PEM client private key (with --tls-cert)")
    return sub


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tf-ama", description="Learn, evaluate, export and query lottery affine "
                                   "maximizer auctions.")
    commands = parser.add_subparsers(dest="command", required=True)

    sub = commands.add_parser("settings", help="list the built-in settings")
    sub.add_argument("--show", metavar="NAME", default=None,
                     help="print setting NAME (or a JSON file's) as JSON: save it, edit it, "
                          "train on it with tf-ama train FILE.json")
    sub.set_defaults(run=_settings)

    sub = commands.add_parser("baselines", help="VCG, separate Myerson and grand bundle revenue")
    sub.add_argument("setting")
    sub.add_argument("--samples", type=_COUNT, default=None,
                     help="profiles (default 100000); a setting made from data: its test rows")
    sub.add_argument("--seed", type=_SEED, default=1)
    sub.add_argument("--json", action="store_true")
    _add_progress_flag(sub)
    sub.set_defaults(run=_baselines)

    _add_train_arguments(commands.add_parser(
        "train", help="train an AMA with Keras fit (re-run to resume)")).set_defaults(run=_train)

    sub = _add_model_command(commands, "evaluate", "exact evaluation against the baselines")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--sizes", type=_sizes, default=None,
                     help="a contextual model: the sizes to evaluate, e.g. 3x7 (default: the "
                          "trained ones)")
    sub.add_argument("--outcomes", metavar="FILE", type=_outcomes_file, default=None,
                     help="write every profile's bids, menu index, allocation, payments and "
                          "values to FILE (.npz, or .csv: one line per profile), streamed and "
                          "atomically; columns in tf_ama/evaluation/outcome_files.py")
    _add_progress_flag(sub)
    sub.set_defaults(run=_evaluate)

    sub = _add_model_command(commands, "menu", "the menu entries actually used")
    sub.add_argument("--plot", help="write a PNG of the used allocations here")
    sub.set_defaults(run=_menu)

    _add_export_arguments(commands.add_parser(
        "export", help="export a trained run as a TF Serving SavedModel version folder",
        description="Export a tf_ama run as a TF Serving SavedModel version folder; prints "
                    "the new folder (BASE_DIR/1, then /2, ...).")).set_defaults(run=_export)

    _add_query_arguments(commands.add_parser(
        "query", help="query an auction served by TensorFlow Serving (REST or gRPC)",
        description="Send bids (or ask for the menu or the signatures) to a model served by "
                    "TensorFlow Serving; prints the answer as JSON, after checking it against "
                    "the request (shapes, dtypes, ranges, individual rationality).")
                        ).set_defaults(run=_query)
    return parser


def _input_errors():
    """The exception types that report bad input or files (see `run_command`). Those of
    TensorFlow and of the serving client only once loaded: a command that has not imported
    them cannot raise them, and `tf-ama --help` should not pay for importing TensorFlow."""
    errors = [ValueError, TypeError, OSError, MemoryError]
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "errors"):
        errors += [tf.errors.InvalidArgumentError, tf.errors.ResourceExhaustedError]
    serving = sys.modules.get("tf_ama.serving.checks")
    if serving is not None and hasattr(serving, "ServingError"):
        errors.append(serving.ServingError)
    return tuple(errors)


def run_command(prog, run, args) -> int:
    """`run(args)`; returns 0, or 2 after printing an error as ONE line `PROG: error: ...`.

    Caught: the errors that report bad input or files, whose messages name the argument or
    file and the fix: ValueError (incl. tf_ama.serving.export.ExportError), TypeError, OSError,
    MemoryError (NumPy's names the array it could not allocate), TensorFlow's
    InvalidArgumentError (e.g. bids refused by the exact outcome) and
    ResourceExhaustedError (out of memory, past `tf_ama.utils.footprint`'s up-front estimate), and
    the serving client's ServingError (a refusal by the server, an unreachable server, a
    malformed answer). Every reader of files, flags and answers turns what its parser
    raises on bad bytes (a damaged zip, JSON nested too deeply, text that is not UTF-8, ...:
    `tf_ama.utils.files.READ_ERRORS`) into a ValueError naming the file (`tf_ama.utils.files.reading`),
    so no reader-specific type is caught here. Anything else is a bug and keeps its
    traceback.
    """
    try:
        run(args)
    except _input_errors() as error:
        from tf_ama.utils.checks import one_line  # NumPy only, and only on an error

        print(f"{prog}: error: {one_line(error) or type(error).__name__}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    """`tf-ama ARGV...` (default `sys.argv[1:]`); returns the exit status (`run_command`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any command imports TensorFlow
    args = build_parser().parse_args(argv)
    return run_command(f"tf-ama {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
