"""Layer 4, the Keras models: `AffineMaximizerAuction` (`auction`) with its training step, the
active set (`active_set`), `ContextualAuction` (`contextual`), and the registration of
tf_ama's Keras classes for `keras.saving.load_model` (`_registration`). Imports `menus` and
the layers below."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
