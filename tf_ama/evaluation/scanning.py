"""The streamed pass of an evaluation: a model's exact outcome on a sample of profiles,
slice by slice, in bounded memory (`scan`), and the menu entries it chose (`MenuEntry`).
`tf_ama.evaluation.reports` and `tf_ama.evaluation.usage` are built on it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses

import numpy as np
import tensorflow as tf

from tf_ama.core import separable
from tf_ama.core.mechanism import exact_outcome, menu_block_size
from tf_ama.utils import checks

# Profiles per call of the traced exact_outcome (it blocks them internally).
_PROFILES_PER_CALL = 1 << 14


_CALLS_IN_FLIGHT = 2


# An allocation is a lottery if some probability is farther than this from both 0 and 1. A
# softmax never reaches 0 or 1 exactly, so a learned "deterministic" entry sits at 0.9999...:
# one percent separates those from real lotteries (e.g. 0.81 / 0.14).
LOTTERY_TOLERANCE = 0.01


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


def check_arguments(model, num_samples, seed, micro_batch_size, chunk_size, jit_compile,
                     default_seed):
    """`(num_samples, seed, micro_batch_size, jit_compile)` checked, the seed defaulting to
    `default_seed(model.seed)` (`tf_ama.utils.seeds`), `chunk_size` the deprecated name of
    `micro_batch_size`; `jit_compile` "auto" is XLA unless the menu has the bundle-size
    family, whose dynamic program XLA runs about twice slower than TensorFlow's own kernels
    (benchmarks/README.md, "Revenue frontier", "The program's cost")."""
    from tf_ama.models.auction import AffineMaximizerAuction
    from tf_ama.models.contextual import ContextualAuction

    if not isinstance(model, AffineMaximizerAuction):
        raise TypeError(
            "`model` must be a tf_ama.AffineMaximizerAuction (trained, deterministic or built "
            f"with from_menu); got {type(model).__name__}. Load a run with "
            "tf_ama.training.runs.load_run(RUN_DIR).")
    if isinstance(model, ContextualAuction):
        raise ValueError(
            "A contextual model has a menu per auction, computed from its contexts: there is "
            "no one menu to count or prune. tf_ama.evaluate(model) reports it per size; "
            "model.menu(bidder_context, item_context) gives the menus.")
    micro_batch_size = checks.renamed("chunk_size", chunk_size, "micro_batch_size",
                                      micro_batch_size, stacklevel=4)
    return (checks.optional(checks.integer, "num_samples", num_samples, minimum=1),
            checks.seed("seed", default_seed(model.seed) if seed is None else seed),
            checks.optional(checks.integer, "micro_batch_size", micro_batch_size, minimum=1),
            (model.menu_layer.size_boosts(tf.float64) is None if jit_compile == "auto"
             else checks.boolean("jit_compile", jit_compile)))


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


def scan(model, sample, micro_batch_size, menu, with_certificate=False,
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
    micro = micro_batch_size or menu_block_size(menu)
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


def count_entries(counts, menu_index):
    """Adds the chosen entries `menu_index` to `counts` (a Counter: a menu with the family
    has (m + 1)^n more indices than could be counted in an array)."""
    indices, times = np.unique(menu_index, return_counts=True)
    counts.update(dict(zip(indices.tolist(), times.tolist())))


def menu_entries(model, counts):
    """The `MenuEntry` of every index in `counts`, most used first (ties by index)."""
    allocations, boosts, _, separable_boosts, size_boosts = model.exact_menu()
    order = sorted(counts, key=lambda k: (-counts[k], k))
    family = [k for k in order if k >= model.menu_size]
    if family:  # decoded all at once: a large family can have many thousands in use
        decoded = separable.family_entries(np.asarray(family) - model.menu_size, separable_boosts,
                                           size_boosts)
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
