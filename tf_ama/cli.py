"""The `tf-ama` command: settings, baselines, train, evaluate, menu, export.

    tf-ama settings
    tf-ama baselines additive_2x2_uniform [--samples N] [--json]
    tf-ama train additive_2x2_uniform --menu-size 1024 --steps 2000 --batch-size 4096 --out runs/a22
    tf-ama train unit_demand_2x4_spherical --exact-expectation --boost-init-scale 1 --out runs/sph
    tf-ama evaluate runs/a22 [--samples 100000] [--json]        (or a SavedModel version dir)
    tf-ama menu runs/a22 [--plot menu.png]
    tf-ama export runs/a22 --to models/additive_2x2_uniform

Errors in the input or in the files (a missing or damaged run directory or SavedModel, a full
disk) are printed as one line naming the file and the fix (no traceback) and exit with
status 2; see `run_command`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _settings(args):
    from tf_ama.settings import ANCHORS, get_setting, list_settings

    rows = [("setting", "bidders x items", "demand", "values", "reference revenue")]
    for name in list_settings():
        setting = get_setting(name)
        params = ", ".join(f"{k}={v}" for k, v in setting.distribution_params.items())
        anchor = ANCHORS.get(name)
        rows.append((name, setting.shape_name, setting.demand,
                     f"{setting.distribution}({params})",
                     f"{anchor[1]} ({anchor[0]})" if anchor else ""))
    print(_table(rows))


def _baselines(args):
    from tf_ama.baseline_auctions import baseline_details, format_table

    details = baseline_details(args.setting, num_samples=args.samples, seed=args.seed)
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in details.items()}, indent=2))
    else:
        print(format_table(details))


def _train(args):
    from tf_ama import runs
    from tf_ama.evaluation import evaluate
    from tf_ama.plots import plot_training_curves
    from tf_ama.training import TrainingConfig, train_run

    training = TrainingConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        steps_per_epoch=min(args.steps_per_epoch, args.steps),
        validation_samples=args.validation_samples, evaluation_samples=args.samples,
        jit_compile={"auto": "auto", "on": True, "off": False}[args.jit],
        final_temperature=args.final_temperature, anneal_fraction=args.anneal_fraction,
        exact_expectation=args.exact_expectation)
    model_kwargs = dict(menu=args.menu, menu_size=args.menu_size, temperature=args.temperature,
                        seed=args.seed, micro_batch_size=args.micro_batch_size,
                        learn_bidder_weights=args.learn_bidder_weights,
                        boost_init_scale=args.boost_init_scale)
    model = train_run(args.setting, args.out, model_kwargs, training)
    report = evaluate(model, num_samples=training.evaluation_samples, seed=args.seed + 2)
    runs.write_json_atomic(os.path.join(args.out, runs.EVALUATION), report.to_dict())
    baselines = {k: v["revenue"] for k, v in report.baselines.items()}
    plot_training_curves(os.path.join(args.out, runs.HISTORY),
                         os.path.join(args.out, runs.CURVES), baselines=baselines,
                         steps_per_epoch=training.steps_per_epoch)
    print(report.format_table())
    print(f"\nrun directory: {args.out} (model.keras, evaluation.json, {runs.CURVES}, "
          f"TensorBoard logs in {os.path.join(args.out, runs.LOGS)})")


def _load_any(path):
    """A model from a run directory or from an exported SavedModel version directory."""
    from tf_ama import runs

    if not os.path.isdir(path):
        raise ValueError(f"{path!r} does not exist: give a run directory (tf-ama train ... --out "
                         "RUN_DIR) or an exported SavedModel folder (tf-ama export).")
    if os.path.isfile(os.path.join(path, runs.CONFIG)):
        return runs.load_run(path)[0]
    from tf_ama.export import load_menu_model

    return load_menu_model(path)  # a SavedModel version folder or a model folder


def _evaluate(args):
    from tf_ama.evaluation import evaluate

    report = evaluate(_load_any(args.path), num_samples=args.samples, seed=args.seed,
                      jit_compile=not args.no_xla)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())


def _menu(args):
    from tf_ama.evaluation import format_menu_table, menu_usage

    model = _load_any(args.path)
    entries = menu_usage(model, num_samples=args.samples, seed=args.seed,
                         jit_compile=not args.no_xla)
    print(format_menu_table(entries))
    if args.plot:
        from tf_ama.plots import plot_menu

        plot_menu(entries, model.setting, args.plot)
        print(f"\nplot written to {args.plot}")


def _export(args):
    from tf_ama.export import run_export

    run_export(args)


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _micro_batch(text):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    return _positive_int(text)


def _add_model_command(commands, name, help_text):
    """A command that reads a trained model and evaluates it on fresh samples."""
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("path", help="a run directory or an exported SavedModel (model or version folder)")
    sub.add_argument("--samples", type=_positive_int, default=100_000)
    sub.add_argument("--seed", type=int, default=2)
    sub.add_argument("--no-xla", action="store_true",
                     help="compute the exact outcome without XLA: slower, but bit for bit what "
                          "the exported model serves (XLA may round payments' last bits apart)")
    return sub


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tf-ama", description="Learn, evaluate and export lottery affine maximizer auctions.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("settings", help="list the built-in settings").set_defaults(run=_settings)

    sub = commands.add_parser("baselines", help="VCG, separate Myerson and grand bundle revenue")
    sub.add_argument("setting")
    sub.add_argument("--samples", type=_positive_int, default=100_000)
    sub.add_argument("--seed", type=int, default=1)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(run=_baselines)

    sub = commands.add_parser("train", help="train an AMA with Keras fit (re-run to resume)")
    sub.add_argument("setting")
    sub.add_argument("--out", required=True, help="run directory (re-using it resumes the run)")
    sub.add_argument("--menu", choices=("lottery", "deterministic"), default="lottery")
    sub.add_argument("--menu-size", type=_positive_int, default=1024)
    sub.add_argument("--steps", type=_positive_int, default=2000)
    sub.add_argument("--batch-size", type=_positive_int, default=4096)
    sub.add_argument("--micro-batch-size", type=_micro_batch, default="auto",
                     help="profiles per micro-batch: 'auto' (sized to stay in cache), 'none' "
                          "(whole batch) or a number")
    sub.add_argument("--lr", type=float, default=0.01)
    sub.add_argument("--temperature", type=float, default=100.0)
    sub.add_argument("--final-temperature", type=float, default=None,
                     help="anneal: raise the temperature geometrically to this value over the "
                          "last --anneal-fraction of the epochs (learning rate scaled down "
                          "in proportion)")
    sub.add_argument("--anneal-fraction", type=float, default=0.4)
    sub.add_argument("--exact-expectation", action="store_true",
                     help="discrete settings (e.g. spherical): train and validate on every "
                          "profile weighted by its probability, with no sampling noise "
                          "(--batch-size and --validation-samples are then unused)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--boost-init-scale", type=float, default=0.0,
                     help="standard deviation of the initial boosts (default 0: all start at 0)")
    sub.add_argument("--learn-bidder-weights", action=argparse.BooleanOptionalAction,
                     default=None, help="default: only for asymmetric settings")
    sub.add_argument("--steps-per-epoch", type=_positive_int, default=100,
                     help="steps between validation, logs and checkpoints")
    sub.add_argument("--validation-samples", type=_positive_int, default=10_000)
    sub.add_argument("--samples", type=_positive_int, default=100_000,
                     help="fresh samples for the final exact evaluation")
    sub.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                     help="XLA for the training step (Keras 'auto': on with an accelerator)")
    sub.set_defaults(run=_train)

    sub = _add_model_command(commands, "evaluate", "exact evaluation against the baselines")
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(run=_evaluate)

    sub = _add_model_command(commands, "menu", "the menu entries actually used")
    sub.add_argument("--plot", help="write a PNG of the used allocations here")
    sub.set_defaults(run=_menu)

    sub = commands.add_parser("export", help="export a trained run as a TF Serving SavedModel")
    from tf_ama.export import add_export_arguments

    add_export_arguments(sub)
    sub.set_defaults(run=_export)
    return parser


def run_command(prog, run, args) -> int:
    """`run(args)`; returns 0, or 2 after printing an error as ONE line `PROG: error: ...`.

    Caught: the errors that report bad input or files, whose messages name the argument or
    file and the fix: ValueError (incl. tf_ama.export.ExportError), TypeError, OSError and
    InvalidArgumentError (e.g. bids refused by the exact outcome). Anything else is a bug
    and keeps its traceback.
    """
    import tensorflow as tf

    try:
        run(args)
    except (ValueError, TypeError, OSError, tf.errors.InvalidArgumentError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        # One line: some messages list details on further lines, TensorFlow's add graph context.
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
        print(f"{prog}: error: {message or type(error).__name__}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(f"tf-ama {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
