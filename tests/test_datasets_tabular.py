"""Tabular loaders (ODDS .mat v5/v7.3, ADBench .npz), standardization, streaming."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from kocc.datasets.tabular import (
    MAX_TAIL_STRETCH,
    available_tabular,
    feature_divisors,
    fit_robust_scaler,
    fit_standardizer,
    heavy_tail_divisors,
    load_tabular,
    scaled_rows,
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


def test_robust_scaling_uses_median_and_iqr_and_keeps_a_far_row_far():
    # 99 rows 0..98 and one row at 1e4: the std is driven by that row, the
    # median (49.5) and the IQR (24.75 to 74.25 -> 49.5) are not.
    column = np.r_[np.arange(99.0), 1e4].astype(np.float32)[:, None]
    standard = column.copy()
    fit_standardizer(standard).transform(standard)
    robust, again = scaled_rows(standard, standard, "robust")
    assert again is robust  # the same rows are scaled once
    expected = (column[:, 0] - np.median(column)) / 49.5
    np.testing.assert_allclose(robust[:, 0], expected, rtol=1e-4, atol=1e-4)
    # the far row's distance to the bulk, in units of the bulk's spread, is
    # ~200 after robust scaling and < 10 after standardization
    assert robust[-1, 0] > 190 and standard[-1, 0] < 10


def test_robust_scaling_keeps_one_std_for_a_feature_with_zero_iqr():
    rng = np.random.default_rng(0)
    spiky = np.r_[np.zeros(90), rng.normal(size=10) * 5]  # IQR 0
    x = np.column_stack([rng.normal(size=100), spiky]).astype(np.float32)
    fit_standardizer(x).transform(x)
    scaler = fit_robust_scaler(x)
    assert scaler.scale_[1] == 1.0  # one standard deviation of the raw feature
    train, test = scaled_rows(x, x[:5].copy(), "robust")
    assert train.dtype == test.dtype == np.float32
    np.testing.assert_allclose(test, train[:5], rtol=1e-6)


def test_standard_scaling_returns_the_rows_themselves():
    x = np.ones((4, 2), np.float32)
    train, test = scaled_rows(x, None, "standard")
    assert train is x and test is None


def test_robust_scaling_rejects_unknown_names_nan_and_empty():
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="feature scaling must be one of"):
        scaled_rows(x, None, "quantile")
    with pytest.raises(ValueError, match="non-finite"):
        fit_robust_scaler(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(ValueError, match="shape"):
        fit_robust_scaler(np.zeros((0, 3), np.float32))


def test_tail_stretch_stretches_heavy_tails_at_most_4x_and_never_shrinks():
    rng = np.random.default_rng(2)
    n = 4000
    normal = rng.normal(size=n)  # IQR / 1.349 ~ std: left as it is
    uniform = rng.uniform(size=n)  # light tails: IQR / 1.349 > std, not shrunk
    spiky = np.r_[rng.normal(size=n - 40) * 0.1, rng.normal(size=40) * 50]
    cauchy = rng.standard_cauchy(size=n)  # very heavy: capped at 4x
    zero_iqr = np.r_[np.zeros(n - 100), rng.normal(size=100)]  # IQR 0: kept
    x = np.column_stack([normal, uniform, spiky, cauchy, zero_iqr])
    x = x.astype(np.float32)
    fit_standardizer(x).transform(x)
    divisors = feature_divisors(x, "tail_stretch")
    assert 0.95 < divisors[0] <= 1.0
    assert divisors[1] == 1.0 and divisors[4] == 1.0
    # spiky: std ~ 5.0 (the 40 far rows), IQR / 1.349 ~ 0.1: stretched ~ 4x (cap)
    assert divisors[2] == divisors[3] == pytest.approx(1 / MAX_TAIL_STRETCH)
    train, test = scaled_rows(x, x[:3].copy(), "tail_stretch")
    np.testing.assert_allclose(train, x / divisors.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(test, train[:3], rtol=1e-6)
    assert train.dtype == np.float32


def test_heavy_tail_stretches_only_features_at_the_tail_stretch_cap():
    rng = np.random.default_rng(2)
    n = 4000
    normal = rng.normal(size=n)  # IQR / 1.349 ~ 1: kept
    # moderately heavy: ~1/3 of the rows 6x wider, IQR / 1.349 ~ 0.5 > 1/4:
    # tail_stretch stretches it ~2x, heavy_tail keeps it
    moderate = np.r_[rng.normal(size=n - n // 3), 6 * rng.normal(size=n // 3)]
    spiky = np.r_[rng.normal(size=n - 40) * 0.1, rng.normal(size=40) * 50]
    zero_iqr = np.r_[np.zeros(n - 100), rng.normal(size=100)]  # IQR 0: kept
    x = np.column_stack([normal, moderate, spiky, zero_iqr]).astype(np.float32)
    fit_standardizer(x).transform(x)
    tail = feature_divisors(x, "tail_stretch")
    assert 0.3 < tail[1] < 0.7  # stretched by tail_stretch, under its cap
    divisors = feature_divisors(x, "heavy_tail")
    np.testing.assert_array_equal(divisors, [1.0, 1.0, 1 / MAX_TAIL_STRETCH, 1.0])
    # at stretch 2 the threshold is 1/2, under the moderate feature's ~0.4
    np.testing.assert_array_equal(
        heavy_tail_divisors(x, stretch=2.0)[:3], [1, 0.5, 0.5]
    )
    train, test = scaled_rows(x, x[:3].copy(), "heavy_tail")
    np.testing.assert_array_equal(train[:, 2], 4 * x[:, 2])
    np.testing.assert_array_equal(train[:, [0, 1, 3]], x[:, [0, 1, 3]])
    np.testing.assert_array_equal(test, train[:3])
    with pytest.raises(ValueError, match="stretch must be >= 1"):
        heavy_tail_divisors(x, stretch=0.5)


def test_feature_divisors_of_each_scaling():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    np.testing.assert_array_equal(feature_divisors(x, "standard"), np.ones(3))
    np.testing.assert_allclose(
        feature_divisors(x, "robust"), fit_robust_scaler(x).scale_
    )
    with pytest.raises(ValueError, match="feature scaling must be one of"):
        feature_divisors(x, "minmax")


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
