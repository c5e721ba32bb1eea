"""Synthetic 2-D data sets (scikit-learn generators), standardized.

The five toys of the paper (section 5.1, appendix E): ``one_cloud``,
``two_circles``, ``two_blobs``, ``blob_and_cloud``, ``two_moons``; and two shapes
with an analytic signed distance, ``disk`` and ``annulus``, used to check that
OCSDF learns the SDF (Theorem 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn import datasets as skd


def _one_cloud(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(n, 2)) * np.array([1.0, 0.5])


def _two_circles(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    x, _ = skd.make_circles(
        n_samples=n, noise=noise, factor=0.5, random_state=_sk_seed(rng)
    )
    return x


def _two_blobs(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    x, _ = skd.make_blobs(
        n_samples=n,
        centers=[[-2.0, 0.0], [2.0, 0.0]],
        cluster_std=0.5,
        random_state=_sk_seed(rng),
    )
    return x


def _blob_and_cloud(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    n_blob = n // 2
    blob = rng.normal(size=(n_blob, 2)) * 0.3 + np.array([-2.0, 0.0])
    cloud = rng.normal(size=(n - n_blob, 2)) * np.array([1.0, 0.5]) + [1.5, 0.0]
    return np.concatenate([blob, cloud])


def _two_moons(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    x, _ = skd.make_moons(n_samples=n, noise=noise, random_state=_sk_seed(rng))
    return x


def _sk_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


_TOYS: dict[str, Callable[[int, float, np.random.Generator], np.ndarray]] = {
    "one_cloud": _one_cloud,
    "two_circles": _two_circles,
    "two_blobs": _two_blobs,
    "blob_and_cloud": _blob_and_cloud,
    "two_moons": _two_moons,
}

TOY_NAMES: tuple[str, ...] = tuple(_TOYS)


class Standardizer:
    """Per-feature standardization ``(x - mean) / std`` fitted on training data.

    Constant features keep a scale of 1 so they map to 0 instead of NaN.

    scikit-learn's ``StandardScaler`` does the same (and also maps constant
    features to 0); this class stays because it fits the statistics in
    float64 and applies them in float32, exactly as the measured toy tables
    (Table 1, Figure 6) were produced: switching could move their figures by
    rounding and would need re-measuring them.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, np.float64)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        return cls(x.mean(axis=0), scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) / self.scale).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) * self.scale + self.mean).astype(np.float32)


def make_toy(
    name: str, n_samples: int = 2048, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, Standardizer]:
    """Draw one of the paper's 2-D toys and standardize it.

    Args:
        name: one of :data:`TOY_NAMES`.
        n_samples: number of points (> 0).
        noise: generator noise (moons and circles).
        seed: seed of the draw.

    Returns:
        ``(x, standardizer)``: float32 ``(n_samples, 2)`` standardized points and
        the fitted :class:`Standardizer` (to map other points the same way).

    Raises:
        ValueError: for an unknown name or ``n_samples <= 0``.
    """
    if name not in _TOYS:
        raise ValueError(f"unknown toy {name!r}: expected one of {list(_TOYS)}")
    if int(n_samples) <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    raw = _TOYS[name](int(n_samples), float(noise), rng)
    scaler = Standardizer.fit(raw)
    return scaler.transform(raw), scaler


def disk(
    n_samples: int = 4096, radius: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Uniform points in a disk, and its signed distance (positive inside).

    Returns:
        ``(x, sdf)`` with ``sdf(p) = radius - ||p||``.
    """
    return annulus(n_samples, inner=0.0, outer=radius, seed=seed)


def annulus(
    n_samples: int = 4096, inner: float = 1.0, outer: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Uniform points in the annulus ``inner <= ||p|| <= outer`` and its SDF.

    Returns:
        ``(x, sdf)`` with ``sdf(p) = min(||p|| - inner, outer - ||p||)``
        (positive inside; for ``inner = 0`` it is the disk's SDF).

    Raises:
        ValueError: unless ``0 <= inner < outer``.
    """
    if not 0.0 <= inner < outer:
        raise ValueError(f"need 0 <= inner < outer, got {inner}, {outer}")
    rng = np.random.default_rng(seed)
    # uniform in area: r^2 uniform between inner^2 and outer^2
    r = np.sqrt(rng.uniform(inner**2, outer**2, size=n_samples))
    theta = rng.uniform(0.0, 2.0 * np.pi, size=n_samples)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).astype(np.float32)

    def sdf(p: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(np.asarray(p, np.float64), axis=-1)
        if inner == 0.0:
            return outer - norm
        return np.minimum(norm - inner, outer - norm)

    return x, sdf


def far_uniform_points(
    x_train: np.ndarray,
    n: int,
    low: float = -3.0,
    high: float = 3.0,
    min_distance: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    """Uniform points of ``[low, high]^d`` farther than ``min_distance`` from data.

    The anomalies of the toy evaluation: uniform points that do not lie on the
    data (nearest neighbour by a KD-tree).

    Returns:
        float32 array of exactly ``n`` points.
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(np.asarray(x_train, np.float64))
    rng = np.random.default_rng(seed)
    d = np.asarray(x_train).shape[1]
    kept: list[np.ndarray] = []
    total = 0
    while total < n:
        cand = rng.uniform(low, high, size=(max(2 * n, 1024), d))
        dist, _ = tree.query(cand, k=1)
        cand = cand[dist > min_distance]
        kept.append(cand)
        total += len(cand)
        if total == 0 and len(kept) > 50:
            raise ValueError("no point of the box is farther than min_distance")
    return np.concatenate(kept)[:n].astype(np.float32)
