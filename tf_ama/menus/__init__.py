"""Layer 3, menu kinds as Keras layers: each kind one layer that builds its menu's tensors
(`layers`: lottery, deterministic, fixed, separable, lottery+separable, bundle-sizes, and
the bidder weights; `families`: the families' boosts they mix in), the contextual menu network (`contextual`), and 0.1 compatibility (`compat`).
Imports `data`, `core` and `utils`."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
