"""What each `tf-ama` command does, once `tf_ama.cli.app` has parsed its flags: one function
per command, `COMMAND(args)`. Each imports what it needs when it runs, so that `tf-ama --help`
loads no TensorFlow; errors are reported by `tf_ama.cli.app.run_command`.
"""

from __future__ import annotations

import json
import os
import sys

from tf_ama.cli import flags


def settings(args):
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
                     f"{anchor.revenue} ({anchor.label})" if anchor else ""))
    for name in list_contextual_settings():  # contexts: tf-ama train NAME --sizes MxN
        setting = get_contextual_setting(name)
        rows.append((name, ",".join(f"{m}x{n}" for m, n in setting.sizes), setting.demand,
                     f"{setting.values}(contexts d={setting.bidder_features},"
                     f"{setting.item_features})", "per-context Myerson (tf-ama train)"))
    print(_table(rows))


def baselines(args):
    from tf_ama.evaluation.baselines import baseline_details, format_table

    details = baseline_details(args.setting, num_samples=args.samples, seed=args.seed,
                               progress=_progress(args))
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in details.items()}, indent=2))
    else:
        print(format_table(details))


def train(args):
    """`tf-ama train`; with TF_CONFIG set, as one worker of several (tf_ama.utils.distributed):
    every worker trains, the chief alone evaluates the model and writes the run directory."""
    from tf_ama.data.contexts import is_contextual

    if is_contextual(args.setting):
        if os.environ.get("TF_CONFIG", "").strip():
            raise ValueError("TF_CONFIG is set, but contextual settings train on one machine "
                             "only: unset TF_CONFIG.")
        return _train_contextual(args)
    from tf_ama.utils import distributed

    strategy = distributed.strategy_from_environment()  # before TensorFlow runs anything
    train_setting(args, strategy)
    distributed.wait_for_workers(strategy)  # no worker exits before the chief has written


def train_setting(args, strategy):
    """`tf-ama train` of a setting without contexts, under `strategy`."""
    given = [flag for flag, dest in flags.CONTEXTUAL_FLAGS.items() if hasattr(args, dest)]
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
            name: getattr(args, name) for name in flags.DATA_FLAGS.values()
            if getattr(args, name) is not None})
        print(f"{args.valuations}: {setting.distribution_params['rows']} profiles (train, "
              "validation, test); training resamples the train rows, the final evaluation "
              "is on the test rows.")
    elif any(getattr(args, name) is not None for name in flags.DATA_FLAGS.values()):
        raise ValueError(f"{', '.join(flags.DATA_FLAGS)}: only with --valuations FILE.")
    from tf_ama.training import runs
    from tf_ama.training.recipes import resolve
    from tf_ama.training.report import lottery_phase, read_report
    from tf_ama.training.run import train_run
    from tf_ama.utils import distributed

    # Only the flags given override the recipe's fields (the others are not set: SUPPRESS).
    model_kwargs, training, recipe = resolve(setting, args.recipe, *(
        {name: getattr(args, name) for name in args.sections[section] if hasattr(args, name)}
        for section in ("model", "training")))
    with strategy.scope():  # several workers train together; the chief alone writes the run
        train_run(setting, args.out, model_kwargs, training, recipe=recipe)
    if not distributed.is_chief(strategy):
        print(f"{args.out}: trained as worker {strategy.cluster_resolver.task_id}; the chief "
              "evaluates the model and writes the run directory.")
        return
    report, lottery = read_report(args.out)  # written by train_run
    print(report.format_table())
    if lottery is not None:  # a joined menu: its lottery phase alone, on the same profiles
        print(f"  its lottery menu alone ({lottery_phase(args.out)}): "
              f"{lottery.revenue:.4f} +- {lottery.revenue_stderr:.4f}")
    print(f"\nrun directory: {args.out} (model.keras, evaluation.json, {runs.CURVES}, "
          f"TensorBoard logs in {os.path.join(args.out, runs.LOGS)})")


def _train_contextual(args):
    """`tf-ama train contextual_a --sizes 2x5 ...`: `tf_ama.training.contextual`, by the
    contextual recipe (`tf_ama.training.recipes`)."""
    from tf_ama.evaluation.contextual import format_reports
    from tf_ama.training import runs
    from tf_ama.training.contextual import read_reports
    from tf_ama.training.run import train_run

    if args.valuations is not None:
        raise ValueError("--valuations: contextual settings draw their own contexts and "
                         "values; data files are for settings without contexts.")
    model_kwargs, training, recipe = contextual_recipe(args)
    train_run(args.setting, args.out, model_kwargs, training, recipe=recipe)
    print(format_reports(read_reports(args.out)))  # written by train_run
    print(f"\nrun directory: {args.out} (model.keras, evaluation.json, TensorBoard logs in "
          f"{os.path.join(args.out, runs.LOGS)})")


def contextual_recipe(args):
    """`(model_kwargs, TrainingConfig, record)` of `tf-ama train CONTEXTUAL_SETTING ...`:
    the contextual recipe, with the fields of the flags given (the others are not set)."""
    from tf_ama.training.recipes import resolve

    return resolve(args.setting, args.recipe, *(
        {name: getattr(args, name) for section in sections for name in args.sections[section]
         if hasattr(args, name)} for sections in (("model", "contextual"), ("training",))))


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


def evaluate(args):
    from tf_ama.evaluation import reports

    model = _load_any(args.path)
    if _contextual_model(model):
        from tf_ama.evaluation.contextual import format_reports

        if args.outcomes is not None:
            raise ValueError("--outcomes: not supported for a contextual model (its auctions "
                             "differ in size); evaluate without it.")
        per_size = reports.evaluate(model, num_samples=args.samples, seed=args.seed,
                                    sizes=args.sizes)
        print(json.dumps({k: r.to_dict() for k, r in per_size.items()}, indent=2) if args.json
              else format_reports(per_size))
        return
    if args.sizes is not None:
        raise ValueError("--sizes: only for a contextual model.")
    report = reports.evaluate(model, num_samples=args.samples, seed=args.seed,
                              jit_compile=False if args.no_xla else "auto",
                              progress=_progress(args),
                              outcomes=args.outcomes)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())
    if args.outcomes is not None and not args.json:
        print(f"\nper-profile outcomes written to {args.outcomes} (columns: "
              "tf_ama.evaluation.outcome_files; read back with "
              "tf_ama.evaluation.outcome_files.read_outcomes)")


def _progress(args):
    """`--[no-]progress`: a progress bar on stderr; by default when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _contextual_model(model):
    from tf_ama.models.contextual import ContextualAuction

    return isinstance(model, ContextualAuction)


def menu(args):
    from tf_ama.evaluation.usage import format_menu_table, menu_usage

    model = _load_any(args.path)
    if _contextual_model(model):
        raise ValueError("A contextual model has a menu per auction; see its `menu` signature "
                         "once exported (tf-ama export), or model.menu(contexts) in Python.")
    entries = menu_usage(model, num_samples=args.samples, seed=args.seed,
                         jit_compile=False if args.no_xla else "auto")
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


def export(args):
    """Exports the run `args.run_dir` into `args.base_dir`; prints the new version folder."""
    from tf_ama.serving.export import export_saved_model
    from tf_ama.training.runs import load_run

    model, config = load_run(args.run_dir)
    print(export_saved_model(
        model, args.base_dir, version=args.version, prune=args.prune,
        prune_samples=args.prune_samples, seed=args.seed,
        training_config=config.get("training"), sizes=args.sizes,
        **({} if args.selection_samples is None else
           {"selection_samples": args.selection_samples})))


def query(args):
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
    from tf_ama.serving.client import RestClient
    from tf_ama.serving.grpc_client import GrpcClient

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
