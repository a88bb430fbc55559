"""Layer 5, what a trained mechanism earns: exact evaluation, menu usage and pruning
(`reports`), the baseline auctions (`baselines`), contextual reports (`contextual`), outcome
files (`outcome_files`) and figures (`plots`). Imports `models` and the layers below."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
