"""Block sizes: how many profiles each pass over a batch computes at once.

Every pass over a batch (the exact outcome, the training step, the active set's refresh)
works on blocks of profiles whose `[profile, bidder + 1, entry]` tensors hold about
`CACHE_BLOCK_ELEMENTS` elements, so that a block's intermediates stay in cache
(benchmarks/README.md, "Training step" for the micro-batch size, "Serving latency" for the
block size). Each size is a power of two, clipped to the pass's own range:

* `outcome_block_size`: the exact outcome (`tf_ama.core.mechanism.exact_outcome`), at most
  1024 profiles: every block is computed whole, padding included (so that a profile's
  outcome does not depend, bit for bit, on its batch), and a served request of one profile
  computes a whole block, so the cap bounds the latency of batch 1;
* `program_block_size`: the exact outcome with the bundle-size family
  (`tf_ama.core.bundle_sizes`), whose dynamic program holds `[bidder, profile, count state,
  owner]` tensors: about `PROGRAM_BLOCK_ELEMENTS` elements (64 MB of float64), at most
  1024 profiles. Its steps are many small ops, so a larger block pays (3x10, 4096
  profiles: 43.6 s in blocks of 8, 1.39 s in blocks of 1024; benchmarks/README.md,
  "Revenue frontier", "The program's cost");
* `training_block_size`: the fused training kernel (`tf_ama.core.relaxation`), at most
  4096: its last micro-batch is not padded, so a larger cap costs a small batch nothing;
* `refresh_block_size`: the active set's refresh pass (`tf_ama.models.active_set`), twice
  the training step's elements (measured on a paper-size 3x10 batch, benchmarks/README.md,
  "The active set": 0.72-0.76 s, as at 4 times the size, with the tensors' peak below the
  full step's; at the step's own size the loop's overhead makes it 0.87-1.12 s).
"""

from __future__ import annotations

CACHE_BLOCK_ELEMENTS = 1 << 18
PROGRAM_BLOCK_ELEMENTS = 1 << 23
# The relaxation's program keeps about ten such tensors per item for its gradient: its
# micro-batches hold 8 times fewer elements (5x10: 8 profiles; a whole batch of 512 asked
# for 8.7 GB in one allocation).
PROGRAM_TRAINING_ELEMENTS = 1 << 20


def cache_sized_batch(num_bidders, menu_size, elements, smallest, largest):
    """Profiles per block: the power of two in [smallest, largest] nearest below
    `elements / ((num_bidders + 1) * menu_size)`, so that a block's `[profile, bidder + 1,
    entry]` tensors hold about `elements` elements."""
    target = max(1, elements // ((num_bidders + 1) * max(int(menu_size), 1)))
    return int(min(largest, max(smallest, 1 << (target.bit_length() - 1))))


def outcome_block_size(num_bidders, menu_size):
    """Profiles per block of the exact outcome: a power of two in [8, 1024] (a ~2 MB float64
    block)."""
    return cache_sized_batch(num_bidders, menu_size, CACHE_BLOCK_ELEMENTS, 8, 1024)


def program_block_size(num_bidders, count_states, elements=PROGRAM_BLOCK_ELEMENTS):
    """Profiles per block of the bundle-size family's dynamic program: a power of two in
    [8, 1024] with `num_bidders * (num_bidders + 1) * count_states` elements per profile
    (`elements` in all; `PROGRAM_TRAINING_ELEMENTS` for the training step's micro-batches)."""
    return cache_sized_batch(num_bidders, num_bidders * count_states, elements, 8, 1024)


def training_block_size(num_bidders, menu_size):
    """Profiles per micro-batch of the training step: a power of two in [8, 4096] (~1 MB of
    float32)."""
    return cache_sized_batch(num_bidders, menu_size, CACHE_BLOCK_ELEMENTS, 8, 4096)


def refresh_block_size(num_bidders, menu_size):
    """Profiles per micro-batch of the active set's refresh pass: a power of two in [8, 4096]
    of twice the training step's elements."""
    return cache_sized_batch(num_bidders, menu_size, 2 * CACHE_BLOCK_ELEMENTS, 8, 4096)
