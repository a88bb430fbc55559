"""Registers tf_ama's Keras classes as soon as Keras is loaded, without importing Keras.

A saved model names its classes ("tf_ama>AffineMaximizerAuction", "tf_ama>LotteryMenu", ...)
and `keras.saving.load_model` finds them only once `tf_ama.models.auction` has registered them: Keras
imports no module named in a file. `import tf_ama` itself is cheap (no TensorFlow), so the
registration happens when Keras arrives:

* Keras already loaded at `import tf_ama`: `tf_ama.models.auction` is imported then;
* otherwise a meta-path finder wraps the loaders of `keras`, `tensorflow` and tf_ama's own
  modules; after each of them has run, `tf_ama.models.auction` is imported if Keras is loaded and none
  of these modules is still half-imported (it would then be imported from a half-made
  module; the import that finishes last does it). A process that never loads Keras (the
  CLI's help, the REST client) imports nothing more.

A failure to import `tf_ama.models.auction` never breaks the import that triggered it (another
library's `import keras`): it becomes a warning naming the remedy.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

PACKAGE = __name__.split(".")[0]
_WATCHED = ("keras", "tensorflow")
_MODELS = ("models.auction", "models.contextual")  # the modules whose import registers every Keras class


def _watched(name):
    return name in _WATCHED or name.startswith(PACKAGE + ".")


def _half_imported(name, module):
    return _watched(name) and getattr(getattr(module, "__spec__", None), "_initializing", False)


def register_if_ready(finished=None):
    """Imports `tf_ama.models.auction` if Keras is loaded, it is not yet imported, and no watched
    module other than `finished` (whose code has just run) is half-imported."""
    if all(f"{PACKAGE}.{m}" in sys.modules for m in _MODELS) or sys.modules.get("keras") is None:
        return
    if any(_half_imported(name, module) for name, module in list(sys.modules.items())
           if name != finished):
        return
    try:
        for module in _MODELS:
            importlib.import_module(f"{PACKAGE}.{module}")
    except Exception as error:  # noqa: BLE001  (never break the importer's `import keras`)
        warnings.warn(f"tf_ama could not register its Keras classes ({type(error).__name__}: "
                      f"{error}); `import tf_ama.models.auction` before keras.saving.load_model.",
                      ImportWarning, stacklevel=2)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of the spec that the other finders give for a
    watched module, so that `register_if_ready` runs once the module's code has run."""

    _finding = False

    def find_spec(self, name, path=None, target=None):
        if self._finding or not _watched(name):
            return None
        self._finding = True  # the real finders, not this one, find the spec
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                register_if_ready(finished=name)

            spec.loader.exec_module = exec_then_register
        return spec


def install():
    """Called by `tf_ama/__init__.py`: registers now, or when Keras arrives."""
    if sys.modules.get("keras") is not None:
        register_if_ready(finished=PACKAGE)
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
