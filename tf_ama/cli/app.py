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
import os
import sys

from tf_ama.cli import commands, flags
from tf_ama.training.config import TrainingConfig
from tf_ama.utils import defaults as library_defaults


def _add_progress_flag(sub):
    sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar on stderr (default: when stderr is a terminal)")


def _add_model_command(subcommands, name, help_text):
    """A command that reads a trained model and evaluates it on fresh samples."""
    sub = subcommands.add_parser(name, help=help_text)
    sub.add_argument("path", help="a run directory or an exported SavedModel (model or version folder)")
    sub.add_argument("--samples", type=flags.COUNT, default=None,
                     help="profiles drawn (default 100000); a model trained on data is "
                          "evaluated on its held-out test rows, all of them")
    sub.add_argument("--seed", type=flags.SEED, default=None,
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
        if section == "training" and "dest" not in options:  # the field's own default
            options["dest"] = flags[0].lstrip("-").replace("-", "_")
        if section == "training":
            default = TrainingConfig.__dataclass_fields__[options["dest"]].default
        shown = "default: the recipe's" + ("" if default is None else f", else {default}")
        shown = shown if help is None else f"{help} ({shown})"
        action = groups[section].add_argument(*flags, default=argparse.SUPPRESS, help=shown,
                                              **options)
        sections[section].append(action.dest)
        defaults[action.dest] = default

    defaults = {}
    sub.add_argument("setting", help="a built-in setting (tf-ama settings) or a JSON file "
                                     "(tf-ama settings --show NAME prints one to edit)")
    sub.add_argument("--out", required=True, type=flags.checked("directory", str),
                     help="run directory (re-using it resumes the run)")
    data = sub.add_argument_group(
        "valuations from data (tf_ama.data.empirical): the setting gives bidders, items and demand")
    data.add_argument("--valuations", metavar="FILE", default=None,
                      help="profiles to train on instead of the setting's distribution: .npy "
                           "[N, m, n] or [N, m*n], .npz, or .csv (one profile per row, "
                           "bidder-major, optional header); training resamples the train "
                           "rows with replacement, validation and the final evaluation use "
                           "held-out rows")
    data.add_argument("--validation-fraction", type=flags.checked("number", float, above=0, maximum=1),
                      default=None, help="share of the rows held out for validation (0.1)")
    data.add_argument("--test-fraction", type=flags.checked("number", float, above=0, maximum=1),
                      default=None, help="share of the rows held out for the final "
                                         "evaluation (0.1)")
    data.add_argument("--split-seed", type=flags.SEED, default=None,
                      help="seeds the random split of the rows (0)")
    sub.add_argument("--recipe", choices=flags.RECIPES, default="default",
                     help="the recipe of every field below that is not given "
                          "(tf_ama.training.recipes): 'default' is chosen from the setting's kind and "
                          "size (shown at start, recorded in the run's config); 'paper' is "
                          "the paper's budget (9000 x 2^15, K = 4096) over the active set")
    add("model", "--menu", choices=flags.TRAINABLE_MENU_KINDS, default="lottery",
        help="the menu kind (tf_ama.MENU_KINDS): lottery entries, every deterministic "
             "allocation, the item-separable family (additive), lottery entries joined "
             "with it, or the bundle-size family (additive: the item-separable family plus "
             "a boost per owner and bundle size)")
    add("model", "--menu-size", type=flags.COUNT, default=library_defaults.MENU_SIZE,
        help="menu entries K of a lottery menu, the empty entry included")
    add("model", "--micro-batch-size", type=flags.micro_batch, default="auto",
        help="profiles per micro-batch: 'auto' (sized to stay in cache), 'none' (whole batch) "
             "or a number")
    add("model", "--active-margin", type=flags.POSITIVE, default=None,
        help="train over the active set (tf_ama.ActiveSet): the entries within "
             "margin / temperature of the best on a recent batch, each left-out one weighing "
             "at most exp(-margin), e.g. 25; the step then costs what the entries in play cost")
    add("model", "--active-refresh-steps", type=flags.COUNT,
        default=library_defaults.ACTIVE_REFRESH_STEPS,
        help="with --active-margin, choose the active set again every this many steps")
    add("model", "--temperature", type=flags.POSITIVE, default=library_defaults.TEMPERATURE,
        help="lambda, the softmax's inverse temperature in the relaxation (larger is sharper)")
    add("model", "--seed", type=flags.SEED, default=0,
        help="seeds the initial parameters and the training data")
    add("model", "--boost-init-scale", type=flags.checked("number", float, minimum=0), default=0.0,
        help="standard deviation of random initial boosts")
    add("model", "--learn-bidder-weights", action=argparse.BooleanOptionalAction, default=None,
        help="learn the bidder weights; else only for asymmetric settings")
    add("training", "--steps", type=flags.COUNT)
    add("training", "--batch-size", type=flags.COUNT)
    add("training", "--lr", "--learning-rate", dest="learning_rate", type=flags.POSITIVE)
    add("training", "--final-temperature", type=flags.POSITIVE,
        help="anneal: raise the temperature geometrically to this value over the last "
             "--anneal-fraction of the epochs (learning rate scaled down in proportion; a "
             "contextual run keeps its cosine)")
    add("training", "--anneal-fraction", type=flags.checked("number", float, above=0, maximum=1))
    add("training", "--initial-temperature", type=flags.POSITIVE,
        help="a soft start: lambda rises geometrically from this value to --temperature "
             "over the first --warmup-fraction of the epochs")
    add("training", "--warmup-fraction", type=flags.checked("number", float, above=0, maximum=1))
    add("training", "--exact-expectation", action=argparse.BooleanOptionalAction,
        help="discrete settings (e.g. spherical): train and validate on every profile "
             "weighted by its probability, with no sampling noise (--batch-size and "
             "--validation-samples are then unused)")
    add("training", "--joint-steps", type=flags.COUNT,
        help="--menu lottery+separable: after --steps of the lottery menu alone (in "
             "OUT/lottery), steps of the lottery menu and the item-separable family together")
    add("training", "--joint-lr", "--joint-learning-rate", dest="joint_learning_rate",
        type=flags.POSITIVE, help="the learning rate of the --joint-steps")
    add("training", "--steps-per-epoch", type=flags.COUNT,
        help="steps between validation, logs and checkpoints")
    add("training", "--validation-samples", type=flags.COUNT)
    add("training", "--samples", dest="evaluation_samples", type=flags.COUNT,
        help="fresh samples for the final exact evaluation")
    add("training", "--selection-samples", type=flags.checked("integer", int, minimum=2),
        help="a contextual setting: fresh auctions per size on which the trained menu must "
             "beat per-context Myerson to be served at that size")
    add("training", "--jit", dest="jit_compile",
        type=lambda text: {"auto": "auto", "on": True, "off": False}.get(text, text),
        choices=("auto", True, False), metavar="{auto,on,off}",
        help="XLA for the training step (Keras 'auto': on with an accelerator)")
    add("training", "--restarts", type=flags.COUNT,
        help="train this many initializations for --restart-steps, keep the best by exact "
             "validation revenue, train it on (OUT/restarts/R)")
    add("training", "--restart-steps", type=flags.COUNT,
        help="steps before the restarts are compared (default: before annealing, else half)")
    add("training", "--polish", action=argparse.BooleanOptionalAction,
        help="after training, an exact coordinate search on the boosts and learned weights "
             "(tf_ama.training.polish), kept if it raises the exact revenue on a held-out sample")
    add("training", "--polish-perturbations", type=flags.checked("integer", int, minimum=0),
        help="then an iterated local search of this many perturbations (for a discrete "
             "prior's exact expectation, which it cannot overfit)")
    add("contextual", "--sizes", type=flags.sizes, default="the setting's",
        help="market sizes to train on, e.g. 2x5 or 3x5,3x10 (batches of one size at a time)")
    add("contextual", "--hidden", type=flags.COUNT, default=32, help="the menu network's width")
    add("contextual", "--heads", type=flags.COUNT, default=2, help="attention heads")
    add("contextual", "--blocks", type=flags.COUNT, default=2,
        help="blocks of attention along items and along bidders")
    add("contextual", "--linear-family-boosts", action=argparse.BooleanOptionalAction,
        default="on with lotteries and the family",
        help="add to each lottery's boost the family's boost extended linearly to it")
    add("contextual", "--bundles", action=argparse.BooleanOptionalAction,
        default="on with lotteries and the family",
        help="one more entry per bidder: the grand bundle, its boost from the family's")
    add("contextual", "--bundle-discount",
        type=flags.checked("number", float, minimum=0, maximum=1),
        default=f"{library_defaults.BUNDLE_DISCOUNT:g} with bundles, 0 without",
        help="the learned share of the family's boost the grand bundles are spared, its "
             "start (0: the menu starts at per-context Myerson)")
    add("contextual", "--relative-loss", action=argparse.BooleanOptionalAction, default="off",
        help="descend minus the log of each step's soft revenue, so that every size counts "
             "by its relative gain (lifts small sizes, lowers large ones; docs/design.md §10)")
    add("contextual", "--size-features", type=flags.size_dimensions,
        default="the dimensions in which the trained sizes differ",
        help="the dimensions of the auction's size every token of the menu's network also "
             "sees (log m, log n): bidders,items, bidders, items or none")
    sub.set_defaults(sections=sections, shown_defaults=defaults)
    return sub


def _add_export_arguments(sub):
    """`tf-ama export`'s (and `export/export_model.py`'s) flags:
    `RUN_DIR --to BASE_DIR [--version N] [--prune] [--prune-samples N] [--seed S]`."""
    sub.add_argument("run_dir", metavar="RUN_DIR",
                     help="run directory written by `tf-ama train ... --out RUN_DIR`")
    sub.add_argument("--to", dest="base_dir", metavar="BASE_DIR", required=True,
                     help="model folder watched by TF Serving, e.g. models/additive_2x2_uniform")
    sub.add_argument("--version", type=flags.VERSION, default=None,
                     help="version number (default: next free one); never overwritten")
    sub.add_argument("--prune", action="store_true",
                     help="keep only the menu entries that matter (tf_ama.evaluation.usage.prune)")
    sub.add_argument("--prune-samples", type=flags.COUNT, default=None,
                     help="profiles used by --prune (default 100000; a run on data: its "
                          "validation rows)")
    sub.add_argument("--seed", type=flags.SEED, default=None,
                     help="seed of the --prune profiles and of the warm-up bids (default: the "
                          "model's seed + 1, its validation sample); a contextual model: of "
                          "--selection-samples")
    sub.add_argument("--sizes", type=flags.sizes, default=None,
                     help="a contextual model: the sizes served, e.g. 2x5,3x7 (default: the "
                          "trained ones)")
    sub.add_argument("--selection-samples", type=flags.checked("integer", int, minimum=2),
                     default=None,
                     help="a contextual model: at each served size it was not trained on, "
                          "fresh auctions on which its menu must beat per-context Myerson to "
                          "be served there (default 50000; --seed: default the model's seed "
                          "+ 4)")
    return sub


def _add_query_arguments(sub):
    """`tf-ama query`'s (and `serving/client.py`'s) flags: `(--rest URL | --grpc HOST:PORT
    [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]) --model NAME [--version V]
    (--bids JSON | --menu | --metadata) [--timeout S]`."""
    where = sub.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", metavar="URL", help="REST endpoint, e.g. http://localhost:8501")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint, e.g. localhost:8500")
    sub.add_argument("--model", required=True, help="served model name")
    sub.add_argument("--version", type=flags.VERSION, default=None,
                     help="model version (default: the latest the server has)")
    what = sub.add_mutually_exclusive_group(required=True)
    what.add_argument("--bids", help="JSON [batch][bidder][item], e.g. '[[[0.5,0.2],[0.3,0.9]]]'")
    what.add_argument("--menu", action="store_true", help="print the served menu")
    what.add_argument("--metadata", action="store_true", help="print the signatures")
    sub.add_argument("--bidder-context", help="a contextual model: JSON [batch][bidder][feature]")
    sub.add_argument("--item-context", help="a contextual model: JSON [batch][item][feature]")
    sub.add_argument("--timeout", type=flags.timeout, default=30.0,
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
    subcommands = parser.add_subparsers(dest="command", required=True)

    sub = subcommands.add_parser("settings", help="list the built-in settings")
    sub.add_argument("--show", metavar="NAME", default=None,
                     help="print setting NAME (or a JSON file's) as JSON: save it, edit it, "
                          "train on it with tf-ama train FILE.json")
    sub.set_defaults(run=commands.settings)

    sub = subcommands.add_parser("baselines", help="VCG, separate Myerson and grand bundle revenue")
    sub.add_argument("setting")
    sub.add_argument("--samples", type=flags.COUNT, default=None,
                     help="profiles (default 100000); a setting made from data: its test rows")
    sub.add_argument("--seed", type=flags.SEED, default=1)
    sub.add_argument("--json", action="store_true")
    _add_progress_flag(sub)
    sub.set_defaults(run=commands.baselines)

    _add_train_arguments(subcommands.add_parser(
        "train", help="train an AMA with Keras fit (re-run to resume)")).set_defaults(run=commands.train)

    sub = _add_model_command(subcommands, "evaluate", "exact evaluation against the baselines")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--sizes", type=flags.sizes, default=None,
                     help="a contextual model: the sizes to evaluate, e.g. 3x7 (default: the "
                          "trained ones)")
    sub.add_argument("--outcomes", metavar="FILE", type=flags.outcomes_file, default=None,
                     help="write every profile's bids, menu index, allocation, payments and "
                          "values to FILE (.npz, or .csv: one line per profile), streamed and "
                          "atomically; columns in tf_ama/evaluation/outcome_files.py")
    _add_progress_flag(sub)
    sub.set_defaults(run=commands.evaluate)

    sub = _add_model_command(subcommands, "menu", "the menu entries actually used")
    sub.add_argument("--plot", help="write a PNG of the used allocations here")
    sub.set_defaults(run=commands.menu)

    _add_export_arguments(subcommands.add_parser(
        "export", help="export a trained run as a TF Serving SavedModel version folder",
        description="Export a tf_ama run as a TF Serving SavedModel version folder; prints "
                    "the new folder (BASE_DIR/1, then /2, ...).")).set_defaults(run=commands.export)

    _add_query_arguments(subcommands.add_parser(
        "query", help="query an auction served by TensorFlow Serving (REST or gRPC)",
        description="Send bids (or ask for the menu or the signatures) to a model served by "
                    "TensorFlow Serving; prints the answer as JSON, after checking it against "
                    "the request (shapes, dtypes, ranges, individual rationality).")
                        ).set_defaults(run=commands.query)
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
