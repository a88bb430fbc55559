"""tf_ama.utils.files: every parser error of user bytes becomes one ValueError naming the input;
JSON is strict (a key given twice is refused)."""

import csv
import json
import os
import zipfile

import hypothesis
import hypothesis.strategies as st
import pytest

from tf_ama.utils import files


@pytest.mark.parametrize("text, message", [
    ('{"a": 1, "a": 2}', r"the key\(s\) \['a'\] appear twice in one object"),
    ('{"b": {"a": 1, "a": 1}}', r"the key\(s\) \['a'\] appear twice"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply to parse"),
    ('{"a": ' + "9" * 5000 + "}", "a number of 5000 digits"),
    (b'"caf\xe9"', r"not UTF-8 text \(invalid continuation byte at byte 4\)"),
    ("{", r"not valid JSON \(Expecting property name"),
    ("", r"not valid JSON \(Expecting value"),
])
def test_bad_json_is_one_line_naming_the_input(text, message):
    with pytest.raises(ValueError, match=rf"^--flag: {message}") as error:
        files.parse_json(text, "--flag")
    assert "\n" not in str(error.value)


def test_valid_json_reads_as_pythons_json(tmp_path):
    text = '{"a": [1, 2.5, null, true], "b": {"c": "\\u00e9"}, "d": NaN}'
    assert repr(files.parse_json(text, "x")) == repr(json.loads(text))
    (tmp_path / "f.json").write_bytes(text.encode())
    assert repr(files.load_json(tmp_path / "f.json")) == repr(json.loads(text))
    with pytest.raises(ValueError, match=r"missing.json: cannot be read \(No such file"):
        files.load_json(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"^the folder: is a directory, not a file\.$"):
        files.load_json(tmp_path, "the folder")


@pytest.mark.parametrize("raised, message", [
    (csv.Error("field larger than field limit (131072)"),
     "a field longer than 131,072 characters"),
    (zipfile.BadZipFile("File is not a zip file"), r"not a readable zip archive \(File is not"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply to parse"),
    (EOFError(), "EOFError"),
    (OverflowError("cannot convert float infinity to integer"),
     "OverflowError: cannot convert float infinity to integer"),
])
def test_each_parser_error_becomes_a_named_value_error(raised, message):
    with pytest.raises(ValueError, match=rf"^data.csv line 3: {message}.* Fix it\.$"):
        with files.reading(lambda: "data.csv line 3", "Fix it."):
            raise raised


def test_errors_that_are_not_a_parsers_pass_through():
    with pytest.raises(KeyError):
        with files.reading("x"):
            raise KeyError("a bug, not bad input")


@pytest.mark.slow
@hypothesis.given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@hypothesis.settings(max_examples=300, deadline=None)
def test_any_bytes_are_pythons_json_or_one_line_refusal(data):
    try:
        value = files.parse_json(data, "input")
    except ValueError as error:
        assert str(error).startswith("input: ") and "\n" not in str(error)
        return
    assert repr(value) == repr(json.loads(data.decode("utf-8")))


def test_a_key_twice_among_many_is_found_in_one_pass():
    """The check was quadratic: 200 000 keys took minutes."""
    text = "{" + ", ".join(f'"k{i}": {i}' for i in range(200_000)) + ', "k7": 0}'
    with pytest.raises(ValueError, match=r"the key\(s\) \['k7'\] appear twice"):
        files.parse_json(text, "big")


def test_only_regular_files_of_bounded_size_are_read(tmp_path):
    (tmp_path / "big.json").write_bytes(b" " * 101)
    with pytest.raises(ValueError, match=r"big.json: larger than 100 bytes"):
        files.read_bytes(tmp_path / "big.json", limit=100)
    assert files.read_bytes(tmp_path / "big.json", limit=101) == b" " * 101
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(ValueError, match=r"pipe.json: not a regular file \(a pipe or a device"):
        files.load_json(tmp_path / "pipe.json")
