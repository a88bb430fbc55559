"""The menu a model actually uses: the entries chosen on a sample (`menu_usage`), as a table
(`format_menu_table`), and the fixed AMA of only the entries that matter (`prune`); see
`tf_ama.evaluation.reports` for which entries those are.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from tf_ama.data.settings import evaluation_sample
from tf_ama.evaluation.scanning import check_arguments, count_entries, menu_entries, scan
from tf_ama.utils import checks, seeds


def menu_usage(model, num_samples=None, seed=None, micro_batch_size=None, jit_compile="auto",
               *, chunk_size=checks.RENAMED):
    """The menu entries chosen on `settings.sample_blocks(setting, num_samples, seed)`, most
    used first (arguments as in `evaluate`: by default the evaluation seed `model.seed + 2`;
    a setting made from data: its test rows; streamed, in bounded memory).

    Returns:
      A list of `MenuEntry` (ties in use broken by index), one per entry chosen at least once.
    """
    num_samples, seed, micro_batch_size, jit_compile = check_arguments(
        model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
        seeds.evaluation_seed)
    counts = collections.Counter()
    for outcome in scan(model, evaluation_sample(model.setting, num_samples, seed),
                         micro_batch_size, model.menu(tf.float64), jit_compile=jit_compile):
        count_entries(counts, outcome["menu_index"])
    return menu_entries(model, counts)


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
    num_samples, seed, micro_batch_size, jit_compile = check_arguments(
        model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
        seeds.validation_seed)
    menu = model.menu(tf.float64)
    keep = np.zeros(model.menu_size, bool)
    sample = evaluation_sample(model.setting, num_samples, seed, split="validation")
    for outcome in scan(model, sample, micro_batch_size, menu, with_counterfactual=True,
                         jit_compile=jit_compile):
        for indices in (outcome["menu_index"], outcome["counterfactual_index"].reshape(-1)):
            keep[indices[indices < model.menu_size]] = True  # the family is kept whole
    keep[0] = True
    kept = np.flatnonzero(keep).astype(np.int64)
    menu = model.exact_menu()
    pruned = type(model).from_menu(
        model.setting, menu.allocations[kept], menu.boosts[kept], menu.bidder_weights,
        menu.separable_boosts, menu.size_boosts, temperature=model.temperature,
        seed=model.seed)
    pruned.kept_indices = kept
    return pruned
