"""Valuations from data (tf_ama.data.empirical): reading, checks, the seeded split, provenance,
the bootstrap prior, and a model trained on data that loads without its file."""

import hashlib
import io
import json
import os
import zipfile

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_ama
from tf_ama.data import data_files


def _profiles(rows=300, m=2, n=3, seed=0, scale=1.0):
    return np.random.default_rng(seed).uniform(0, scale, size=(rows, m, n))


def _write(path, profiles, header=True):
    """`profiles` in the format of `path`'s extension."""
    flat = profiles.reshape(len(profiles), -1)
    if path.endswith(".npy"):
        np.save(path, profiles)
    elif path.endswith(".npz"):
        np.savez(path, valuations=flat)
    else:
        np.savetxt(path, flat, delimiter=",", fmt="%.17g",
                   header=",".join(f"v{k}" for k in range(flat.shape[1])) if header else "",
                   comments="")
    return path


@pytest.mark.parametrize("name", ["a.npy", "b.npz", "c.csv", "d.csv"])
def test_every_format_reads_back_the_profiles_in_blocks(tmp_path, name):
    profiles = _profiles(rows=1000, scale=1e6)
    path = _write(str(tmp_path / name), profiles, header=name != "d.csv")
    blocks = list(data_files.read_blocks(path, 2, 3, block_rows=128))
    assert [len(b) for b in blocks] == [128] * 7 + [104]
    np.testing.assert_array_equal(np.concatenate(blocks), profiles)  # %.17g round-trips


def test_a_flat_npy_is_read_bidder_major(tmp_path):
    profiles = _profiles(rows=10)
    np.save(tmp_path / "flat.npy", profiles.reshape(10, 6))
    np.testing.assert_array_equal(
        np.concatenate(list(data_files.read_blocks(str(tmp_path / "flat.npy"), 2, 3))), profiles)


def test_csv_quirks_are_read_as_meant(tmp_path):
    """A byte-order mark (Excel's "CSV UTF-8"), quoted fields, CRLF, spaces and blank lines."""
    profiles = _profiles(rows=3, m=1, n=2)
    rows = [",".join(f"{v:.17g}" for v in row) for row in profiles.reshape(3, 2)]
    texts = {"bom.csv": ("\ufeff" + "\n".join(rows) + "\n").encode("utf-8"),
             "quoted.csv": ("a,b\r\n" + "\r\n".join(
                 ",".join(f'" {field} "' for field in row.split(",")) for row in rows)).encode(),
             "blank.csv": ("\n" + "\n\n".join(rows) + "\n\n\n").encode()}
    for name, data in texts.items():
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(
            np.concatenate(list(data_files.read_blocks(str(tmp_path / name), 1, 2))), profiles,
            err_msg=name)
    (tmp_path / "latin.csv").write_bytes("caf\xe9,1\n1,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.csv line 1: not UTF-8 text"):
        list(data_files.read_blocks(str(tmp_path / "latin.csv"), 1, 2))
    (tmp_path / "gap.csv").write_text("1,2\n\n3\n")
    with pytest.raises(ValueError, match="line 3: 1 values"):  # numbered as in an editor
        list(data_files.read_blocks(str(tmp_path / "gap.csv"), 1, 2))
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no profiles"):
        list(data_files.read_blocks(str(tmp_path / "empty.csv"), 1, 2))


@pytest.mark.parametrize("content, message", [
    ("1,2,3,4,5,6\n1,2,3,4,5\n", "line 2: 5 values; every row must hold num_bidders x num_items = 6"),
    ("1,2,3,4,5,6\n1,2,nan,4,5,6\n", "line 2: values must be finite, >= 0"),
    ("a,b,c,d,e,f\n1,2,3,4,5,-1\n", "line 2: values must be finite, >= 0"),
    ("1,2,3,4,5,6\n1,2,x,4,5,6\n", "line 2: not a number"),
    ("1,2,3,4,5,6\n1,2,1_000,4,5,6\n", "line 2: not a number"),
    ("1,2,3,4,5,6\n1,2,inf,4,5,6\n", "line 2: values must be finite"),
    ("1,2,3,4,5,6\n1,2,1e39,4,5,6\n", "line 2: values must be finite, >= 0 and add up to at "
                                     "most 3.403e+38 per profile"),
    ("1,2,3,4,5,6\n1,2,2e38,2e38,5,6\n", "line 2: values must be finite, >= 0 and add up to at "
                                        "most 3.403e+38 per profile"),
    ("a,b,c,d,e,f\n", "holds no profiles"),
    # A field beyond the csv module's limit (was a _csv.Error traceback).
    ("1,2,3,4,5,6\n0." + "1" * 200_000 + ",2,3,4,5,6\n", "line 2: a field longer than 131,072 "
                                                        "characters (no number is that long)"),
    ('1,2,3,4,5,6\n"1,2,3,4,5,6\n1,2,3,4,5,6\n', "line 2: a quote opened on this line is not "
                                                  "closed"),
    ("1,2,3,4,5,6\n1,2,3,4,5,\u0663\n", "line 2: not a number"),  # ASCII decimals only
])
def test_bad_csv_rows_are_refused_with_their_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="`valuations` .*bad.csv " if "no profiles" not in message
                       else "holds no profiles") as error:
        list(data_files.read_blocks(str(path), 2, 3))
    assert message in str(error.value)


def test_bad_files_are_refused_with_the_fix(tmp_path):
    np.save(tmp_path / "wide.npy", np.ones((5, 7)))
    np.savez(tmp_path / "two.npz", a=np.ones((5, 6)), b=np.ones((5, 6)))
    np.save(tmp_path / "nan.npy", np.array([[[1, 2, 3], [4, 5, 6]], [[1, 2, np.nan], [4, 5, 6]]]))
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    (tmp_path / "x.txt").write_text("1")
    (tmp_path / "junk.npy").write_text("not numpy")
    # Were a BadZipFile traceback, a silent rounding of 2**53 + 1, durations read as numbers,
    # "does not exist" for a folder; an upper-case extension was read as .npy.
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04junk")
    np.savez(tmp_path / "crc.npz", a=np.ones((5, 6)))
    damaged = bytearray((tmp_path / "crc.npz").read_bytes())
    damaged[60:80] = bytes(20)
    (tmp_path / "crc.npz").write_bytes(bytes(damaged))
    np.save(tmp_path / "truncated.npy", np.ones((100, 6)))
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "truncated.npy").read_bytes()[:300])
    np.save(tmp_path / "int64.npy", np.full((5, 6), 2**53 + 1, np.int64))
    np.save(tmp_path / "uint64.npy", np.full((5, 6), 2**64 - 1, np.uint64))
    np.save(tmp_path / "durations.npy", np.ones((5, 6), "timedelta64[s]"))
    np.save(tmp_path / "booleans.npy", np.ones((5, 6), bool))
    np.save(tmp_path / "complex.npy", np.ones((5, 6), complex))
    np.save(tmp_path / "long.npy", np.ones((5, 6), np.longdouble))
    (tmp_path / "folder.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")  # reading it would wait for a writer
    with zipfile.ZipFile(tmp_path / "pickle.npz", "w") as archive:
        archive.writestr("x.pkl", b"abc")
    with open(tmp_path / "archive.npy", "wb") as file:  # an .npz under an .npy name
        np.savez(file, x=np.ones((5, 6)))
    with open(tmp_path / "array.npz", "wb") as file:  # and the other way round
        np.save(file, np.ones((5, 6)))
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive:
        member = io.BytesIO()
        np.save(member, np.ones((5, 6)))
        with pytest.warns(UserWarning, match="Duplicate name"):
            for _ in range(2):
                archive.writestr("valuations.npy", member.getvalue())
    (tmp_path / "big.csv").write_text("1,2,3,4,5,6\n9007199254740993,1,2,3,4,5\n")
    (tmp_path / "semicolons.csv").write_text("1;2;3;4;5;6\n")
    (tmp_path / "upper.CSV").write_text("1,2,3,4,5,6\n" * 3 + "1,2,3,4,5\n")
    for name, message in [("wide.npy", r"shape \[5, 7\]; it must be \[profiles, 2, 3\]"),
                          ("damaged.npz", r"not a readable .npz file: not a readable zip archive"),
                          ("crc.npz", r"not a readable .npz file: .*Bad CRC-32"),
                          ("truncated.npy", r"not a readable .npy file"),
                          ("int64.npy", r"profile 0: the integer 9007199254740993 is beyond "
                                        r"2\*\*53"),
                          ("uint64.npy", r"the integer 18446744073709551615 is beyond 2\*\*53"),
                          ("durations.npy", r"must be real numbers .*dtype is timedelta64\[s\]"),
                          ("booleans.npy", r"must be real numbers .*dtype is bool"),
                          ("complex.npy", r"must be real numbers .*dtype is complex128"),
                          *([("long.npy", r"must be real numbers .*dtype is float(96|128)")]
                            if np.dtype(np.longdouble).itemsize > 8 else []),
                          ("folder.csv", r"folder.csv is a directory; give a data file in it"),
                          ("pipe.csv", r"pipe.csv is not a regular file"),
                          ("pickle.npz", r"its member 'x.pkl' is not a NumPy array"),
                          ("archive.npy", r"the file is in the .npz format; name it .npz"),
                          ("array.npz", r"the file is in the .npy format; name it .npy"),
                          ("twice.npz", r"the archive holds a member name twice"),
                          ("big.csv", r"line 2: the integer 9007199254740993 is beyond 2\*\*53"),
                          ("semicolons.csv", r"holds no profiles: its one line, '1;2;3;4;5;6', "
                                             r"is not all numbers, so it is read as a header"),
                          ("upper.CSV", r"upper.CSV line 4: 5 values"),
                          ("two.npz", "one array or one named 'valuations'"),
                          ("nan.npy", r"profile 1: values must be finite, >= 0"),
                          ("x.parquet", "Parquet is not read .*numpy.save"),
                          ("x.txt", "unknown format '.txt'"),
                          ("junk.npy", "not a readable .npy file"),
                          ("missing.csv", "does not exist")]:
        with pytest.raises(ValueError, match=message):
            list(data_files.read_blocks(str(tmp_path / name), 2, 3))


def _splitmix_uniform(seed, row):
    """Plain-integer SplitMix64 (the oracle of the vectorized split)."""
    mask = (1 << 64) - 1
    z = (row + (seed << 32) + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


@hypothesis.given(seed=st.integers(0, 2**31 - 1), start=st.integers(0, 2**40))
@hypothesis.settings(max_examples=50, deadline=None)
def test_the_split_hash_equals_a_plain_integer_oracle(seed, start):
    rows = np.arange(start, start + 20, dtype=np.uint64)
    assert data_files._row_uniforms(seed, rows).tolist() == [
        _splitmix_uniform(seed, int(row)) for row in rows]


def test_the_split_is_seeded_exhaustive_and_independent_of_the_blocks(tmp_path):
    profiles = _profiles(rows=20_000, m=1, n=2)
    path = _write(str(tmp_path / "p.npy"), profiles)
    setting = tf_ama.empirical_setting("additive_1x2_uniform", path, 0.2, 0.1, split_seed=7)
    params = setting.distribution_params
    parts = {split: np.concatenate(list(data_files.split_blocks(params, 1, 2, split)))
             for split in data_files.SPLITS}
    assert {k: len(v) for k, v in parts.items()} == params["rows"]
    # Every row in exactly one split, in file order within each.
    together = np.concatenate(list(parts.values())).reshape(len(profiles), -1)
    assert sorted(map(tuple, together)) == sorted(map(tuple, profiles.reshape(len(profiles), -1)))
    assert abs(params["rows"]["validation"] / 20_000 - 0.2) < 0.015
    assert abs(params["rows"]["test"] / 20_000 - 0.1) < 0.015
    for block_rows in (1, 333):  # the split of a row does not depend on how the file is read
        codes = np.concatenate([c for _, c in data_files.assign_splits(path, 1, 2, 7, 0.2, 0.1)])
        original = data_files.read_blocks
        try:
            data_files.read_blocks = lambda *a, **k: original(*a, block_rows=block_rows)
            again = np.concatenate([c for _, c in data_files.assign_splits(path, 1, 2, 7, 0.2, 0.1)])
        finally:
            data_files.read_blocks = original
        np.testing.assert_array_equal(codes, again)
    other = tf_ama.empirical_setting("additive_1x2_uniform", path, 0.2, 0.1, split_seed=8)
    assert other.distribution_params["rows"] != params["rows"]


def test_the_setting_records_the_provenance_and_samples_training_rows_only(tmp_path):
    profiles = _profiles(rows=500)
    path = _write(str(tmp_path / "bids.csv"), profiles)
    setting = tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path)
    params = setting.distribution_params
    assert setting.name == "bids" and setting.distribution == "empirical"
    assert params["path"] == os.path.abspath(path) and params["format"] == ".csv"
    assert params["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert sum(params["rows"].values()) == 500
    train = data_files.split_rows(params, 2, 3, "train")
    drawn = setting.sample(2000, seed=(1, 2)).numpy()
    train32 = {tuple(row) for row in train.astype(np.float32).reshape(len(train), -1)}
    assert all(tuple(row) in train32 for row in drawn.reshape(2000, -1))
    assert len({tuple(row) for row in drawn.reshape(2000, -1)}) > 0.9 * len(train)
    np.testing.assert_array_equal(setting.sample(64, (3, 4)), setting.sample(64, (3, 4)))
    # The setting round-trips through JSON (a run's config, an export's JSON).
    assert tf_ama.Setting.from_dict(setting.to_dict()) == setting


def test_a_changed_file_is_refused(tmp_path):
    path = _write(str(tmp_path / "bids.npy"), _profiles())
    setting = tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path)
    np.save(path, _profiles(seed=1))
    with pytest.raises(ValueError, match="has changed since this setting was made"):
        data_files.split_rows(setting.distribution_params, 2, 3, "validation")
    os.remove(path)
    with pytest.raises(ValueError, match="no longer exists"):
        data_files.split_rows(setting.distribution_params, 2, 3, "test")


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
    ({"validation_fraction": 0}, "`validation_fraction` must be a finite number > 0"),
    ({"split_seed": -1}, "`split_seed`"),
])
def test_bad_split_arguments_are_refused(tmp_path, kwargs, message):
    path = _write(str(tmp_path / "bids.npy"), _profiles())
    with pytest.raises(ValueError, match=message):
        tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path, **kwargs)


def test_too_few_rows_for_a_split_are_refused(tmp_path):
    path = _write(str(tmp_path / "bids.npy"), _profiles(rows=3))
    with pytest.raises(ValueError, match="split.* empty"):
        tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path)


def test_a_dataset_is_saved_atomically_and_becomes_the_data(tmp_path):
    profiles = _profiles(rows=70)
    target = str(tmp_path / "saved.npy")
    for source in (tf.data.Dataset.from_tensor_slices(profiles),
                   tf.data.Dataset.from_tensor_slices(profiles).batch(16), profiles):
        setting = tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), source,
                                           test_fraction=0.2, save_as=target)
        np.testing.assert_array_equal(np.load(target), profiles)
        assert setting.distribution_params["path"] == os.path.abspath(target)
        with pytest.raises(ValueError, match="`save_as` .*saved.npy' exists"):
            tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), source, save_as=target)
        os.remove(target)
    tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), profiles, test_fraction=0.2,
                             save_as=target)
    bad = tf.data.Dataset.from_tensor_slices(np.concatenate([profiles, -profiles]))
    with pytest.raises(ValueError, match="finite, >= 0"):
        tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), bad,
                                 save_as=str(tmp_path / "never.npy"))
    assert sorted(os.listdir(tmp_path)) == ["saved.npy"]  # nothing half-written
    with pytest.raises(ValueError, match="`save_as`: give an .npy path"):
        tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), profiles)
    with pytest.raises(ValueError, match=r"elements must be profiles \[2, 3\]"):
        tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), np.ones((4, 3, 2)),
                                 save_as=str(tmp_path / "never.npy"))
    # Converted before (an imaginary part dropped, 2**53 + 1 rounded, "0.5" read as 0.5).
    for array, message in [(np.ones((4, 2, 3), complex), "dtype is complex128"),
                           (np.full((4, 2, 3), "0.5"), "dtype is <U3"),
                           (np.ones((4, 2, 3), bool), "dtype is bool"),
                           (np.full((4, 2, 3), 2**53 + 1, np.uint64), "beyond 2\\*\\*53")]:
        with pytest.raises(ValueError, match=rf"`valuations` \(the source\).*{message}"):
            tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), array,
                                     save_as=str(tmp_path / "never.npy"))
    assert sorted(os.listdir(tmp_path)) == ["saved.npy"]


@pytest.mark.slow
def test_a_model_trained_on_data_loads_without_the_file(tmp_path):
    path = _write(str(tmp_path / "bids.npy"), _profiles(rows=400))
    setting = tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path)
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=8)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(tf_ama.fresh_valuations(32), epochs=1, steps_per_epoch=2, verbose=0)
    model.save(tmp_path / "m.keras")
    os.remove(path)
    data_files._cache.clear()  # as in a new process
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.setting == setting
    bids = tf.constant(_profiles(rows=5), tf.float64)
    np.testing.assert_array_equal(loaded(bids)["payments"],
                                  model(bids)["payments"])
    with pytest.raises(ValueError, match="no longer exists"):
        loaded.valuation_distribution  # noqa: B018  (training it again needs the file)


def test_empirical_params_are_checked_without_reading_the_file():
    with pytest.raises(ValueError, match=r"missing \['sha256'"):
        tf_ama.Setting("x", 2, 3, distribution="empirical",
                       distribution_params={"path": "/nowhere.npy"})


def test_an_edited_empirical_setting_is_refused(tmp_path):
    """A setting file copied from a run's config and edited: checked when made, and its rows
    against the file when read."""
    path = _write(str(tmp_path / "bids.npy"), _profiles())
    fields = tf_ama.empirical_setting(tf_ama.Setting("m23", 2, 3), path).to_dict()
    params = fields["distribution_params"]
    with pytest.raises(ValueError, match=r"`validation_fraction` \+ `test_fraction` must be < 1"):
        tf_ama.Setting.from_dict({**fields, "distribution_params": {
            **params, "validation_fraction": 0.9, "test_fraction": 0.9}})
    with pytest.raises(ValueError, match=r"`distribution_params.rows.test` must be an int >= 1"):
        tf_ama.Setting.from_dict({**fields, "distribution_params": {
            **params, "rows": {**params["rows"], "test": 0}}})
    edited = tf_ama.Setting.from_dict({**fields, "distribution_params": {
        **params, "rows": {**params["rows"], "validation": 5}}})
    with pytest.raises(ValueError, match=r"the validation split has more than 5 rows, not the 5"):
        data_files.split_rows(edited.distribution_params, 2, 3, "validation")


# ------------------------------------------------------------------ the command line, end to end
def _weights(run_dir):
    return [w.numpy() for w in tf_ama.training.runs.load_run(run_dir)[0].weights]


TINY = ["--menu", "lottery", "--menu-size", "16", "--steps", "100", "--batch-size", "128"]
SMALL = [*TINY, "--validation-samples", "500", "--samples", "2000"]


@pytest.mark.slow
def test_train_on_a_csv_evaluate_on_held_out_rows_and_export(tmp_path, capsys):
    """The README's two commands on a generated CSV: train (with the final evaluation on the
    held-out test rows), export."""
    from tf_ama.cli.app import main
    from tf_ama.core.mechanism import exact_outcome

    profiles = _profiles(rows=3000, m=2, n=2, seed=3)
    csv = _write(str(tmp_path / "bids.csv"), profiles)
    run, models = str(tmp_path / "run"), str(tmp_path / "models")
    assert main(["train", "additive_2x2_uniform", "--valuations", csv, "--out", run, *TINY]) == 0
    out = capsys.readouterr().out
    assert "on the test rows" in out and "profiles (held-out rows of the data)" in out
    config = tf_ama.training.runs.read_config(run)
    params = config["setting"]["distribution_params"]
    assert config["setting"]["distribution"] == "empirical" and params["path"] == csv
    assert params["sha256"] == hashlib.sha256(open(csv, "rb").read()).hexdigest()
    # The final evaluation is on every test row, and equals exact_outcome on them.
    report = json.loads(open(os.path.join(run, tf_ama.training.runs.EVALUATION)).read())
    test = np.concatenate(list(data_files.split_blocks(params, 2, 2, "test")))
    assert report["num_samples"] == len(test) == params["rows"]["test"]
    assert report["seed"] is None  # the data, not a seed, decide the profiles
    model = tf_ama.training.runs.load_run(run)[0]
    payments = exact_outcome(tf.constant(test), *model.menu(tf.float64))["payments"].numpy()
    np.testing.assert_allclose(report["revenue"], payments.sum(axis=1).mean(), rtol=1e-12)
    assert report["baselines"]["vcg"]["revenue"] == pytest.approx(
        np.mean(np.sort(test, axis=1)[:, -2, :].sum(axis=1)), rel=1e-12)  # second prices
    # The same command again loads the finished run; after the file changed, it is refused
    # naming the hash.
    assert main(["train", "additive_2x2_uniform", "--valuations", csv, "--out", run, *TINY]) == 0
    assert "this run has finished" in capsys.readouterr().out
    with open(csv, "a") as file:
        file.write("0.5,0.5,0.5,0.5\n")
    assert main(["train", "additive_2x2_uniform", "--valuations", csv, "--out", run, *TINY]) == 2
    err = capsys.readouterr().err
    assert "it differs in setting.distribution_params." in err
    assert "setting.distribution_params.sha256" in err.split("); resume")[0]
    np.savetxt(csv, profiles.reshape(len(profiles), -1), delimiter=",", fmt="%.17g",
               header="v0,v1,v2,v3", comments="")  # as it was
    assert main(["evaluate", run, "--json"]) == 0  # tf-ama evaluate: the same test rows
    again = json.loads(capsys.readouterr().out)
    assert (again["num_samples"], again["revenue"]) == (len(test), report["revenue"])
    assert main(["export", run, "--to", models]) == 0
    assert os.path.isfile(os.path.join(models, "1", "saved_model.pb"))


def test_data_flags_without_a_file_are_refused(tmp_path, capsys):
    from tf_ama.cli.app import main

    csv = _write(str(tmp_path / "bids.csv"), _profiles(rows=50, m=2, n=2))
    assert main(["train", "additive_2x2_uniform", "--valuations", csv, "--samples", "10",
                 "--validation-samples", "10", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith(
        "tf-ama train: error: --samples, --validation-samples: a run on data validates and "
        "evaluates on its held-out rows")

    assert main(["train", "additive_2x2_uniform", "--test-fraction", "0.2",
                 "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.rstrip().endswith(
        "--validation-fraction, --test-fraction, --split-seed: only with --valuations FILE.")
    assert main(["train", "additive_2x2_uniform", "--valuations", str(tmp_path / "none.csv"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "none.csv does not exist" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.slow
def test_a_json_setting_equal_to_a_built_in_gives_the_bit_identical_run(tmp_path, capsys):
    from tf_ama.cli.app import main

    assert main(["settings", "--show", "additive_2x2_uniform"]) == 0
    path = tmp_path / "mine.json"
    path.write_text(capsys.readouterr().out)
    assert json.loads(path.read_text())["distribution_params"] == {}
    runs = [str(tmp_path / "built_in"), str(tmp_path / "from_file")]
    for setting, run in zip(["additive_2x2_uniform", str(path)], runs):
        assert main(["train", setting, "--out", run, *SMALL]) == 0
    for mine, built_in in zip(_weights(runs[1]), _weights(runs[0])):
        np.testing.assert_array_equal(mine, built_in)
    assert tf_ama.training.runs.read_config(runs[0]) == tf_ama.training.runs.read_config(runs[1])
