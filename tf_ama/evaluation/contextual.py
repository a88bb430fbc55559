"""Exact evaluation of a contextual auction, size by size, against per-context baselines.

For each size, `evaluate_contextual` draws `num_samples` fresh auctions (contexts and bids,
seed + 2 by default) and computes, with `tf_ama.exact_outcome` on every auction's own menu:

* the model's exact revenue, its regret certificate (0 up to rounding: the menu never sees
  a bid) and the smallest utility (>= 0: IR);
* VCG for the context (the item-separable family with `c = 0`: a second-price auction per
  item, which is VCG for additive bidders);
* Myerson's optimal auction of each item alone for the context (`c[i, j] = -s_ij / 2`,
  `ContextualSetting.separate_myerson_boosts`), if the value model has `uniform_bounds`;

on the same auctions, so that the differences are paired: `gain` is the mean of (model -
Myerson) per auction with its own standard error, much smaller than either revenue's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_ama.core.mechanism import exact_outcome
from tf_ama.data.contexts import parse_size, size_name
from tf_ama.utils import checks, seeds

BLOCK = 2048  # auctions whose menus are built at once (bounds the float64 menus' memory)
# Beyond this many blocks an evaluation traces its block (the menus, the exact outcome and
# both baselines) once: the trace costs about 3 s, a block 0.1-1 s less traced than eager
# (benchmarks/README.md, "Contextual auctions at every size").
TRACED_FROM_BLOCKS = 4
# A menu is served at a size over per-context Myerson only if its paired gain on the size's
# selection auctions exceeds this many standard errors (`choose_sizes`).
SIGNIFICANCE = 2.0
ROUNDING = 1e-9  # nor by a relative gain below this (the same outcomes, rounded apart)


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """Exact revenues on one size's auctions (means and standard errors)."""

    size: str
    num_samples: int
    revenue: float
    revenue_stderr: float
    vcg: float
    myerson: Optional[float]
    gain: Optional[float]  # model - Myerson, paired per auction
    gain_stderr: Optional[float]
    max_regret: float
    min_utility: float

    def to_dict(self):
        return dataclasses.asdict(self)


def _mean_and_stderr(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def baseline_revenues(setting, bids, bidder_context, item_context):
    """`(vcg [B], myerson [B] or None)`: each auction's revenue under VCG and under
    Myerson's optimal separate auction for its context (float64 inputs)."""
    vcg, myerson = _baselines(setting, bids, bidder_context, item_context)
    return vcg.numpy(), None if myerson is None else myerson.numpy()


def _baselines(setting, bids, bidder_context, item_context):
    """`baseline_revenues` as tensors (traceable)."""
    batch, num_bidders, num_items = tf.unstack(tf.shape(bids))
    empty = (tf.zeros([batch, 1, num_bidders, num_items], tf.float64),
             tf.zeros([batch, 1], tf.float64), tf.ones([batch, num_bidders], tf.float64))
    c = tf.zeros([batch, num_bidders + 1, num_items], tf.float64)
    vcg = tf.reduce_sum(exact_outcome(bids, *empty, separable_boosts=c)["payments"], axis=1)
    myerson_c = setting.separate_myerson_boosts(bidder_context, item_context)
    myerson = None
    if myerson_c is not None:
        myerson = tf.reduce_sum(exact_outcome(bids, *empty, separable_boosts=myerson_c)[
            "payments"], axis=1)
    return vcg, myerson


def evaluate_contextual(model, sizes=None, num_samples=100_000, seed=None, block=BLOCK):
    """`{size name: SizeReport}` of `model` (a `ContextualAuction`) on `num_samples` fresh
    auctions of each size (default: the model's; any size works, e.g. unseen ones), seeded
    by `seed` (default: the evaluation seed, model seed + 2)."""
    seed = seeds.evaluation_seed(model.seed) if seed is None else seed
    num_samples = checks.integer("num_samples", num_samples, minimum=2)
    reports = {}
    for size in (model.sizes if sizes is None else [parse_size(s) for s in sizes]):
        bids, bidder_context, item_context = model.setting.sample(num_samples, seed, size,
                                                                   tf.float64)

        def block_of(*part):
            """Each auction's revenue, the block's largest regret certificate and smallest
            utility, and each auction's VCG and Myerson revenues."""
            outcome = model(part, with_certificate=True)
            return (tf.reduce_sum(outcome["payments"], axis=1), tf.reduce_max(outcome["regret"]),
                    tf.reduce_min(outcome["values"] - outcome["payments"]),
                    *_baselines(model.setting, *part))

        if num_samples > TRACED_FROM_BLOCKS * block:  # traced once, for any number of
            # auctions: what an export serves, and 2-3x faster than eager once the trace
            # (about 3 s) is paid for
            block_of = tf.function(block_of, input_signature=[
                tf.TensorSpec([None, *t.shape[1:]], tf.float64)
                for t in (bids, bidder_context, item_context)])
        parts = [block_of(*(t[start:start + block] for t in (bids, bidder_context, item_context)))
                 for start in range(0, num_samples, block)]
        revenue, regret, utility, vcg, myerson = (
            None if part[0] is None else [t.numpy() for t in part] for part in zip(*parts))
        revenue = np.concatenate(revenue)
        mean, stderr = _mean_and_stderr(revenue)
        gain = gain_stderr = myerson_mean = None
        if myerson is not None:
            myerson = np.concatenate(myerson)
            myerson_mean = float(myerson.mean())
            gain, gain_stderr = _mean_and_stderr(revenue - myerson)
        reports[size_name(size)] = SizeReport(
            size_name(size), num_samples, mean, stderr, float(np.concatenate(vcg).mean()),
            myerson_mean, gain, gain_stderr, float(max(regret)), float(min(utility)))
    return reports


def choose_sizes(model, sizes, num_samples, seed, significance=SIGNIFICANCE):
    """The size-by-size choice between `model`'s menu and per-context Myerson: `{size name:
    record}`, the record `{"kept": "trained" or "myerson", "revenue", "myerson", "gain",
    "gain_stderr", "samples"}` of `evaluate_contextual` on `num_samples` fresh auctions of the
    size (`seed`). The menu is kept only if its paired gain exceeds `significance` standard
    errors (and `ROUNDING` times Myerson's revenue): a gain within noise is not one, and a
    menu that earns less than Myerson at a size is not served there
    (`ContextualAuction.myerson_sizes`)."""
    if not model.knows_myerson:
        raise ValueError("Per-context Myerson is known only for a menu with the item-separable "
                         "family on a value model with `uniform_bounds`.")
    num_samples = checks.integer("selection_samples", num_samples, minimum=2)
    significance = checks.number("significance", significance, minimum=0)
    reports = evaluate_contextual(model, sizes, num_samples=num_samples,
                                  seed=checks.seed("seed", seed))

    def kept(r):  # a gain at the level of rounding is not one either (same outcomes)
        return ("trained" if r.gain > max(significance * r.gain_stderr,
                                          ROUNDING * abs(r.myerson)) else "myerson")

    return {name: {"kept": kept(r),
                   "revenue": r.revenue, "myerson": r.myerson, "gain": r.gain,
                   "gain_stderr": r.gain_stderr, "samples": num_samples}
            for name, r in reports.items()}


def format_reports(reports) -> str:
    """A table of `evaluate_contextual`'s reports."""
    lines = [f"{'size':>6} {'revenue':>16} {'VCG':>8} {'Myerson':>8} {'gain over Myerson':>20} "
             f"{'max regret':>11} {'min utility':>12}"]
    for report in reports.values():
        myerson = "-" if report.myerson is None else f"{report.myerson:.4f}"
        gain = ("-" if report.gain is None else
                f"{report.gain:+.4f} ± {report.gain_stderr:.4f}")
        lines.append(f"{report.size:>6} {report.revenue:9.4f} ± {report.revenue_stderr:.4f} "
                     f"{report.vcg:8.4f} {myerson:>8} {gain:>20} {report.max_regret:11.1e} "
                     f"{report.min_utility:12.1e}")
    return "\n".join(lines)
