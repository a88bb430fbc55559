"""Layer 2, where valuations come from: TFP distributions (`distributions`), settings and their
files (`settings`), data files (`data_files`, `empirical`), contextual settings (`contexts`),
separate Myerson reserves (`reserves`) and the `tf.data` pipelines of training
(`datasets`). Imports `core` and `utils`."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
