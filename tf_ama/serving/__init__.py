"""Layer 7, deployment: SavedModel export (`export`, `contextual_export`), the checks of a
served answer (`checks`) and the TF Serving clients (`client`). Imports `evaluation`
and the layers below, never `training`."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
