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
import concurrent.futures
import contextlib
import dataclasses
import math
import statistics

import numpy as np
import tensorflow as tf

from tf_ama.core import separable
from tf_ama.data import data_files
from tf_ama.evaluation import outcome_files
from tf_ama.utils import checks, seeds
from tf_ama.core.mechanism import default_micro_batch_size, exact_outcome
from tf_ama.utils.progress import Progress
from tf_ama.data.settings import ANCHORS, evaluation_sample

# Profiles per call of the traced exact_outcome (it blocks them internally).
_PROFILES_PER_CALL = 1 << 14
_CALLS_IN_FLIGHT = 2

# An allocation is a lottery if some probability is farther than this from both 0 and 1. A
# softmax never reaches 0 or 1 exactly, so a learned "deterministic" entry sits at 0.9999...:
# one percent separates those from real lotteries (e.g. 0.81 / 0.14).
LOTTERY_TOLERANCE = 0.01

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

    def to_dict(self) -> dict:
        """A JSON-serializable dict of every field."""
        return dataclasses.asdict(self)

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
                         "allocations of the item-separable family")
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
        if self.setting in ANCHORS:
            label, value = ANCHORS[self.setting]
            lines.append(f"  reference: {label} {value}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class MenuEntry:
    """One menu entry chosen on sampled profiles (see `menu_usage`).

    Attributes:
      index: position `k` in the model's menu.
      allocation: `[num_bidders][num_items]` nested list, P(bidder i gets item j).
      boost: `b_k`.
      share: fraction of the profiles on which it was chosen.
      count: number of profiles on which it was chosen.
      is_lottery: some probability is not 0 or 1 (tolerance `LOTTERY_TOLERANCE`).
      family: an entry of the item-separable family (index >= the explicit menu size; its
        boost is `sum_j c[o_j, j]`).
    """

    index: int
    allocation: list
    boost: float
    share: float
    count: int
    is_lottery: bool
    family: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_lottery(allocation, tolerance=LOTTERY_TOLERANCE) -> bool:
    """Whether an allocation `[num_bidders, num_items]` is a lottery (not all 0/1)."""
    allocation = np.asarray(allocation, np.float64)
    return bool(np.any(np.abs(allocation - np.round(allocation)) > tolerance))


def _check_arguments(model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
                     default_seed):
    """`(num_samples, seed, micro_batch_size, jit_compile)` checked, the seed defaulting to
    `default_seed(model.seed)` (`tf_ama.utils.seeds`), `chunk_size` the deprecated name of
    `micro_batch_size`."""
    from tf_ama.models.auction import AffineMaximizerAuction

    if not isinstance(model, AffineMaximizerAuction):
        raise TypeError(
            "`model` must be a tf_ama.AffineMaximizerAuction (trained, deterministic or built "
            f"with from_menu); got {type(model).__name__}. Load a run with "
            "tf_ama.training.runs.load_run(RUN_DIR)."
        )
    micro_batch_size = checks.renamed("chunk_size", chunk_size, "micro_batch_size",
                                      micro_batch_size, stacklevel=4)
    return (checks.optional(checks.integer, "num_samples", num_samples, minimum=1),
            checks.seed("seed", default_seed(model.seed) if seed is None else seed),
            checks.optional(checks.integer, "micro_batch_size", micro_batch_size, minimum=1),
            checks.boolean("jit_compile", jit_compile))


def _slices(blocks, size):
    """The profiles of `blocks` (arrays `[B, m, n]`) re-cut into consecutive arrays of `size`
    profiles (the last one shorter if need be)."""
    pieces, have = [], 0
    for block in blocks:
        start = 0
        while start < len(block):
            piece = block[start:start + size - have]
            pieces.append(piece)
            have += len(piece)
            start += len(piece)
            if have == size:
                yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                pieces, have = [], 0
    if pieces:
        yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _scan(model, sample, micro_batch_size, menu, with_certificate=False,
          with_counterfactual=False, jit_compile=False):
    """Yields, slice by slice of `sample_blocks(setting, num_samples, seed)`, the
    `exact_outcome` of the slice as numpy arrays (with the certificate and
    `counterfactual_index` `[profiles, num_bidders]` if asked), and its `bids`.

    The sample is drawn block by block (`tf_ama.data.settings.sample_blocks`) and re-cut into
    slices, so memory is bounded whatever `num_samples`. All slices have the same shape, so
    one `tf.function` trace serves them all: the last slice is padded with zero bids to the
    full size and the padding is dropped. (`exact_outcome` is batch-invariant bit for bit,
    so a profile's outcome depends neither on its slice nor on its sample block.)
    """
    num_samples, profiles = sample  # settings.evaluation_sample
    micro = micro_batch_size or default_micro_batch_size(model.setting.num_bidders,
                                                         model.menu_size)
    # exact_outcome works through blocks of `micro` profiles inside one call; a slice of whole
    # blocks per call keeps the Python overhead small. The blocks are spread evenly over a
    # multiple of _CALLS_IN_FLIGHT calls (no call runs alone at the end), so that the padding
    # of the last call is less than one block per call.
    blocks = -(-num_samples // micro)
    calls = -(-blocks * micro // _PROFILES_PER_CALL)
    calls = min(blocks, -(-calls // _CALLS_IN_FLIGHT) * _CALLS_IN_FLIGHT)
    per_call = micro * -(-blocks // calls)

    def outcome_of(slice_bids):
        size = len(slice_bids)
        padded = tf.constant(slice_bids, tf.float64)
        if size < per_call:
            padded = tf.pad(padded, [[0, per_call - size], [0, 0], [0, 0]])
        outcome = _traced_exact_outcome(
            padded, *menu, micro_batch_size=micro, with_certificate=with_certificate,
            with_counterfactual=with_counterfactual, jit_compile=jit_compile)
        outcome = {key: value.numpy()[:size] for key, value in outcome.items()}
        outcome["bids"] = slice_bids
        return outcome

    # Two calls in flight: a block's small ops leave cores idle, which the other call uses
    # (benchmarks/README.md, "Exact evaluation"). Results are yielded in order; memory stays
    # two calls' worth (and the sample block they come from).
    with concurrent.futures.ThreadPoolExecutor(_CALLS_IN_FLIGHT) as pool:
        pending = collections.deque()
        for slice_bids in _slices(profiles, per_call):
            pending.append(pool.submit(outcome_of, slice_bids))
            if len(pending) == _CALLS_IN_FLIGHT:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_traced_exact_outcome = tf.function(exact_outcome)  # one trace per menu shape and options


def evaluate(model, num_samples=None, seed=None, baselines=True, micro_batch_size=None,
             jit_compile=True, *, progress=False, outcomes=None, split="test",
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
        `mechanism.default_micro_batch_size`, ~2 MB float64 blocks).
      jit_compile: compute the blocks with XLA (`exact_outcome(..., jit_compile=True)`:
        faster, benchmarks/README.md, "Exact evaluation"; payments may differ from the
        served ones in the last bits, ~1e-15). False evaluates exactly the computation the
        exported model serves.
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
      An `EvaluationReport` (its `seed` is the seed used).
    """
    num_samples, seed, micro_batch_size, jit_compile = _check_arguments(
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
        for outcome in _scan(model, sample, micro_batch_size, menu,
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
            _count(counts, outcome["menu_index"])
            if writer is not None:
                writer.write(outcome)
            bar.add(size)
    entries = _entries(model, counts)
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
    )


def confidence_interval(mean, stderr, z=Z_95):
    """`[mean - z stderr, mean + z stderr]`, floats: the two-sided interval of a mean whose
    standard error is `stderr` (default `z`: 95 %, normal approximation)."""
    return [float(mean - z * stderr), float(mean + z * stderr)]


def _count(counts, menu_index):
    """Adds the chosen entries `menu_index` to `counts` (a Counter: a menu with the family
    has (m + 1)^n more indices than could be counted in an array)."""
    indices, times = np.unique(menu_index, return_counts=True)
    counts.update(dict(zip(indices.tolist(), times.tolist())))


def _entries(model, counts):
    """The `MenuEntry` of every index in `counts`, most used first (ties by index)."""
    allocations, boosts, _, separable_boosts = model.exact_menu()
    order = sorted(counts, key=lambda k: (-counts[k], k))
    family = [k for k in order if k >= model.menu_size]
    if family:  # decoded all at once: a large family can have many thousands in use
        decoded = separable.family_entries(np.asarray(family) - model.menu_size, separable_boosts)
        family = dict(zip(family, zip(*decoded)))
    total = sum(counts.values())
    entries = []
    for k in order:
        allocation, boost = family[k] if k >= model.menu_size else (allocations[k], boosts[k])
        entries.append(MenuEntry(index=int(k), allocation=allocation.tolist(), boost=float(boost),
                                 share=counts[k] / total, count=int(counts[k]),
                                 is_lottery=k < model.menu_size and is_lottery(allocation),
                                 family=k >= model.menu_size))
    return entries


def menu_usage(model, num_samples=None, seed=None, micro_batch_size=None, jit_compile=True,
               *, chunk_size=checks.RENAMED):
    """The menu entries chosen on `settings.sample_blocks(setting, num_samples, seed)`, most
    used first (arguments as in `evaluate`: by default the evaluation seed `model.seed + 2`;
    a setting made from data: its test rows; streamed, in bounded memory).

    Returns:
      A list of `MenuEntry` (ties in use broken by index), one per entry chosen at least once.
    """
    num_samples, seed, micro_batch_size, jit_compile = _check_arguments(
        model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
        seeds.evaluation_seed)
    counts = collections.Counter()
    for outcome in _scan(model, evaluation_sample(model.setting, num_samples, seed),
                         micro_batch_size, model.menu(tf.float64), jit_compile=jit_compile):
        _count(counts, outcome["menu_index"])
    return _entries(model, counts)


def format_menu_table(entries, max_entries=None) -> str:
    """A text table of `menu_usage` entries (the first `max_entries` if given): one header
    line per entry (rank, index, share, count, boost, lottery) and its allocation, one line
    per bidder (P(bidder i gets item j), items left to right)."""
    shown = list(entries)[:max_entries]
    lines = [f"{'rank':>4} {'index':>6} {'share':>8} {'count':>8} {'boost':>10}  lottery"]
    for rank, entry in enumerate(shown, start=1):
        lines.append(f"{rank:>4} {entry.index:>6} {entry.share:>8.2%} {entry.count:>8} "
                     f"{entry.boost:>10.4f}  {'yes' if entry.is_lottery else 'no'}"
                     f"{'  (separable family)' if entry.family else ''}")
        for bidder, row in enumerate(entry.allocation):
            lines.append(f"{'':>13}bidder {bidder + 1}: " + " ".join(f"{p:.3f}" for p in row))
    hidden = len(entries) - len(shown)
    if hidden > 0:
        share = sum(entry.share for entry in list(entries)[len(shown):])
        lines.append(f"... {hidden} more entries, chosen on {share:.2%} of the profiles")
    return "\n".join(lines)


def prune(model, num_samples=None, seed=None, micro_batch_size=None, jit_compile=False, *,
          chunk_size=checks.RENAMED):
    """A fixed AMA with only the menu entries that matter on `settings.sample_blocks(setting,
    num_samples, seed)` (streamed, in bounded memory; a setting made from data: its
    validation rows, `settings.evaluation_sample`).

    The seed defaults to the validation seed `tf_ama.utils.seeds.validation_seed(model.seed)`
    (`model.seed + 1`): the entries are selected on the validation sample, so that `evaluate`'s
    default sample (`model.seed + 2`) stays fresh for the pruned model. Other arguments as in
    `evaluate`.

    Kept, in their original order (entry 0 stays first, ties resolve as before): the empty
    entry 0, every entry chosen on some profile, and every counterfactual maximizer of
    `W_-i` (the entry that sets bidder i's payment; see the module docstring). Boosts and
    bidder weights are unchanged, so on those profiles the pruned model gives the same
    allocations, payments and (mapped back) menu indices; on other profiles it is a
    different, smaller AMA, still strategyproof and IR. That promise is about the served
    computation, so the kept entries are found without XLA by default; `jit_compile=True`
    is faster but could miss an entry on a profile where XLA's rounding breaks a tie
    (within ~1e-15) the other way.

    The item-separable family, if the menu has it, is kept whole (it costs O(m n) per
    profile, whatever its size); its entries follow the pruned explicit ones, so a family
    index `k >= pruned_menu_size` is index `k - pruned_menu_size + model.menu_size` of `model`.

    Returns:
      An `AffineMaximizerAuction` (`menu="fixed"`) with attribute `kept_indices`, an int64
      numpy array `[pruned_menu_size]`: explicit entry `k` of the pruned menu is entry
      `kept_indices[k]` of `model` (map explicit menu indices back with
      `kept_indices[menu_index]`). `kept_indices` is not serialized with the model.
    """
    num_samples, seed, micro_batch_size, jit_compile = _check_arguments(
        model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
        seeds.validation_seed)
    menu = model.menu(tf.float64)
    keep = np.zeros(model.menu_size, bool)
    sample = evaluation_sample(model.setting, num_samples, seed, split="validation")
    for outcome in _scan(model, sample, micro_batch_size, menu, with_counterfactual=True,
                         jit_compile=jit_compile):
        for indices in (outcome["menu_index"], outcome["counterfactual_index"].reshape(-1)):
            keep[indices[indices < model.menu_size]] = True  # the family is kept whole
    keep[0] = True
    kept = np.flatnonzero(keep).astype(np.int64)
    allocations, boosts, bidder_weights, separable_boosts = model.exact_menu()
    pruned = type(model).from_menu(
        model.setting, allocations[kept], boosts[kept], bidder_weights, separable_boosts,
        temperature=model.temperature, seed=model.seed)
    pruned.kept_indices = kept
    return pruned
