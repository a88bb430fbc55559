"""Memory a job needs, checked against the machine's before it starts.

A setting with a million items is a valid `Setting`, but a lottery menu for it holds
`K (m + 1) n` numbers (12 GB at K = 1024, m = 2) and one training batch `B m n` (32 GB at
B = 4096): a run would die of an out-of-memory error midway, or be killed by the system.
So what certainly cannot fit is refused up front, with the sizes and the fix:

* a `Setting` refuses parameter arrays `[m, n]` larger than the memory available, before
  it builds its distribution;
* a menu layer refuses to build variables larger than the memory available (`check_fits`
  from `tf_ama.menus.layers`);
* a training run refuses a step whose tensors (`training_bytes`: the gradient and Adam's
  two moments of every variable, the batch, the menu's allocations and their gradient, the
  validation sample in float64) exceed what is left once the model is built.

Both are lower bounds of what TensorFlow allocates, so a refusal is never wrong; a job
that passes may still need more (TensorFlow's own buffers, XLA's compiled programs).

Available memory: Linux's `MemAvailable`, or less if a cgroup (a container) limits the
process. Elsewhere it is not known and nothing is refused.
"""

from __future__ import annotations

_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_number(path):
    try:
        with open(path) as file:
            text = file.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes():
    """Bytes this process can still allocate (see the module docstring), or None if unknown."""
    available = None
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for limit_path, usage_path in _CGROUP_FILES:
        limit, usage = _read_number(limit_path), _read_number(usage_path)
        if limit is not None and usage is not None and limit < 1 << 60:  # "max": no limit
            left = max(limit - usage, 0)
            available = left if available is None else min(available, left)
    return available


def gigabytes(count):
    return f"{count / 1e9:.3g} GB"


def check_fits(what, needed, fix):
    """Raises a ValueError saying that `what` needs `needed` bytes, more than are available,
    and `fix`; does nothing if they fit or if the available memory is not known."""
    available = available_bytes()
    if available is not None and needed > available:
        raise ValueError(f"{what} needs at least {gigabytes(needed)} of memory, but this "
                         f"machine has {gigabytes(available)} available: {fix}")


def training_bytes(num_bidders, num_items, variables, menu_size, batch_size,
                   validation_samples):
    """A lower bound of the bytes a training step and its validation add to a built model
    with `variables` float32 numbers: their gradient and Adam's two moments, the batch
    (float32, and its float64 copy for the exact revenue), the `menu_size` allocations
    and their gradient (float32), the validation sample (float64)."""
    values = num_bidders * num_items
    return (4 * 3 * variables + 12 * batch_size * values + 8 * menu_size * values
            + 8 * validation_samples * values)
