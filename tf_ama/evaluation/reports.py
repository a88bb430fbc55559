r"""Exact evaluation of an AMA: revenue, IR, the regret certificate, the menu actually used.

Every number here comes from `tf_ama.exact_outcome` (float64, ties to the lowest index) on
`num_samples` fresh valuation profiles drawn block by block by
`tf_ama.data.settings.sample_blocks(setting, num_samples, seed)` (or, for a setting made from
data, its held-out rows: `settings.evaluation_sample`) (the profiles the baselines are
computed on; up to `settings.sample_block_size(setting)` profiles, e.g. 279 620 for 3x10,
exactly `setting.sample(num_samples, seed)` cast to float64). Memory stays bounded whatever
`num_samples` is: one sample block, a few calls' outcomes and a few
`[micro_batch_size, num_bidders + 1, menu_size]` tensors. The seed defaults to the model's
evaluation seed (`tf_ama.utils.seeds`: `model.seed + 2`, a sample that neither training nor
validation drew; `prune` selects on the validation sample, `+ 1`):

    report = tf_ama.evaluate(model, num_samples=100_000)
    print(report.format_table())               # revenue +- stderr (95% CI), IR, regret, baselines
    tf_ama.evaluate(model, 10_000_000, progress=True, outcomes="outcomes.npz")  # tf_ama.evaluation.outcome_files
    entries = tf_ama.menu_usage(model)         # the entries actually chosen, most used first
    print(tf_ama.format_menu_table(entries))
    small = tf_ama.prune(model)                # a fixed AMA with only the entries that matter

Although a learned menu has thousands of entries, only a few are ever chosen (paper, section
6.3 and Table 4: 7-10 of 4096 for 2x2 U[0,1]). `prune` keeps those, so that evaluation and
serving get cheaper; the pruned menu is still an AMA, so still strategyproof and IR.

Which entries `prune` must keep: the payment of bidder `i` is
`(max_k W_-i[k] - W_-i[k*]) / w_i`, and the entry attaining `max_k W_-i[k]` is the one the AMA
would choose if bidder `i` bid 0, and need not be chosen on any sampled profile. Dropping it
changes payments (shown on a random unit_demand_2x4_spherical menu by
`tests/evaluation_test.py`, `test_counterfactual_entries_are_kept`), so `prune` keeps the
chosen entries `k*`, for each profile and bidder the (lowest-index) maximizer of `W_-i`, and
the empty entry 0.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import statistics

import numpy as np
import tensorflow as tf

from tf_ama.data import data_files
from tf_ama.data.settings import evaluation_sample
from tf_ama.evaluation import outcome_files
from tf_ama.evaluation.contextual import evaluate_contextual
from tf_ama.evaluation.optimum import best_possible, reference
from tf_ama.evaluation.scanning import check_arguments, count_entries, menu_entries, scan
from tf_ama.models.contextual import ContextualAuction
from tf_ama.utils import checks, seeds
from tf_ama.utils.progress import Progress

# The two-sided 95 % quantile of the standard normal, 1.959963984540054: the revenue's
# confidence interval is revenue +- Z_95 * stderr (a mean of N >> 30 i.i.d. profiles).
Z_95 = statistics.NormalDist().inv_cdf(0.975)


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Exact evaluation of an AMA on `num_samples` profiles (see `evaluate`).

    Attributes:
      setting: name of the setting.
      menu_type: the menu kind (`model.menu_layer.kind`: `"lottery"`, `"deterministic"`, ...).
      num_samples, seed: the profiles evaluated, `settings.sample_blocks(setting,
        num_samples, seed)` (the seed used, also when it defaulted to the model's
        evaluation seed); for a setting made from data, the rows of the split evaluated and
        None.
      revenue: mean over profiles of the sum of payments.
      revenue_stderr: standard error of `revenue` (sample std / sqrt(num_samples)).
      revenue_ci95: `[low, high]`, the 95 % confidence interval of the expected revenue,
        `revenue -+ Z_95 * revenue_stderr` (normal approximation; NaN for one profile).
      revenue_per_bidder: `[num_bidders]` mean payment of each bidder.
      welfare: mean over profiles of the sum of the bidders' values of the allocation.
      ir_violations: number of (profile, bidder) pairs whose served utility is < 0 or whose
        payment formula exceeds the value by more than 1e-9 before the clip that removes
        rounding (`exact_outcome`'s `ir_excess`); 0 for an AMA.
      max_regret: largest exact regret certificate (0 up to rounding for an AMA).
      entries_used: number of distinct menu entries chosen on the profiles.
      lottery_entries_used: how many of those are lotteries (not all 0/1).
      menu_size: number of explicit entries in the menu, the empty one included.
      baselines: name -> `BaselineResult.to_dict()` on the same number of samples and seed.
      family_share: the fraction of profiles on which an entry of the item-separable family
        was chosen (`tf_ama.core.separable`), None for a menu without the family.
      best_possible: `{"revenue", "label"}`, the most any strategyproof mechanism earns in
        the setting (`tf_ama.evaluation.optimum.best_possible`), None where it is unknown.
      reference: `{"revenue", "label"}`, a built-in setting's published or optimal revenue
        (`tf_ama.evaluation.optimum.reference`), None for other settings.
    """

    setting: str
    menu_type: str
    num_samples: int
    seed: int | None
    revenue: float
    revenue_stderr: float
    revenue_ci95: list
    revenue_per_bidder: list
    welfare: float
    ir_violations: int
    max_regret: float
    entries_used: int
    lottery_entries_used: int
    menu_size: int
    baselines: dict = dataclasses.field(default_factory=dict)
    family_share: float | None = None
    best_possible: dict | None = None
    reference: dict | None = None

    def to_dict(self) -> dict:
        """A JSON-serializable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields) -> "EvaluationReport":
        """The report `to_dict` wrote (e.g. a run's `evaluation.json`)."""
        return cls(**fields)

    def format_table(self) -> str:
        """The report as a plain-text table, baselines and known reference included."""
        bidders = ", ".join(f"{p:.4f}" for p in self.revenue_per_bidder)
        lines = [
            f"Exact evaluation of {self.setting} ({self.menu_type} menu, {self.menu_size} "
            f"entries) on {self.num_samples:,} profiles " + (
                f"(seed {self.seed})" if self.seed is not None else "(held-out rows of the data)"),
            f"  {'revenue':<22}{self.revenue:.4f} +- {self.revenue_stderr:.4f} (standard error; "
            f"95% CI [{self.revenue_ci95[0]:.4f}, {self.revenue_ci95[1]:.4f}])",
            f"  {'revenue per bidder':<22}{bidders}",
            f"  {'welfare':<22}{self.welfare:.4f}",
            f"  {'IR violations':<22}{self.ir_violations} (must be 0)",
            f"  {'max regret':<22}{self.max_regret:.2e} (exact certificate; must be <= 1e-9)",
            f"  {'menu entries used':<22}{self.entries_used} of {self.menu_size} "
            f"({self.lottery_entries_used} lotteries)",
        ]
        if self.family_share is not None:
            lines[-1] = (f"  {'menu entries used':<22}{self.entries_used}: explicit ones (of "
                         f"{self.menu_size}, {self.lottery_entries_used} lotteries) and "
                         f"allocations of the "
                         f"{'bundle-size' if self.menu_type.endswith('bundle-sizes') else 'item-separable'}"
                         " family")
            lines.append(f"  {'family chosen on':<22}{self.family_share:.2%} of the profiles")
        if self.baselines:
            lines += ["", f"  {'mechanism':<22}{'revenue':>9}{'stderr':>9}{'AMA minus':>10}",
                      f"  {'this AMA':<22}{self.revenue:>9.4f}{self.revenue_stderr:>9.4f}"]
            for name, result in self.baselines.items():
                if result.get("revenue") is None:  # does not apply (e.g. unit demand)
                    lines.append(f"  {name:<22}{'n/a':>9}")
                    continue
                stderr = result.get("stderr")
                stderr = "" if stderr is None else f"{stderr:.4f}"
                lines.append(f"  {name:<22}{result['revenue']:>9.4f}{stderr:>9}"
                             f"{self.revenue - result['revenue']:>+10.4f}")
        if self.best_possible is not None:
            best = self.best_possible
            share = (f"this AMA earns {self.revenue / best['revenue']:.2%} of it"
                     if best["revenue"] > 0 else "no mechanism earns anything")
            lines.append(f"  {'best possible':<22}{best['revenue']:.4f} ({best['label']}): "
                         f"{share}")
        elif self.reference is not None:
            lines.append(f"  reference: {self.reference['label']} {self.reference['revenue']}")
        return "\n".join(lines)


def evaluate(model, num_samples=None, seed=None, baselines=True, micro_batch_size=None,
             jit_compile="auto", *, progress=False, outcomes=None, split="test", sizes=None,
             chunk_size=checks.RENAMED):
    """Exact evaluation of `model` on `num_samples` fresh profiles, in bounded memory.

    Args:
      model: a `tf_ama.AffineMaximizerAuction`.
      num_samples: profiles `tf_ama.data.settings.sample_blocks(setting, num_samples, seed)`
        (up to 279 620 3x10 profiles exactly `setting.sample(num_samples, seed)`), drawn
        and evaluated block by block: 10^7 profiles need no more memory than 10^5. Default
        100 000; a model whose setting is made from data (`tf_ama.data.empirical`) is evaluated
        on every row of its held-out `split` instead (`settings.evaluation_sample`: leave
        `num_samples` out; `seed` then draws nothing).
      seed: an int in [0, 2**31) (stateless sampling; the baselines use the same profiles);
        default `tf_ama.utils.seeds.evaluation_seed(model.seed)`, i.e. `model.seed + 2`, a sample
        that training and validation never drew (what `tf-ama train` evaluates on).
      baselines: also compute `tf_ama.baselines(...)` on the same profiles (paired).
      micro_batch_size: profiles per block of `exact_outcome` (default
        `tf_ama.core.mechanism.menu_block_size`: ~2 MB float64 blocks for a listed menu).
      jit_compile: compute the blocks with XLA (`exact_outcome(..., jit_compile=True)`:
        faster, benchmarks/README.md, "Exact evaluation"; payments may differ from the
        served ones in the last bits, ~1e-15). False evaluates exactly the computation the
        exported model serves. "auto" (default): XLA, but for a menu with the bundle-size
        family, whose program runs faster without it.
      progress: show a progress bar (`keras.utils.Progbar`) on standard error, over the
        profiles evaluated, then over those the baselines draw.
      outcomes: None, or a file path ending in `.npz` or `.csv`: every profile's bids, menu
        index, allocation, payments and values are written there, streamed and atomically
        (`tf_ama.evaluation.outcome_files`, whose `read_outcomes` reads it back).
      split: for a setting made from data, the held-out rows evaluated: `"test"` (the
        final evaluation, and the baselines') or `"validation"` (a run's choices; without
        baselines). Other settings have no splits: their sample is `seed`'s.
      chunk_size: deprecated name of `micro_batch_size`.

    Returns:
      An `EvaluationReport` (its `seed` is the seed used); for a `tf_ama.ContextualAuction`,
      `{size: SizeReport}` of each of `sizes` (default: the trained ones; any size works;
      `tf_ama.evaluation.contextual`), where only `num_samples` and `seed` apply too.
    """
    if isinstance(model, ContextualAuction):
        return _evaluate_contextual(model, num_samples, seed, micro_batch_size, outcomes, split,
                                    sizes)
    if sizes is not None:
        raise ValueError("`sizes` is for a contextual model (tf_ama.ContextualAuction).")
    num_samples, seed, micro_batch_size, jit_compile = check_arguments(
        model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
        seeds.evaluation_seed)
    progress = checks.boolean("progress", progress)
    if outcomes is not None:
        outcomes = outcome_files.check_path("outcomes", outcomes)
    if baselines and split != "test":
        raise ValueError(f"`split`={split!r}: the baselines are computed on the test rows; "
                         "pass baselines=False to evaluate another split.")
    sample = evaluation_sample(model.setting, num_samples, seed, split)
    num_samples = sample[0]
    if baselines:  # refused now, not after the pass over the model
        from tf_ama.data.reserves import check_reserve_work

        check_reserve_work(model.setting, num_samples, model.setting.demand == "additive")
    menu = model.menu(tf.float64)
    total = mean = m2 = welfare = 0.0
    count = 0
    payments_sum = np.zeros(model.setting.num_bidders)
    ir_violations = 0
    max_regret = -math.inf
    counts = collections.Counter()
    bar = Progress(num_samples, "profile", progress,
                   f"Exact evaluation of {model.setting.name} on {num_samples:,} profiles")
    with contextlib.ExitStack() as stack:
        writer = None if outcomes is None else stack.enter_context(outcome_files.outcome_writer(
            outcomes, num_samples, model.setting.num_bidders, model.setting.num_items,
            info={"setting": model.setting.to_dict(), "seed": seed, "num_samples": num_samples,
                  "menu_type": model.menu_layer.kind, "menu_size": int(model.menu_size),
                  "jit_compile": jit_compile}))
        for outcome in scan(model, sample, micro_batch_size, menu,
                             with_certificate=True, jit_compile=jit_compile):
            revenue = outcome["payments"].sum(axis=1)  # [profiles of the call]
            # Chan et al.'s pairwise update of (count, mean, sum of squared deviations).
            size, call_mean = len(revenue), float(revenue.mean())
            delta = call_mean - mean
            m2 += float(((revenue - call_mean) ** 2).sum())
            m2 += delta ** 2 * count * size / (count + size)
            mean += delta * size / (count + size)
            count += size
            total += float(revenue.sum())
            payments_sum += outcome["payments"].sum(axis=0)
            welfare += float(outcome["values"].sum())
            # Served payments never exceed the value (rounding is clipped); a violation is a
            # formula payment above the value by more than rounding.
            ir_violations += int(np.count_nonzero(
                (outcome["values"] - outcome["payments"] < 0) | (outcome["ir_excess"] > 1e-9)))
            max_regret = max(max_regret, float(outcome["regret"].max()))
            count_entries(counts, outcome["menu_index"])
            if writer is not None:
                writer.write(outcome)
            bar.add(size)
    entries = menu_entries(model, counts)
    details = {}
    if baselines:
        from tf_ama.evaluation.baselines import baseline_details

        details = {name: result.to_dict() for name, result in baseline_details(
            model.setting, num_samples=num_samples, seed=seed, progress=progress).items()}
    revenue = total / count
    stderr = math.sqrt(m2 / (count - 1) / count) if count > 1 else math.nan
    return EvaluationReport(
        setting=model.setting.name,
        menu_type=model.menu_layer.kind,
        num_samples=num_samples,
        seed=None if data_files.is_empirical(model.setting) else seed,
        revenue=revenue,
        revenue_stderr=stderr,
        revenue_ci95=confidence_interval(revenue, stderr),
        revenue_per_bidder=[float(p) for p in payments_sum / count],
        welfare=welfare / count,
        ir_violations=ir_violations,
        max_regret=max_regret,
        entries_used=len(entries),
        lottery_entries_used=sum(entry.is_lottery for entry in entries),
        menu_size=int(model.menu_size),
        baselines=details,
        family_share=(None if menu.separable_boosts is None else
                      sum(e.count for e in entries if e.family) / count),
        best_possible=_as_dict(best_possible(model.setting)),
        reference=_as_dict(reference(model.setting)),
    )


def _as_dict(found):
    return None if found is None else dataclasses.asdict(found)


def _evaluate_contextual(model, num_samples, seed, micro_batch_size, outcomes, split, sizes):
    """`evaluate` of a contextual model, per trained size; refuses what does not apply."""
    given = [name for name, value, default in (
        ("micro_batch_size", micro_batch_size, None), ("outcomes", outcomes, None),
        ("split", split, "test")) if value != default]
    if given:
        raise ValueError(f"{given}: not for a contextual model (its auctions differ in size; "
                         "its menus are computed per auction); evaluate without them.")
    return evaluate_contextual(model, sizes, num_samples=100_000 if num_samples is None
                               else checks.integer("num_samples", num_samples, minimum=1),
                               seed=checks.optional(checks.seed, "seed", seed))


def confidence_interval(mean, stderr, z=Z_95):
    """`[mean - z stderr, mean + z stderr]`, floats: the two-sided interval of a mean whose
    standard error is `stderr` (default `z`: 95 %, normal approximation)."""
    return [float(mean - z * stderr), float(mean + z * stderr)]


