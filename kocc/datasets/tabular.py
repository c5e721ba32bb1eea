"""Tabular anomaly-detection data sets: ODDS ``.mat`` and ADBench ``.npz`` files.

The paper's tabular benchmark (Béthune et al., ICML 2023, §5.2, Table 2) uses the
ODDS collection (Rayana, 2016). Here the files are read from a data directory
(:func:`kocc.datasets.paths.data_dir`: an explicit path or ``$KOCC_DATA_DIR``)
laid out as::

    <data_dir>/odds/<name>.mat          # ODDS, keys X, y (1 = outlier)
    <data_dir>/adbench/<k>_<name>.npz   # ADBench, keys X, y (1 = anomaly)

Files placed directly in ``<data_dir>`` are found too. ODDS files come from
the ODDS library (https://odds.cs.stonybrook.edu), ADBench files from the ADBench
repository (https://github.com/Minqi824/ADBench, ``adbench/datasets/Classical``);
kocc downloads neither, and the error for a missing name says so
(:data:`TABULAR_SOURCES`). ODDS files are MATLAB v5
(read with :func:`scipy.io.loadmat`) except ``smtp.mat``, which is MATLAB v7.3, i.e.
HDF5, read with h5py; HDF5 stores MATLAB arrays column-major, so they are transposed.

ADBench names drop the numeric prefix: ``"http"`` is ``16_http.npz``, ``"wine"`` is
``45_wine.npz``; the exact stem (``"16_http"``) works too. When an ODDS file and an
ADBench file share a short name (``cardio``), the short name means the ODDS file and
the ADBench one is reached by its exact stem (``"6_cardio"``).

The module also holds what the benchmark does to a loaded table: standardization
fitted on the training rows (:func:`fit_standardizer`) and a streamed ``tf.data``
pipeline that batches the standardized array without copying it
(:func:`streamed_dataset`), used for the large sets (http 567,498 rows, smtp 95,156,
shuttle 49,097).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import scipy.io
import scipy.io.matlab
import tensorflow as tf
from sklearn.preprocessing import RobustScaler, StandardScaler

from kocc.datasets.paths import data_dir as resolve_data_dir
from kocc.datasets.pipelines import without_autotuning
from kocc.extras import require

ODDS_FOLDER = "odds"
ADBENCH_FOLDER = "adbench"

#: Where the files come from, for the error of a name that is not found.
TABULAR_SOURCES = (
    "ODDS files come from the ODDS library (Rayana, 2016, "
    "https://odds.cs.stonybrook.edu): one '<name>.mat' per data set, put in "
    "<data_dir>/odds/. ADBench files come from the ADBench repository (Han et al., "
    "2022, https://github.com/Minqi824/ADBench, folder adbench/datasets/Classical): "
    "'<k>_<name>.npz', put in <data_dir>/adbench/."
)
_ADBENCH_PREFIX = re.compile(r"^\d+_")


def _tabular_files(root: Path) -> dict[str, Path]:
    """Map every accepted name (lower case) to its file, ODDS names taking precedence.

    Args:
        root: the data directory.

    Returns:
        ``{name: path}`` with the ODDS stems, the ADBench short names that do not
        clash with an ODDS name, and every ADBench exact stem.
    """
    odds: dict[str, Path] = {}
    adbench_short: dict[str, Path] = {}
    adbench_exact: dict[str, Path] = {}
    for folder in (root, root / ODDS_FOLDER, root / ADBENCH_FOLDER):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.mat")):
            odds.setdefault(path.stem.lower(), path)
        for path in sorted(folder.glob("*.npz")):
            stem = path.stem.lower()
            adbench_exact.setdefault(stem, path)
            adbench_short.setdefault(_ADBENCH_PREFIX.sub("", stem), path)
    names = dict(adbench_exact)
    names.update({k: v for k, v in adbench_short.items() if k not in odds})
    names.update(odds)
    return names


def available_tabular(data_dir: str | os.PathLike | None = None) -> list[str]:
    """List the tabular data set names that :func:`load_tabular` accepts.

    ADBench files appear under their short name (``http``) unless an ODDS file has
    that name, and always under their exact stem (``16_http``).

    Args:
        data_dir: the data directory; ``None`` reads ``$KOCC_DATA_DIR``.

    Returns:
        Sorted list of names.

    Raises:
        FileNotFoundError: if the data directory is not set or does not exist.
    """
    return sorted(_tabular_files(resolve_data_dir(data_dir)))


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` and ``y`` from an ODDS ``.mat`` file (MATLAB v5 or v7.3/HDF5)."""
    major, _ = scipy.io.matlab.matfile_version(str(path))
    if major == 2:  # MATLAB v7.3 is HDF5: h5py, arrays stored transposed.
        h5py = require("h5py")

        with h5py.File(path, "r") as handle:
            missing = {"X", "y"} - set(handle.keys())
            if missing:
                raise KeyError(
                    f"{path} has no key(s) {sorted(missing)}; expected 'X' and 'y', "
                    f"found {sorted(handle.keys())}."
                )
            return np.asarray(handle["X"]).T, np.asarray(handle["y"]).T
    content = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    missing = {"X", "y"} - set(content)
    if missing:
        raise KeyError(f"{path} has no key(s) {sorted(missing)}; expected 'X', 'y'.")
    return content["X"], content["y"]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` and ``y`` from an ADBench ``.npz`` file."""
    with np.load(path, allow_pickle=False) as content:
        missing = {"X", "y"} - set(content.files)
        if missing:
            raise KeyError(
                f"{path} has no key(s) {sorted(missing)}; expected 'X' and 'y', "
                f"found {sorted(content.files)}."
            )
        return content["X"], content["y"]


def load_tabular(
    name: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load an ODDS or ADBench tabular data set.

    Args:
        name: data set name, case-insensitive: an ODDS stem (``"wbc"``,
            ``"satimage-2"``), an ADBench short name (``"http"`` for
            ``16_http.npz``) or an ADBench exact stem (``"16_http"``).
        data_dir: the data directory; ``None`` reads ``$KOCC_DATA_DIR``.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(n, d)``, ``y`` int64 of shape ``(n,)``
        with 1 = anomaly and 0 = normal.

    Raises:
        FileNotFoundError: if the data directory is missing, or ``name`` is not
            one of the available names (the message lists them).
        ValueError: if the file holds non-finite features, labels other than 0/1,
            or ``X`` and ``y`` of different lengths.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}.")
    root = resolve_data_dir(data_dir)
    files = _tabular_files(root)
    key = name.lower()
    if key not in files:
        listed = ", ".join(sorted(files)) or "none"
        raise FileNotFoundError(
            f"Unknown tabular data set {name!r}: no ODDS '{name}.mat' or ADBench "
            f"'*_{name}.npz' under {root} (searched {root}, {root / ODDS_FOLDER}, "
            f"{root / ADBENCH_FOLDER}). Available: {listed}. {TABULAR_SOURCES}"
        )
    path = files[key]
    x, y = _read_mat(path) if path.suffix == ".mat" else _read_npz(path)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{path}: X must be 2-D (rows, features), got {x.shape}.")
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{path}: X has {x.shape[0]} rows but y has {y.shape[0]} labels."
        )
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(
            f"{path}: labels must be 0 (normal) or 1 (anomaly), found "
            f"{np.unique(y)[:10].tolist()}."
        )
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"{path}: X holds {bad} non-finite values (NaN or inf).")
    return x, y.astype(np.int64)


def _checked_training_rows(x_train: np.ndarray) -> np.ndarray:
    """``x_train`` as an array, checked: 2-D, at least one row, finite."""
    x_train = np.asarray(x_train)
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(
            f"x_train must have shape (n >= 1, d), got {tuple(x_train.shape)}."
        )
    if not np.all(np.isfinite(x_train)):
        raise ValueError("x_train holds non-finite values (NaN or inf).")
    return x_train


def fit_standardizer(x_train: np.ndarray) -> StandardScaler:
    """Fit the per-feature standardization ``(x - mean) / std`` on training rows.

    Uses scikit-learn's :class:`~sklearn.preprocessing.StandardScaler`: a constant
    feature (zero variance) gets ``std = 1``, so it becomes 0 instead of NaN. The
    scaler is built with ``copy=False`` so that ``transform`` on a float32 array
    standardizes it in place (no second copy of a large table).

    Args:
        x_train: training rows, shape ``(n, d)``, ``n >= 1``.

    Returns:
        The fitted scaler (``mean_``, ``scale_``).

    Raises:
        ValueError: if ``x_train`` is not 2-D with at least one row or holds NaN.
    """
    x_train = _checked_training_rows(x_train)
    return StandardScaler(copy=False).fit(x_train)


#: OCSDF's input scalings (recipe key ``model.feature_scaling``).
FEATURE_SCALINGS = ("standard", "robust", "tail_stretch", "heavy_tail")
#: ``tail_stretch``: the largest factor by which a feature is stretched.
MAX_TAIL_STRETCH = 4.0
#: The interquartile range of a normal distribution, in standard deviations.
NORMAL_IQR = 1.349


def _normal_equivalent_std(x_train: np.ndarray) -> np.ndarray:
    """``IQR_j / 1.349`` per feature of the checked training rows: the standard
    deviation of a normal feature with that interquartile range (float64)."""
    low, high = np.percentile(_checked_training_rows(x_train), [25, 75], axis=0)
    return (high - low) / NORMAL_IQR


def tail_stretch_divisors(
    x_train: np.ndarray, max_stretch: float = MAX_TAIL_STRETCH
) -> np.ndarray:
    """Per-feature divisors of the ``tail_stretch`` scaling of standardized rows.

    ``s_j = clip(IQR_j / 1.349, 1 / max_stretch, 1)``, and ``s_j = 1`` where
    ``IQR_j = 0``. On standardized rows (std 1), ``IQR_j / 1.349`` is the
    standard deviation a normal feature with that interquartile range would
    have: it is 1 for a normal feature, below 1 when the tails are heavier than
    a normal's (the std is inflated by the extreme rows). Dividing by ``s_j``
    stretches such a feature by ``1 / s_j``, at most ``max_stretch``-fold, and
    leaves light-tailed features as they are (never shrunk).

    Args:
        x_train: standardized training rows ``(n, d)``, finite.
        max_stretch: the largest stretch, ``>= 1``.

    Returns:
        float32 divisors ``(d,)`` in ``[1 / max_stretch, 1]``.
    """
    normal_std = _normal_equivalent_std(x_train)
    if not max_stretch >= 1:
        raise ValueError(f"max_stretch must be >= 1, got {max_stretch!r}.")
    divisors = np.clip(normal_std, 1.0 / max_stretch, 1.0)
    return np.where(normal_std > 0, divisors, 1.0).astype(np.float32)


def heavy_tail_divisors(
    x_train: np.ndarray, stretch: float = MAX_TAIL_STRETCH
) -> np.ndarray:
    """Per-feature divisors of the ``heavy_tail`` scaling of standardized rows.

    ``s_j = 1 / stretch`` where ``0 < IQR_j / 1.349 <= 1 / stretch``, else
    ``s_j = 1``: only a feature whose tails are so heavy that
    :func:`tail_stretch_divisors` would stretch it by its full cap is
    stretched, and by that factor; every other feature keeps one standard
    deviation (a feature with ``IQR_j = 0`` too). Unlike ``tail_stretch``, a
    feature with moderately heavy tails (``1 / stretch < IQR_j / 1.349 < 1``)
    is left as it is.

    Args:
        x_train: standardized training rows ``(n, d)``, finite.
        stretch: the stretch of a heavy-tailed feature, ``>= 1``.

    Returns:
        float32 divisors ``(d,)``, each ``1 / stretch`` or 1.
    """
    normal_std = _normal_equivalent_std(x_train)
    if not stretch >= 1:
        raise ValueError(f"stretch must be >= 1, got {stretch!r}.")
    heavy = (normal_std > 0) & (normal_std <= 1.0 / stretch)
    return np.where(heavy, 1.0 / stretch, 1.0).astype(np.float32)


def fit_robust_scaler(x_train: np.ndarray) -> RobustScaler:
    """Fit the per-feature robust scaling ``(x - median) / IQR`` on training rows.

    Meant for rows already standardized by :func:`fit_standardizer`: a feature
    whose interquartile range is 0 (more than half of its rows share a value)
    keeps scale 1 (scikit-learn's :class:`~sklearn.preprocessing.RobustScaler`
    rule), i.e. one standard deviation. The median and the quartiles are not
    moved by a few extreme rows, unlike the mean and the standard deviation, so
    rows far out on a heavy-tailed feature stay far out. It is an affine map
    ``x -> (x - c) / s``: a function that is 1-Lipschitz on the scaled rows is
    ``1 / min_j s_j``-Lipschitz on the standardized ones.

    Args:
        x_train: training rows, shape ``(n, d)``, ``n >= 1``, finite.

    Returns:
        The fitted scaler (``center_``, ``scale_``); ``transform`` returns a
        new array.

    Raises:
        ValueError: if ``x_train`` is not 2-D with at least one row or holds NaN.
    """
    x_train = _checked_training_rows(x_train)
    return RobustScaler().fit(x_train)


#: The scalings that divide each standardized feature by a fitted divisor.
_DIVISOR_SCALINGS = {
    "tail_stretch": tail_stretch_divisors,
    "heavy_tail": heavy_tail_divisors,
}


def _fit_scaling(
    x_train: np.ndarray, scaling: str
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, np.ndarray]:
    """``scaling`` fitted on standardized rows: its map (``None``: identity) and
    its float64 per-feature divisors.

    Raises:
        ValueError: for an unknown ``scaling``.
    """
    if scaling == "standard":
        return None, np.ones(np.asarray(x_train).shape[1])
    if scaling == "robust":
        scaler = fit_robust_scaler(x_train)
        return (
            lambda x: scaler.transform(x).astype(np.float32, copy=False),
            np.asarray(scaler.scale_, np.float64),
        )
    if scaling in _DIVISOR_SCALINGS:
        divisors = _DIVISOR_SCALINGS[scaling](x_train)
        return (lambda x: x / divisors), divisors.astype(np.float64)
    raise ValueError(
        f"feature scaling must be one of {FEATURE_SCALINGS}, got {scaling!r}."
    )


def feature_divisors(x_train: np.ndarray, scaling: str) -> np.ndarray:
    """The per-feature divisors ``s_j`` of ``scaling`` fitted on standardized rows.

    OCSDF's rows are ``(x - c) / s`` (``c`` the median for ``"robust"``, 0
    otherwise), so a score that is 1-Lipschitz on them is
    ``1 / min_j s_j``-Lipschitz on the standardized rows.

    Returns:
        float64 ``(d,)``: ones (``"standard"``), the IQRs (``"robust"``),
        :func:`tail_stretch_divisors` (``"tail_stretch"``) or
        :func:`heavy_tail_divisors` (``"heavy_tail"``).

    Raises:
        ValueError: for an unknown ``scaling``.
    """
    return _fit_scaling(x_train, scaling)[1]


def scaled_rows(
    x_train: np.ndarray, x_test: np.ndarray | None, scaling: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows OCSDF sees: standardized rows as given, robust-scaled or tail-stretched.

    Args:
        x_train: standardized float32 training rows ``(n, d)``.
        x_test: standardized float32 rows to score, or ``None``.
        scaling: ``"standard"`` (returned unchanged, no copy), ``"robust"``
            (:func:`fit_robust_scaler` fitted on ``x_train``, applied to both)
            ``"tail_stretch"`` or ``"heavy_tail"`` (divided by
            :func:`tail_stretch_divisors` or :func:`heavy_tail_divisors` of
            ``x_train``); the last three return new float32 arrays.

    Returns:
        ``(x_train, x_test)`` as OCSDF sees them.

    Raises:
        ValueError: for an unknown ``scaling``.
    """
    transform, _ = _fit_scaling(x_train, scaling)
    if transform is None:
        return x_train, x_test
    train = transform(x_train)
    if x_test is None:
        return train, None
    return train, train if x_test is x_train else transform(x_test)


def streamed_dataset(
    x: np.ndarray,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    repeat: bool = True,
) -> tf.data.Dataset:
    """Batches of rows of ``x`` as a ``tf.data`` pipeline, without copying ``x``.

    A Python generator walks a (per-epoch, seeded) permutation of the row indices and
    yields ``x[indices]``: only one batch is materialised at a time, so memory is the
    array itself plus a few batches (``prefetch(2)``), whatever the table size. This
    is the pipeline for the large ODDS/ADBench sets (http: 567,498 rows). tf.data's
    autotuning is off (:func:`kocc.datasets.pipelines.without_autotuning`): with it
    on, the end of a ``fit`` call of 3,000 steps (about 30 s) waited 13-16 s for the
    autotuning thread.

    Args:
        x: float32 array ``(n, d)`` (e.g. standardized in place).
        batch_size: rows per batch, ``>= 1``; the last batch of an epoch may be
            smaller.
        seed: seed of the permutations; epoch ``e`` uses ``seed + e``.
        shuffle: permute rows each epoch; ``False`` keeps the file order.
        repeat: loop over epochs forever (train with ``steps_per_epoch``); ``False``
            stops after one pass.

    Returns:
        A dataset of float32 tensors of shape ``(None, d)``.

    Raises:
        ValueError: if ``x`` is not a non-empty 2-D float32 array or ``batch_size``
            is not a positive integer.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(
            f"x must be a non-empty 2-D numpy array, got {getattr(x, 'shape', x)}."
        )
    if x.dtype != np.float32:
        raise ValueError(
            f"x must be float32 (convert once, before streaming), got {x.dtype}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    n_rows = x.shape[0]

    def batches() -> Iterator[np.ndarray]:
        epoch = 0
        while True:
            if shuffle:
                order = np.random.default_rng(seed + epoch).permutation(n_rows)
                for start in range(0, n_rows, batch_size):
                    yield x[order[start : start + batch_size]]
            else:
                for start in range(0, n_rows, batch_size):
                    yield x[start : start + batch_size]
            epoch += 1
            if not repeat:
                return

    signature = tf.TensorSpec(shape=(None, x.shape[1]), dtype=tf.float32)
    return without_autotuning(
        tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)
    )
