"""The package's layers (docs/architecture.md): what may import what, read from the source.

Every import counts, those inside functions too. A module may import its own layer and the
layers its layer lists in `MAY_IMPORT`; never a layer above, never the package root (the
public API on top of everything), never another module's private (`_name`) names; no two
modules import each other, directly or around a circle; no module grows past `MAX_LINES`.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tf_ama")

# Each layer and the layers below it that it may import (its own always).
MAY_IMPORT = {
    "utils": set(),
    "core": {"utils"},
    "data": {"core", "utils"},
    "menus": {"data", "core", "utils"},
    "models": {"menus", "data", "core", "utils"},
    "evaluation": {"models", "menus", "data", "core", "utils"},
    "training": {"evaluation", "models", "menus", "data", "core", "utils"},
    "serving": {"evaluation", "models", "menus", "data", "core", "utils"},
    "cli": {"serving", "training", "evaluation", "models", "menus", "data", "core", "utils"},
}
MAX_LINES = 450


def _modules():
    """`{dotted name: path}` of every module of the package but its root `__init__`."""
    found = {}
    for directory, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, os.path.dirname(ROOT))[:-3]
                dotted = relative.replace(os.sep, ".").removesuffix(".__init__")
                if dotted != "tf_ama":
                    found[dotted] = path
    return found


MODULES = _modules()


def _imports(path):
    """`[(line, target module, imported names)]` of every tf_ama import in `path`."""
    found = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names
                      if alias.name.split(".")[0] == "tf_ama"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "tf_ama"):
            names = [alias.name for alias in node.names]
            # `from tf_ama.core import mechanism` imports the module tf_ama.core.mechanism.
            modules = [f"{node.module}.{name}" for name in names
                       if f"{node.module}.{name}" in MODULES]
            found += ([(node.lineno, module, []) for module in modules] if modules
                      else [(node.lineno, node.module, names)])
    return found


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _edges():
    return {module: {target for _, target, _ in _imports(path) if target in MODULES}
            for module, path in MODULES.items()}


def test_every_module_lives_in_a_layer():
    assert {_layer(module) for module in MODULES} == set(MAY_IMPORT)
    top_level = sorted(name for name in os.listdir(ROOT)
                       if name.endswith(".py") and name != "__init__.py")
    assert top_level == [], "the package root holds only __init__.py and the layers"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers_only(module):
    layer = _layer(module)
    allowed = MAY_IMPORT[layer] | {layer}
    for line, target, names in _imports(MODULES[module]):
        where = f"{MODULES[module]}:{line} imports {target}"
        assert target != "tf_ama", f"{where}: the package root is the public API, on top"
        assert _layer(target) in allowed, (
            f"{where}, layer {_layer(target)!r}, which layer {layer!r} may not import "
            f"(it may import {sorted(allowed)}; docs/architecture.md)")
        private = [name for name in names if name.startswith("_")]
        assert not private, f"{where}'s private {private}: give them a public home"


def test_no_import_cycle():
    edges = _edges()
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(edges[module]):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(
                path[path.index(target):] + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_a_few_hundred_lines(module):
    with open(MODULES[module], encoding="utf-8") as file:
        lines = sum(1 for _ in file)
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines; split it by idea"


def test_the_checks_fail_on_an_upward_import(tmp_path, monkeypatch):
    """The checks are not vacuous: a core module importing a model is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tf_ama.models.auction import AffineMaximizerAuction\n")
    monkeypatch.setitem(MODULES, "tf_ama.core._bad", str(bad))
    with pytest.raises(AssertionError, match="layer 'models'"):
        test_imports_go_down_the_layers_only("tf_ama.core._bad")
