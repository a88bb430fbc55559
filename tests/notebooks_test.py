"""The notebooks in notebooks/ run top to bottom, at tiny parameters.

Each notebook keeps its expensive numbers in one cell tagged "parameters" (papermill's
convention). The test copies the notebook, injects a cell right after that one which overrides
the values with tiny ones (papermill's "injected-parameters"), executes the copy with nbclient in
a fresh `python3` kernel whose working directory is a temporary folder of its own (figures land
there, never in notebooks/), and fails if any cell fails or if the notebook draws no PNG. The
notebooks run two at a time (`NOTEBOOKS_AT_ONCE`).
"""

import ast
import concurrent.futures
import os
import pathlib
import re
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

# Small enough for the whole module to run in about a minute on two cores; large enough that
# every code path runs (micro-batching, more than one epoch; several seeds where a notebook
# compares them: 04's overlaps between initializations).
TINY = {
    "MENU_SIZE": 16,
    "STEPS": 20,
    "STEPS_PER_EPOCH": 10,
    "BATCH_SIZE": 256,
    "MICRO_BATCH_SIZE": 128,
    "LEARNING_RATE": 0.01,
    "SEEDS": [0],
    "VAL_SAMPLES": 512,
    "TEST_SAMPLES": 2000,
}

# notebook -> (overrides on top of TINY, seconds allowed for the whole notebook)
CASES = {
    "01_spherical_lotteries.ipynb": ({"RESTARTS": 2, "POLISH_PERTURBATIONS": 5}, 150),
    "02_uniform_2x2.ipynb": ({}, 120),
    "03_uniform_3x10.ipynb": ({"JOINT_STEPS": 10}, 150),
    "04_menu_usage_and_lottery_tickets.ipynb": (
        {"SEEDS": [0, 1], "MENU_SIZE_3X10": 16, "INIT_SEED": 0, "DATA_SEEDS": [0, 1], "TICKET_DATA_SEEDS": [10, 11],
         "SMALL_RANDOM_SEEDS": [20, 21], "VAL_SAMPLES": 0},
        240,
    ),
    # One seed and one trained size: each costs its own XLA compilations, and
    # tests/contextual_test.py trains on a mixture of sizes.
    "05_contextual_auctions.ipynb": ({"HIDDEN": 8, "SEEDS": [0], "TRAIN_SIZES": ["2x3"],
                                      "TEST_SIZES": ["2x3", "2x4"], "MISREPORT_SAMPLES": 200,
                                      "MISREPORTS": 2}, 240),
}


def _parameters_cell(notebook):
    indices = [index for index, cell in enumerate(notebook.cells)
               if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(indices) == 1, f"expected exactly one cell tagged 'parameters'; got {len(indices)}"
    return indices[0]


def _assigned_names(source):
    """Names assigned in a parameters cell, each to a literal."""
    names = {}
    for statement in ast.parse(source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, (
            f"the parameters cell must hold only `NAME = literal` lines; got {ast.unparse(statement)!r}")
        names[statement.targets[0].id] = ast.literal_eval(statement.value)
    return names


def test_notebook_list_is_complete():
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameters_cell_is_literal_and_overridable(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    names = _assigned_names(notebook.cells[_parameters_cell(notebook)].source)
    overrides = {**TINY, **CASES[name][0]}
    assert not set(overrides) - set(names), f"overrides of unknown parameters: {set(overrides) - set(names)}"
    # Everything a user may need to change at once is in that cell: no other cell assigns it.
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            for parameter in names:
                assert not re.search(rf"^{parameter}\s*=", cell.source, re.M), (
                    f"{parameter} is assigned outside the parameters cell")


# Notebooks executed at once by `executed_notebooks`: each kernel is mostly one busy thread,
# so two side by side use the two cores (about half the time of one after another).
NOTEBOOKS_AT_ONCE = 2


def _execute(name, directory):
    """Executes a tiny copy of notebook `name` in `directory`; returns `(notebook, error)`:
    the executed copy (also written there, for debugging) and what `execute` raised."""
    overrides, seconds_allowed = CASES[name]
    overrides = {**TINY, **overrides}
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    position = _parameters_cell(notebook)
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by tests/notebooks_test.py\n"
        + "\n".join(f"{key} = {value!r}" for key, value in overrides.items()),
        metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(position + 1, injected)
    # First cell: which Python runs the kernel (must be this venv's, where tf_ama is installed).
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))

    deadline = time.monotonic() + seconds_allowed
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=seconds_allowed,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(directory)}})
    try:
        client.execute()
        error = None
    except Exception as raised:  # reported by the notebook's own test
        error = raised
    finally:
        nbformat.write(notebook, directory / name)
    return notebook, error


@pytest.fixture(scope="module")
def executed_notebooks(tmp_path_factory):
    """`{name: (notebook, error, directory)}` of every notebook, executed
    `NOTEBOOKS_AT_ONCE` at a time, each in its own working directory; the time allowed
    (`CASES`) counts from its own start."""
    before = sorted(os.listdir(NOTEBOOKS))
    directories = {name: tmp_path_factory.mktemp(name.split("_")[0]) for name in CASES}
    with concurrent.futures.ThreadPoolExecutor(NOTEBOOKS_AT_ONCE) as pool:
        futures = {name: pool.submit(_execute, name, directories[name]) for name in sorted(CASES)}
        results = {name: (*future.result(), directories[name]) for name, future in futures.items()}
    assert sorted(os.listdir(NOTEBOOKS)) == before, "a notebook wrote into notebooks/"
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_top_to_bottom_at_tiny_parameters(name, executed_notebooks):
    notebook, error, directory = executed_notebooks[name]
    if error is not None:
        raise error
    kernel_prefix = notebook.cells[0].outputs[0]["text"].strip()
    assert os.path.realpath(kernel_prefix) == os.path.realpath(sys.prefix)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    pngs = [output for output in outputs if "image/png" in output.get("data", {})]
    assert pngs, "the notebook displayed no PNG figure"
    assert list((directory / "figures").glob("*.png")), "no figure written to the working directory"
