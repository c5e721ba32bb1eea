"""Tabular loaders (ODDS .mat v5/v7.3, ADBench .npz), standardization, streaming."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from kocc.datasets.tabular import (
    available_tabular,
    fit_standardizer,
    load_tabular,
    streamed_dataset,
)

# Shapes and outlier counts stated in ../shared/data/README.md.
README_FACTS = {
    "breastw": (683, 9, 239),
    "cardio": (1831, 21, 176),
    "glass": (214, 9, 9),
    "ionosphere": (351, 33, 126),
    "lympho": (148, 18, 6),
    "mammography": (11183, 6, 260),
    "musk": (3062, 166, 97),
    "optdigits": (5216, 64, 150),
    "pima": (768, 8, 268),
    "satimage-2": (5803, 36, 71),
    "shuttle": (49097, 9, 3511),
    "smtp": (95156, 3, 30),
    "thyroid": (3772, 6, 93),
    "vertebral": (240, 6, 30),
    "vowels": (1456, 12, 50),
    "wbc": (378, 30, 21),
    "arrhythmia": (452, 274, 66),
    "mnist": (7603, 100, 700),
    "http": (567498, 3, 2211),
    "wine": (129, 13, 10),
}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(README_FACTS))
def test_load_tabular_matches_readme_shape_and_outlier_count(name):
    rows, features, outliers = README_FACTS[name]
    x, y = load_tabular(name)
    assert x.shape == (rows, features)
    assert x.dtype == np.float32
    assert y.shape == (rows,)
    assert set(np.unique(y).tolist()) <= {0, 1}
    assert int(y.sum()) == outliers
    assert np.all(np.isfinite(x))


@pytest.mark.data
def test_smtp_v73_file_is_read_transposed_not_as_features_by_rows():
    # smtp.mat is HDF5 with X stored (3, 95156); the loader must transpose it.
    x, y = load_tabular("smtp")
    assert x.shape == (95156, 3)
    assert y.shape == (95156,)


@pytest.mark.data
def test_adbench_short_name_and_exact_stem_load_the_same_file():
    x_short, y_short = load_tabular("wine")
    x_exact, y_exact = load_tabular("45_wine")
    np.testing.assert_array_equal(x_short, x_exact)
    np.testing.assert_array_equal(y_short, y_exact)


@pytest.mark.data
def test_available_tabular_lists_every_table2_dataset():
    names = set(available_tabular())
    table2 = set(README_FACTS) - {"arrhythmia", "mnist"}
    assert table2 <= names


@pytest.mark.data
def test_unknown_name_error_lists_available_names():
    with pytest.raises(FileNotFoundError, match="speech") as info:
        load_tabular("speech")
    assert "Available: " in str(info.value)
    assert "wbc" in str(info.value) and "http" in str(info.value)


def test_a_missing_name_says_where_odds_and_adbench_files_come_from(tmp_path):
    (tmp_path / "odds").mkdir()
    _write_mat_v5(tmp_path / "odds" / "wbc.mat", np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(FileNotFoundError) as info:
        load_tabular("pima", data_dir=tmp_path)
    message = str(info.value)
    assert "'pima'" in message and "Available: wbc." in message
    assert "odds.cs.stonybrook.edu" in message and str(tmp_path / "odds") in message
    assert (
        "github.com/Minqi824/ADBench" in message
        and "adbench/datasets/Classical" in message
    )


def test_missing_data_directory_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tabular("wbc", data_dir=tmp_path / "nowhere")


def _write_mat_v5(path, x, y):
    scipy.io.savemat(path, {"X": x, "y": y.reshape(-1, 1)})


def _write_mat_v73(path, x, y):
    # MATLAB v7.3 = HDF5 with a 512-byte userblock; arrays stored column-major,
    # i.e. transposed when read by h5py.
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["X"] = x.T
        handle["y"] = y.reshape(1, -1).astype(np.float64)
    with open(path, "r+b") as raw:
        header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5"
        raw.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_v5_and_v73_mat_files_give_identical_tables(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    y = np.array([0, 0, 1, 0, 1, 0, 0])
    (tmp_path / "odds").mkdir()
    _write_mat_v5(tmp_path / "odds" / "small.mat", x, y)
    _write_mat_v73(tmp_path / "odds" / "big.mat", x, y)
    for name in ("small", "big"):
        xs, ys = load_tabular(name, data_dir=tmp_path)
        np.testing.assert_allclose(xs, x.astype(np.float32))
        np.testing.assert_array_equal(ys, y)


def test_odds_name_takes_precedence_over_adbench_short_name(tmp_path):
    (tmp_path / "odds").mkdir()
    (tmp_path / "adbench").mkdir()
    _write_mat_v5(tmp_path / "odds" / "cardio.mat", np.zeros((3, 2)), np.zeros(3))
    np.savez(tmp_path / "adbench" / "6_cardio.npz", X=np.ones((4, 5)), y=np.zeros(4))
    assert load_tabular("cardio", data_dir=tmp_path)[0].shape == (3, 2)
    assert load_tabular("6_cardio", data_dir=tmp_path)[0].shape == (4, 5)
    assert available_tabular(tmp_path) == ["6_cardio", "cardio"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.ones((3, 2))}, "no key"),
        ({"X": np.ones((3, 2)), "y": np.array([0, 1, 2])}, "labels must be 0"),
        ({"X": np.ones((3, 2)), "y": np.array([0, 1])}, "3 rows but y has 2"),
        ({"X": np.full((3, 2), np.nan), "y": np.array([0, 1, 0])}, "non-finite"),
        ({"X": np.ones(3), "y": np.array([0, 1, 0])}, "must be 2-D"),
    ],
)
def test_malformed_npz_is_an_error_naming_the_problem(tmp_path, arrays, message):
    np.savez(tmp_path / "3_bad.npz", **arrays)
    with pytest.raises((KeyError, ValueError), match=message):
        load_tabular("bad", data_dir=tmp_path)


def test_standardizer_gives_zero_mean_unit_std_and_zero_for_constant_feature():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(5, 3, 500), np.full(500, 2.0)]).astype(np.float32)
    out = fit_standardizer(x).transform(x)
    assert out is x  # in place, no copy
    np.testing.assert_allclose(x[:, 0].mean(), 0, atol=1e-5)
    np.testing.assert_allclose(x[:, 0].std(), 1, atol=1e-5)
    np.testing.assert_array_equal(x[:, 1], 0)


def test_standardizer_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="shape"):
        fit_standardizer(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        fit_standardizer(np.array([[np.nan, 1.0]], np.float32))


def test_streamed_dataset_one_epoch_visits_every_row_once():
    x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    batches = [b.numpy() for b in streamed_dataset(x, 5, seed=3, repeat=False)]
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate(batches)
    np.testing.assert_array_equal(seen[np.argsort(seen[:, 0])], x)
    assert not np.array_equal(seen, x)  # shuffled


def test_streamed_dataset_is_seeded_and_reshuffles_each_epoch():
    x = np.arange(40, dtype=np.float32).reshape(40, 1)
    first = [b.numpy() for b in streamed_dataset(x, 40, seed=7).take(2)]
    again = [b.numpy() for b in streamed_dataset(x, 40, seed=7).take(2)]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])


def test_streamed_dataset_reads_the_array_without_snapshot_copy():
    x = np.zeros((10, 2), np.float32)
    dataset = streamed_dataset(x, 4, shuffle=False)
    x[:] = 7.0  # a pipeline holding its own copy would still yield zeros
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), np.full((4, 2), 7.0))


@pytest.mark.parametrize(
    ("x", "batch_size", "message"),
    [
        (np.zeros((4, 2), np.float64), 2, "float32"),
        (np.zeros((0, 2), np.float32), 2, "non-empty"),
        (np.zeros((4, 2), np.float32), 0, ">= 1"),
        (np.zeros((4, 2), np.float32), 2.5, "positive int"),
    ],
)
def test_streamed_dataset_rejects_bad_input(x, batch_size, message):
    with pytest.raises(ValueError, match=message):
        streamed_dataset(x, batch_size)
