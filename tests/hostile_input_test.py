"""Bad input, as a hostile user gives it: one clear line, or a correct result.

The reproductions of the second hostile test (each a traceback, a hang or silently accepted
garbage before) run through the command line in this process: exit status 2 and ONE line
`tf-ama COMMAND: error: ...` naming the file or flag, or (where the input is valid) a
correct result. Then hypothesis feeds the readers generated garbage (CSV, .npy / .npz,
setting files, contexts) and asserts the one contract: a one-line ValueError (or, for
contexts, the graph's InvalidArgumentError / TypeError) naming the input, or a correct
result. Reproductions of the server side (a dripping REST server, deep JSON answers) are in
serving_client_test.py, those of contextual models in contextual_test.py.
"""

import io
import json
import math
import os
import zipfile

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.data import data_files
from tf_ama.cli.app import main
from tf_ama.models.contextual import ContextualAuction


def _refused(capsys, argv, message):
    """Runs `tf-ama ARGV`; checks exit status 2 and one stderr line containing `message`
    (after argparse's usage lines, for a flag value argparse refuses)."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse: its usage, then the error line
        status = exit_.code
        err = capsys.readouterr().err
        assert err.startswith("usage: ")
        err = err.splitlines(keepends=True)[-1]
    else:
        err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith(f"tf-ama {argv[0]}: error: "), err
    assert message in err, err
    return err


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _setting_file(folder, name, **fields):
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "num_bidders": 2, "num_items": 2, **fields}))
    return str(path)


# ------------------------------------------------------------------- the 13 reproductions
def test_1_a_csv_field_beyond_the_csv_modules_limit(folder, capsys):
    (folder / "l.csv").write_text("0." + "1" * 200_000 + ",0.2,0.3,0.4\n")
    _refused(capsys, ["train", "additive_2x2_uniform", "--valuations", "l.csv", "--out", "r"],
             "l.csv line 1: a field longer than 131,072 characters (no number is that long)")
    assert not (folder / "r").exists()


def test_2_a_damaged_npz(folder, capsys):
    (folder / "g.npz").write_bytes(b"PK\x03\x04junk")
    _refused(capsys, ["train", "additive_2x2_uniform", "--valuations", "g.npz", "--out", "r"],
             "g.npz is not a readable .npz file: not a readable zip archive")


@pytest.mark.parametrize("distribution, params, message", [
    ("Pareto", {"concentration": 0.1}, "drew a profile whose values add up to inf"),
    ("uniform", {"low": 3e38, "high": 3.4e38}, "beyond float32 (3.4e38)"),
])
def test_3_values_beyond_float32s_range(folder, capsys, distribution, params, message):
    path = _setting_file(folder, "big", distribution=distribution, distribution_params=params)
    for extra in ([], ["--temperature", "10"]):  # --temperature did not avoid it either
        _refused(capsys, ["train", path, "--out", "r", *extra], message)


def test_3_a_data_file_whose_values_reach_5e37_has_a_scale(folder):
    np.save(folder / "big.npy", np.concatenate([np.full((1, 2, 2), 5e37),
                                                np.full((299, 2, 2), 0.5)]))
    setting = tf_ama.empirical_setting("additive_2x2_uniform", "big.npy")
    # A float64 mean (the float32 one overflowed into an OverflowError).
    assert 0 < tf_ama.training.recipes.temperature_for(setting) < 1e-30


def test_4_a_discrete_tfp_class_is_a_prior(folder, capsys):
    path = _setting_file(folder, "p", distribution="Poisson", distribution_params={"rate": 3.0})
    assert main(["settings", "--show", path]) == 0
    assert json.loads(capsys.readouterr().out)["distribution"] == "Poisson"


def test_5_json_nested_100000_deep(folder, capsys):
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(capsys, ["settings", "--show", "deep.json"],
             "setting file deep.json: nested too deeply to parse")
    _refused(capsys, ["query", "--rest", "http://127.0.0.1:1", "--model", "m", "--bids",
                      "[" * 100_000 + "]" * 100_000], "--bids: nested too deeply to parse")


def test_6_a_setting_with_a_million_items(folder, capsys):
    path = _setting_file(folder, "h", num_items=1_000_000)
    _refused(capsys, ["baselines", path], "separate Myerson's reserve search would draw 1.2e+15")
    _refused(capsys, ["train", path, "--out", "r"], "reserve search would draw")
    _refused(capsys, ["train", path, "--out", "r", "--menu", "lottery", "--menu-size", "2",
                      "--batch-size", "1000000"], "give a smaller --batch-size")
    assert not (folder / "r").exists()


@pytest.mark.parametrize("out, message", [
    ("", "argument --out: must be a directory path; got ''"),
    ("afile", "argument --out: 'afile' is a file, not a directory"),
])
def test_7_and_13_an_out_that_is_not_a_directory(folder, capsys, out, message):
    (folder / "afile").write_text("unrelated")
    _refused(capsys, ["train", "additive_2x2_uniform", "--out", out], message)
    assert sorted(os.listdir(folder)) == ["afile"]


def test_11_an_upper_case_extension(folder):
    rows = np.random.default_rng(0).uniform(size=(40, 4))
    np.savetxt(folder / "G.CSV", rows, delimiter=",", fmt="%.17g")
    setting = tf_ama.empirical_setting("additive_2x2_uniform", "G.CSV")
    assert setting.distribution_params["format"] == ".csv"
    blocks = np.concatenate(list(data_files.read_blocks("G.CSV", 2, 2)))
    np.testing.assert_array_equal(blocks.reshape(40, 4), rows)


@pytest.mark.parametrize("content, message", [
    ('{"name": "caf\xe9"}'.encode("latin-1"), "setting file s.json: not UTF-8 text"),
    (b'{"name": "x", "num_bidders": ' + b"9" * 5000 + b"}",
     "setting file s.json: a number of 5000 digits"),
    (b'{"name": "d", "num_bidders": 2, "num_bidders": 3, "num_items": 2}',
     "setting file s.json: the key(s) ['num_bidders'] appear twice in one object"),
])
def test_12_setting_files_of_bad_bytes(folder, capsys, content, message):
    (folder / "s.json").write_bytes(content)
    _refused(capsys, ["settings", "--show", "s.json"], message)


@pytest.mark.parametrize("array, message", [
    (np.full((50, 4), 2**53 + 1, np.int64), "the integer 9007199254740993 is beyond 2**53"),
    (np.ones((50, 4), "timedelta64[s]"), "the array's dtype is timedelta64[s]"),
])
def test_13_npy_values_that_would_be_coerced(folder, capsys, array, message):
    np.save(folder / "v.npy", array)
    _refused(capsys, ["train", "additive_2x2_uniform", "--valuations", "v.npy", "--out", "r"],
             message)


def test_13_valuations_naming_a_directory(folder, capsys):
    (folder / "d.csv").mkdir()
    _refused(capsys, ["train", "additive_2x2_uniform", "--valuations", "d.csv", "--out", "r"],
             "d.csv is a directory; give a data file in it")


# -------------------------------------------------------- generated garbage for the readers
def _oracle_csv(text, width):
    """The profiles a CSV text without quotes means (a plain split), or None if it is not
    valid data: a header line only first, ASCII decimal numbers, `width` per line, every
    value finite, >= 0, each profile's sum within float32."""
    lines = [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
             if line.replace(",", "").strip()]

    def number(field):
        field = field.strip()
        if not field or not field.isascii() or "_" in field:
            raise ValueError(field)
        return float(field)

    rows = []
    for index, line in enumerate(lines):
        try:
            rows.append([number(field) for field in line.split(",")])
        except ValueError:
            try:  # a first line is a header unless Python reads it as numbers
                [float(field) for field in line.split(",")]
            except ValueError:
                if index == 0:
                    continue
            return None
    if not rows or any(len(row) != width for row in rows):
        return None
    values = np.array(rows)
    limit = float(np.finfo(np.float32).max)
    if not (np.all(np.isfinite(values)) and np.all(values >= 0) and np.all(values <= limit)
            and np.all(values.sum(axis=1) <= limit)):
        return None
    return values


_TOKENS = st.sampled_from(list("0123456789.,e-+ \n\r_x\u0663\xe9\x00")
                         + ["inf", "nan", "1e39", "2e38", "0.5,", "\n1,2\n", "a,b\n"])
_VALID_CSV = st.tuples(
    st.sampled_from(["", "v0,v1\n", "\n"]),
    st.lists(st.tuples(st.floats(0, 1e30), st.floats(0, 1e30)), min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n"])).map(
        lambda parts: parts[0] + parts[2].join(f"{a!r}, {b:.6e}" for a, b in parts[1]) + "\n")
# Valid data, valid data with a token inserted somewhere, or tokens alone.
_CSV_TEXT = st.one_of(
    _VALID_CSV,
    st.tuples(_VALID_CSV, st.integers(0, 200), _TOKENS).map(
        lambda parts: parts[0][:parts[1]] + parts[2] + parts[0][parts[1]:]),
    st.lists(_TOKENS, max_size=40).map("".join))


@hypothesis.given(text=_CSV_TEXT, encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
@hypothesis.settings(max_examples=150, deadline=None)
def test_any_csv_is_its_numbers_or_one_line_refusal(tmp_path_factory, text, encoding):
    path = tmp_path_factory.mktemp("csv") / "v.csv"
    path.write_bytes(text.encode(encoding, "replace"))
    expected = _oracle_csv(path.read_bytes().decode("utf-8-sig", "replace"), 2)
    try:
        read = np.concatenate(list(data_files.read_blocks(str(path), 1, 2))).reshape(-1, 2)
    except ValueError as error:
        assert str(error).startswith(f"`valuations` {path}") and "\n" not in str(error)
        assert expected is None or "\ufffd" in path.read_bytes().decode("utf-8", "replace")
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    assert expected is not None, f"accepted {text!r} as {read}"
    np.testing.assert_array_equal(read, expected)


def _npz(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_ARRAYS = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.uint8, np.int8,
                           np.bool_, np.complex64, "timedelta64[s]", "datetime64[s]", "U3"]
                          ).flatmap(lambda dtype: st.tuples(
                              st.just(dtype), st.sampled_from([(5, 2), (5, 1, 2), (5, 3), (2,),
                                                               (0, 2), (5, 2, 1)]),
                              st.sampled_from([0.5, 1.0, 7.0, -1.0, 2.0**60, np.nan])))


@hypothesis.given(spec=_ARRAYS, extension=st.sampled_from([".npy", ".npz"]),
                  cut=st.none() | st.integers(0, 400), flip=st.none() | st.integers(0, 400))
@hypothesis.settings(max_examples=150, deadline=None)
def test_any_npy_or_npz_is_its_numbers_or_one_line_refusal(tmp_path_factory, spec, extension,
                                                           cut, flip):
    dtype, shape, fill = spec
    with np.errstate(invalid="ignore", over="ignore"):
        array = np.full(shape, fill).astype(dtype) if np.dtype(dtype).kind not in "mMU" else (
            np.ones(shape, dtype))
    data = bytearray(_npy(array) if extension == ".npy" else _npz({"valuations": array}))
    if flip is not None and flip < len(data):
        data[flip] ^= 0xFF
    if cut is not None:
        data = data[:cut]
    path = tmp_path_factory.mktemp("npy") / f"v{extension}"
    path.write_bytes(bytes(data))
    try:
        read = np.concatenate(list(data_files.read_blocks(str(path), 1, 2)))
    except ValueError as error:
        assert str(error).startswith(f"`valuations` {path}") and "\n" not in str(error)
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    # Accepted: what NumPy reads, real numbers shaped [N, 1, 2] or [N, 2], exactly as float64.
    loaded = np.load(path, allow_pickle=False)
    if extension == ".npz":
        loaded = loaded[loaded.files[0]]
    assert loaded.dtype.kind in "iuf" and loaded.dtype.itemsize <= 8
    assert loaded.shape[1:] in ((2,), (1, 2)) and len(loaded) > 0
    np.testing.assert_array_equal(read.reshape(len(loaded), 2), loaded.reshape(-1, 2))
    assert np.all(np.isfinite(read)) and np.all(read >= 0)
    assert np.all(read.astype(loaded.dtype).reshape(loaded.shape) == loaded)  # not rounded


_FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3000), st.text(max_size=6),
                          st.floats(allow_nan=True), st.lists(st.floats(0, 3), max_size=3))


_VALID_SETTING = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=5), "num_bidders": st.integers(1, 4),
     "num_items": st.integers(1, 4)},
    optional={"demand": st.sampled_from(["additive", "unit_demand"]),
              "symmetric": st.booleans(),
              "distribution": st.just("uniform")})


@hypothesis.given(fields=st.one_of(
    _VALID_SETTING,
    # A valid setting with one field replaced, added or removed.
    st.tuples(_VALID_SETTING, st.sampled_from([
        "name", "num_bidders", "num_items", "demand", "distribution", "distribution_params",
        "symmetric", "extra"]), _FIELD_VALUES | st.sampled_from([
            "additive", "uniform", "exponential", "Gamma", "Poisson", "Normal", "empirical"])
        | st.dictionaries(st.sampled_from(["low", "high", "mean", "rate", "concentration",
                                           "x"]), _FIELD_VALUES, max_size=2),
        st.booleans()).map(lambda change: {key: value for key, value in {
            **change[0], change[1]: change[2]}.items() if change[3] or key != change[1]})),
    garbage=st.none() | st.binary(max_size=30))
@hypothesis.settings(max_examples=120, deadline=None)
def test_any_setting_file_is_a_setting_or_one_line_refusal(tmp_path_factory, fields, garbage):
    path = tmp_path_factory.mktemp("setting") / "s.json"
    path.write_bytes(garbage if garbage is not None else json.dumps(fields).encode())
    try:
        setting = tf_ama.get_setting(str(path))
    except ValueError as error:
        assert str(error).startswith(f"setting file {path}: ") and "\n" not in str(error)
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    assert {**setting.to_dict(), **fields} == setting.to_dict()  # every field as written
    np.testing.assert_array_less(-1e-30, setting.sample(2, 0).numpy())


@pytest.fixture(scope="module")
def contextual_model():
    return ContextualAuction("contextual_a", sizes=["2x3"], menu_size=8, hidden=8, heads=2,
                             blocks=1, jit_objective=False)


_CONTEXT_VALUES = st.sampled_from([0.0, 0.5, -1.0, 1e-300, 3.0, 1e4, 1e30, -1e300, math.inf,
                                   math.nan])


@hypothesis.given(batch=st.integers(0, 3), values=st.lists(_CONTEXT_VALUES, min_size=2,
                                                           max_size=2),
                  shape=st.sampled_from(["ok", "bidders", "features", "rank"]),
                  dtype=st.sampled_from([tf.float64, tf.float32]))
@hypothesis.settings(max_examples=40, deadline=None)
@pytest.mark.slow
def test_any_contexts_give_an_exact_outcome_or_a_named_refusal(contextual_model, batch, values,
                                                               shape, dtype):
    bids, x, y = contextual_model.setting.sample(max(batch, 1), 0, "2x3", tf.float64)
    bids, x, y = bids[:batch], x[:batch] * 0 + values[0], y[:batch] * 0 + values[1]
    x = {"ok": x, "bidders": x[:, :1], "features": x[..., :4], "rank": x[:, 0]}[shape]
    try:
        outcome = contextual_model((bids, tf.cast(x, dtype), y))
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
        message = getattr(error, "message", str(error))
        assert any(name in message for name in ("`bidder_context`", "`item_context`",
                                                "for these contexts")), message
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    assert shape == "ok" and dtype == tf.float64
    assert batch == 0 or all(math.isfinite(v) for v in values)
    payments, values_won = outcome["payments"].numpy(), outcome["values"].numpy()
    assert payments.shape == (batch, 2) and np.all(np.isfinite(payments))
    assert np.all(payments >= 0) and np.all(payments <= values_won + 1e-12)
