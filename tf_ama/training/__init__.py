"""Layer 6, training runs: their configuration (`config`), recipes (`recipes`), temperature
schedules (`annealing`), the run directory (`runs`) and its checkpoints (`checkpoints`), the
phases (`joining`, `polish`) and the run itself (`run`, `contextual`). Imports `evaluation`
and the layers below."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
