"""Modules of a package imported on first use, as attributes (PEP 562): after `import tf_ama`,
`tf_ama.core.mechanism` (or `tf_ama.training.runs.HISTORY`) imports that module when it is
first used, so that importing a package costs nothing until one of its modules is needed.
Standard library only."""

import importlib
import pkgutil


def submodules(package, path):
    """`(__getattr__, __dir__)` for the package named `package` (its `__path__` `path`): its
    modules and subpackages as attributes, each imported on first use."""

    def names():
        return {info.name for info in pkgutil.iter_modules(path)}

    def __getattr__(name):
        if not name.startswith("_") and name in names():
            return importlib.import_module(f"{package}.{name}")  # sets the attribute too
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(names())

    return __getattr__, __dir__
