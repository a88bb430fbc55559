"""Layer 1, the maths of an affine maximizer auction, as functions of tensors: the limits of
exactness (`exactness`), menus' allocations (`allocations`), the exact outcome and its
certificate (`mechanism`), the softmax relaxation trained on (`relaxation`) and the
item-separable family (`separable`). No Keras model, no setting: imports only `utils`."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
