"""Contextual auctions (issue 16): the acceptance table, the lottery AMA without contexts, and
transfer to unseen sizes.

    python benchmarks/contextual_runs.py --out runs/contextual --jobs contextual [--rows 0 2]
    python benchmarks/contextual_runs.py --out runs/contextual --jobs lottery
    python benchmarks/contextual_runs.py --out runs/contextual --jobs transfer
    python benchmarks/contextual_runs.py --out runs/contextual --jobs defaults [--seeds 0]
    python benchmarks/contextual_runs.py --out runs/contextual --table benchmarks/contextual_runs.md

Flags after `--` go to every `tf-ama train` of the contextual and transfer jobs (none for the
tables; tests/benchmarks_test.py passes tiny sizes).

* `contextual`: `tf-ama train SETTING --sizes SIZE --seed S` (the product's defaults), per
  row and seed; exact revenue on the 100 000 auctions of the run's evaluation seed (seed + 2),
  against per-context VCG and Myerson on the same auctions (`tf_ama.evaluation.contextual`).
* `lottery`: a lottery AMA (K = 1024, the paper's menu, lambda 100, 2000 steps of 4096 at
  Adam 0.01) trained on 2^20 bid profiles of the same setting and size, contexts dropped,
  evaluated exactly on the bids of the same 100 000 auctions as the contextual run of that
  seed.
* `transfer`: the acceptance rows' models (seed 0) evaluated on sizes they never saw: the
  2x5 model on 3x10 and the 3x10 model on 2x5, and setting B's 5x2 model on 3x2 and 8x2;
  beside each, a model trained on that size (the row's seed-0 run, else trained here with
  the defaults) on the same auctions: the gap.
* `defaults` (issue 32): `tf-ama train SETTING --seed S` with no other flag, every size of the
  setting in one model (a mixture of sizes), per setting and seed; each size's exact revenue
  as served (the trained menu, or per-context Myerson where the run chose it), and the
  model's network on sizes between the trained ones that it never saw (`UNSEEN`).
* `alone` (issue 32): `tf-ama train SETTING --sizes SIZE --seed S` for each size the
  defaults train (or `--sizes`), seed 0 unless `--seeds`: the size-trained model beside
  each row of the defaults table, for the mixture's gap.

Runs resume where they stopped; finished ones are only read. Minutes are wall-clock minutes
of each `tf-ama train` process (the machine may be shared: see the README's notes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from recipe_runs import read, run

# (setting, size, seeds, flags beyond the defaults): issue 16's acceptance rows, each size
# trained alone. (Until issue 32, 3x10 ran batches of 256 auctions for time; with the graph
# evaluation and the bundles' discount its default run takes about 10 minutes.)
# Rows in the order they are run by two queues (--rows 0 1 and --rows 2).
ROWS = (
    ("contextual_a", "2x5", (0, 1, 2), ()),
    ("contextual_b", "5x2", (0, 1, 2), ()),
    ("contextual_a", "3x10", (0, 1, 2), ()),
)
# (setting, the row's trained size, evaluated unseen sizes, seed)
TRANSFER = (
    ("contextual_a", "2x5", "3x10", 0),
    ("contextual_a", "3x10", "2x5", 0),
    ("contextual_b", "5x2", "3x2,8x2", 0),
)
EVALUATION_SAMPLES = 100_000
# (setting, seeds): `tf-ama train SETTING --seed S`, the defaults, every size of the setting.
DEFAULTS = (("contextual_a", (0, 1, 2)), ("contextual_b", (0, 1, 2)))
# Sizes between contextual_a's trained ones (2x2, 2x5, 2x10, 3x2, 3x5, 3x10) that its default
# runs never see; contextual_b trains every bidder count from 2 to 10 on its two items.
UNSEEN = {"contextual_a": "2x3,2x7,3x3,3x7"}


def row_dir(out, setting, sizes, seed):
    return os.path.join(out, f"{setting}-{sizes.replace(',', '_')}", f"seed-{seed}")


def contextual_jobs(out, rows, seeds=None, train_flags=()):
    for index in rows:
        setting, size, row_seeds, flags = ROWS[index]
        for seed in row_seeds if seeds is None else seeds:
            run(["train", setting, "--sizes", size, "--seed", str(seed), *flags, *train_flags],
                row_dir(out, setting, size, seed))


def lottery_without_contexts(setting_name, size, seed, path, menu_size=1024, profiles=1 << 20,
                             batch_size=4096, epochs=20, steps_per_epoch=100,
                             evaluation_samples=EVALUATION_SAMPLES):
    """Trains and evaluates the lottery AMA on the bids alone; writes `path/lottery.json`.
    The defaults are the table's (K = 1024, 2000 steps of 4096 from 2^20 profiles)."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_ama
    from tf_ama.data.contexts import get_contextual_setting, parse_size

    target = os.path.join(path, "lottery.json")
    if os.path.exists(target):
        return read(path, "lottery.json")
    start = time.perf_counter()
    contextual = get_contextual_setting(setting_name)
    num_bidders, num_items = parse_size(size)
    bids = contextual.sample(profiles, seed=seed + 1000, size=size)[0]
    setting = tf_ama.Setting(f"{setting_name}_{size}_bids", num_bidders, num_items)
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=menu_size,
                                           seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensor_slices(bids).shuffle(1 << 16, seed=seed).batch(
        batch_size, drop_remainder=True).repeat()
    model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    evaluation = contextual.sample(evaluation_samples, seed + 2, size, tf.float64)[0]
    revenue = np.concatenate([
        tf.reduce_sum(model(evaluation[i:i + 8192])["payments"], axis=1).numpy()
        for i in range(0, evaluation_samples, 8192)])
    result = {"revenue": float(revenue.mean()),
              "revenue_stderr": float(revenue.std(ddof=1) / np.sqrt(len(revenue))),
              "seconds": time.perf_counter() - start}
    os.makedirs(path, exist_ok=True)
    with open(target, "w") as file:
        json.dump(result, file)
    return result


def lottery_jobs(out, rows, seeds=None):
    for index in rows:
        setting, size, row_seeds, _ = ROWS[index]
        for seed in row_seeds if seeds is None else seeds:
            lottery_without_contexts(setting, size, seed,
                                     os.path.join(row_dir(out, setting, size, seed), "lottery"))


def transfer_jobs(out, train_flags=(), samples=None):
    for setting, trained, unseen, seed in TRANSFER:
        for size in unseen.split(","):  # the model trained on that size, for the gap
            run(["train", setting, "--sizes", size, "--seed", str(seed),
                 *_row_flags(setting, size), *train_flags], row_dir(out, setting, size, seed))
        path = row_dir(out, setting, trained, seed)  # trained by the contextual jobs
        target = os.path.join(path, "transfer.json")
        if not os.path.exists(target):
            result = subprocess.run(
                [sys.executable, "-m", "tf_ama.cli.app", "evaluate", path, "--sizes", unseen,
                 "--json", *(() if samples is None else ("--samples", str(samples)))],
                check=True, capture_output=True, text=True)
            with open(target, "w") as file:
                file.write(result.stdout)


def defaults_jobs(out, seeds=None, train_flags=(), samples=None):
    """The default runs, seed by seed (each setting in turn), then their unseen sizes."""
    for seed in sorted({s for _, row_seeds in DEFAULTS for s in row_seeds}
                       if seeds is None else seeds):
        for setting, row_seeds in DEFAULTS:
            if seeds is None and seed not in row_seeds:
                continue
            path = row_dir(out, setting, "defaults", seed)
            run(["train", setting, "--seed", str(seed), *train_flags], path)
            target = os.path.join(path, "unseen.json")
            if setting in UNSEEN and not os.path.exists(target):
                result = subprocess.run(
                    [sys.executable, "-m", "tf_ama.cli.app", "evaluate", path, "--sizes",
                     UNSEEN[setting], "--json",
                     *(() if samples is None else ("--samples", str(samples)))],
                    check=True, capture_output=True, text=True)
                with open(target, "w") as file:
                    file.write(result.stdout)


def alone_jobs(out, sizes=None, seeds=None, train_flags=()):
    """Each size of the default runs trained alone, seed by seed (0 unless `seeds`)."""
    from tf_ama.data.contexts import get_contextual_setting

    for seed in seeds or (0,):
        for setting, _ in DEFAULTS:
            names = [f"{m}x{n}" for m, n in get_contextual_setting(setting).sizes]
            for size in names if sizes is None else [s for s in sizes if s in names]:
                run(["train", setting, "--sizes", size, "--seed", str(seed),
                     *_row_flags(setting, size), *train_flags],
                    row_dir(out, setting, size, seed))


def defaults_table(out):
    """Per setting and size: the default runs' served revenue against per-context Myerson,
    which the run served (t: its menu, M: Myerson), and the size-trained row's revenue."""
    lines = ["| setting | size | seen in training | revenue: mean (each seed) | per-context "
             "Myerson | gain over Myerson (paired, each seed) | served (t: menu, M: Myerson) | "
             "trained on the size alone (the mixture's gap to it) | minutes per seed (whole "
             "run) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setting, seeds in DEFAULTS:
        paths = [row_dir(out, setting, "defaults", seed) for seed in seeds]
        paths = [p for p in paths if os.path.exists(os.path.join(p, "evaluation.json"))]
        if not paths:
            continue
        minutes = f"{statistics.mean(read(p, 'seconds.json') for p in paths) / 60:.1f}"
        seen = [read(p) for p in paths]
        unseen = [read(p, "unseen.json") for p in paths
                  if os.path.exists(os.path.join(p, "unseen.json"))]
        served = [read(p, "selection.json") for p in paths]
        for reports, is_seen in ((seen, "yes"), (unseen, "no")):
            for size in sorted(reports[0] if reports else {},
                               key=lambda name: tuple(map(int, name.split("x")))):
                rows = [r[size] for r in reports]
                kept = ("-" if is_seen == "no" else " ".join(
                    "M" if size in s.get("myerson_sizes", ()) or s.get("kept") == "myerson"
                    else "t" for s in served))
                alone = [read(row_dir(out, setting, size, seed))[size]["revenue"]
                         for seed in seeds if os.path.exists(os.path.join(
                             row_dir(out, setting, size, seed), "evaluation.json"))]
                revenues = ", ".join(f"{r['revenue']:.4f}" for r in rows)
                gains = ", ".join(f"{r['gain']:+.4f} ± {r['gain_stderr']:.4f}" for r in rows)
                lines.append(
                    f"| {setting} | {size} | {is_seen} | "
                    f"**{_mean([r['revenue'] for r in rows])}** ({revenues}) "
                    f"| {_mean([r['myerson'] for r in rows])} | {gains} | {kept} "
                    f"| {_alone(alone, rows)} | {minutes if is_seen == 'yes' else '-'} |")
    return "\n".join(lines)


def _row_flags(setting, size):
    """The acceptance row's flags for `setting` and `size` (none if it is not a row)."""
    return next((flags for row_setting, row_size, _, flags in ROWS
                 if (row_setting, row_size) == (setting, size)), ())


def _alone(alone, rows):
    """The size-trained revenue (mean of its seeds) and the mixture's relative gap to it."""
    if not alone:
        return "-"
    mixture = statistics.mean(r["revenue"] for r in rows)
    return f"{statistics.mean(alone):.4f} ({mixture / statistics.mean(alone) - 1:+.1%})"


def _mean(values):
    return f"{statistics.mean(values):.4f}" if values else "-"


def table(out):
    lines = ["| setting | flags | revenue: mean (each seed) | per-context Myerson | gain over "
             "Myerson (paired, mean ± se of each seed) | VCG | lottery AMA without contexts | "
             "minutes per seed |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setting, size, seeds, flags in ROWS:
        reports, lotteries, minutes = [], [], []
        for seed in seeds:
            path = row_dir(out, setting, size, seed)
            if not os.path.exists(os.path.join(path, "evaluation.json")):
                continue
            reports.append(read(path)[size])
            minutes.append(read(path, "seconds.json") / 60)
            if os.path.exists(os.path.join(path, "lottery", "lottery.json")):
                lotteries.append(read(os.path.join(path, "lottery"), "lottery.json")["revenue"])
        if not reports:
            continue
        revenues = [r["revenue"] for r in reports]
        gains = ", ".join(f"{r['gain']:+.4f} ± {r['gain_stderr']:.4f}" for r in reports)
        lines.append(
            f"| {setting} | {' '.join(('--sizes', size) + flags)} | **{_mean(revenues)}** ({', '.join(f'{v:.4f}' for v in revenues)}) "
            f"| {_mean([r['myerson'] for r in reports])} | {gains} "
            f"| {_mean([r['vcg'] for r in reports])} | {_mean(lotteries)} "
            f"| {statistics.mean(minutes):.1f} |")
    lines += ["", "| setting | trained on | evaluated on | revenue | VCG | Myerson | trained on "
              "that size | gap |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setting, trained, unseen, seed in TRANSFER:
        path = os.path.join(row_dir(out, setting, trained, seed), "transfer.json")
        if not os.path.exists(path):
            continue
        with open(path) as file:
            reports = json.load(file)
        for size in unseen.split(","):
            report = reports[size]
            direct_path = row_dir(out, setting, size, seed)
            direct = (read(direct_path)[size]["revenue"]
                      if os.path.exists(os.path.join(direct_path, "evaluation.json")) else None)
            direct_cell = "-" if direct is None else f"{direct:.4f}"
            gap = "-" if direct is None else f"{report['revenue'] - direct:+.4f}"
            lines.append(
                f"| {setting} | {trained} | {size} | {report['revenue']:.4f} | "
                f"{report['vcg']:.4f} | {report['myerson']:.4f} | {direct_cell} | {gap} |")
    return "\n".join(lines)


def main(argv=None):
    """Runs the jobs asked for; prints and returns the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs",
                        choices=("contextual", "lottery", "transfer", "defaults", "alone"))
    parser.add_argument("--rows", type=int, nargs="*", default=list(range(len(ROWS))))
    parser.add_argument("--seeds", type=int, nargs="*", default=None,
                        help="contextual, lottery, defaults and alone jobs: only these seeds "
                             "(default: the row's; alone: 0)")
    parser.add_argument("--sizes", nargs="*", default=None,
                        help="alone jobs: only these sizes (default: every size the defaults "
                             "train)")
    parser.add_argument("--transfer-samples", type=int, default=None,
                        help="transfer and defaults jobs: `tf-ama evaluate --samples` of the "
                             "unseen sizes (default: its 100 000)")
    parser.add_argument("--table", help="write the markdown tables here")
    parser.add_argument("train_flags", nargs="*",
                        help="after `--`: flags for every tf-ama train run (default: none)")
    args = parser.parse_args(argv)
    if args.jobs == "contextual":
        contextual_jobs(args.out, args.rows, args.seeds, args.train_flags)
    elif args.jobs == "lottery":
        lottery_jobs(args.out, args.rows, args.seeds)
    elif args.jobs == "transfer":
        transfer_jobs(args.out, args.train_flags, args.transfer_samples)
    elif args.jobs == "defaults":
        defaults_jobs(args.out, args.seeds, args.train_flags, args.transfer_samples)
    elif args.jobs == "alone":
        alone_jobs(args.out, args.sizes, args.seeds, args.train_flags)
    text = table(args.out) + "\n\n" + defaults_table(args.out)
    print(text)
    if args.table:
        with open(args.table, "w") as file:
            file.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
