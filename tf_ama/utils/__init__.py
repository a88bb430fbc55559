"""Layer 0, helpers every other layer may use: argument checks (`checks`), seeds (`seeds`),
file reading and atomic writing (`files`), memory bounds (`footprint`), progress bars
(`progress`) and `tf.distribute` arithmetic (`distributed`). Imports nothing else of tf_ama."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
