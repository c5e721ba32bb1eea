"""A fitted implicit surface: a score network, its standardization, its level.

The result type of every point-cloud fit: :func:`kocc.surfaces.fit_point_cloud`
(OCSDF) and :func:`kocc.baselines.distance_regression.fit_distance_regression`
(the DeepSDF-style baseline) both return an :class:`ImplicitSurface`, which
:func:`kocc.surfaces.extract_mesh` turns into a mesh. It lives below both so
that the baseline does not depend on :mod:`kocc.surfaces` (core install: numpy
and TensorFlow only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.validation import check_batch

#: Grid points evaluated per chunk by :func:`extract_mesh`. With the paper's
#: 4x512 network one chunk's activations take about 32768 * 512 * 4 B = 64 MiB
#: per layer, against 16 GiB per layer for the full 200^3 grid at once.
DEFAULT_GRID_BATCH = 32768


@dataclass(frozen=True)
class IsotropicStandardization:
    r"""``x -> (x - center) / scale`` with one scale for all axes.

    ``center`` is the mean point and ``scale`` the pooled standard deviation
    :math:`\sqrt{\frac{1}{3n}\sum_i \|x_i - \bar x\|^2}`, so the standardized
    cloud has unit variance on average over the axes while lengths are only
    rescaled (a per-axis standardization would distort the shape and the
    distances the network learns).
    """

    center: np.ndarray
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray) -> IsotropicStandardization:
        center = points.mean(axis=0, dtype=np.float64)
        scale = float(np.sqrt(np.mean(np.sum((points - center) ** 2, axis=1)) / 3))
        if not scale > 0:
            raise ValueError("the points have zero spread: no surface to fit")
        return cls(center.astype(np.float32), scale)

    def transform(self, points: np.ndarray) -> np.ndarray:
        return ((points - self.center) / self.scale).astype(np.float32)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        return (points * self.scale + self.center).astype(np.float32)


@dataclass
class ImplicitSurface:
    """A fitted implicit surface: a score network and how to read it.

    Attributes:
        model: maps standardized points ``(n, 3)`` to scores ``(n,)`` or
            ``(n, 1)``, higher on the surface (e.g. the OCSDF backbone).
        standardization: the map from original to standardized coordinates.
        level: default extraction level, in score units (the
            ``level_quantile`` quantile of the scores of the training points).
        bounds: ``(2, 3)`` default extraction box (low, high) in original
            coordinates.
        history: training curves (``loss`` etc. per epoch), if any.
        points: the training points, standardized ``(n, 3)``, if kept (the
            fits keep them: the local level of ``extract_mesh(...,
            surface="ridge")`` reads them).
        point_scores: their scores ``(n,)``, if kept.
    """

    model: Callable
    standardization: IsotropicStandardization
    level: float
    bounds: np.ndarray
    history: dict | None = None
    points: np.ndarray | None = None
    point_scores: np.ndarray | None = None

    def score_fn(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """The graph-compatible map ``x (original coords) -> score (n,)``."""
        center = tf.constant(self.standardization.center, tf.float32)
        inv_scale = tf.constant(1.0 / self.standardization.scale, tf.float32)
        model = self.model
        is_layer = isinstance(model, tf.keras.layers.Layer)

        def fn(x: tf.Tensor) -> tf.Tensor:
            z = (x - center) * inv_scale
            out = model(z, training=False) if is_layer else model(z)
            return tf.reshape(out, [-1])

        return fn

    def score(self, points: Any, batch_size: int = DEFAULT_GRID_BATCH) -> np.ndarray:
        """Scores of points given in original coordinates, as a 1-D array."""
        points = check_batch(points, (3,), "points")
        fn = tf.function(self.score_fn(), reduce_retracing=True)
        parts = [
            fn(tf.constant(points[i : i + batch_size])).numpy()
            for i in range(0, len(points), batch_size)
        ]
        return np.concatenate(parts)


def point_spacing(points: np.ndarray) -> float:
    """Median distance from each point to its nearest other point.

    The typical gap of the sampling: with n points spread over a surface of
    area A it is about ``sqrt(A / n)``. Computed with scipy's ``cKDTree``.

    Raises:
        ValueError: if fewer than two points are given.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        raise ValueError(f"point_spacing needs at least 2 points, got {len(points)}")
    distances, _ = cKDTree(points).query(points, k=2)
    return float(np.median(distances[:, 1]))


def check_level_rule(level_quantile: float, level_offset: float) -> None:
    """Validate the arguments of :func:`default_level` (before a fit)."""
    if not 0.0 <= level_quantile <= 1.0:
        raise ValueError(f"level_quantile must be in [0, 1], got {level_quantile!r}")
    if not level_offset >= 0:
        raise ValueError(f"level_offset must be >= 0, got {level_offset!r}")


def default_level(
    scores: np.ndarray,
    standardized_points: np.ndarray,
    level_quantile: float,
    level_offset: float,
) -> float:
    r"""The default extraction level of a point-cloud fit.

    :math:`\ell = Q_q(f(x_i)) - c\,h`: the ``level_quantile`` q of the scores
    of the training points (the paper's 1st percentile for q = 0.01), lowered
    by ``level_offset`` c times the median nearest-neighbour spacing h of the
    standardized points (:func:`point_spacing`). Both fits score in
    standardized units, where a 1-Lipschitz score that fits the points well
    falls by about the distance to the nearest point: between two points a
    gap of h, a score peaked at the points dips by up to h / 2, and the level
    set at the quantile alone breaks into bubbles around the points. An
    offset of a fraction of h closes those gaps (the torus: one piece at
    c = 0.2) but thickens the shell where the fit is loose; ``fit_point_cloud``
    uses c = 0.25 (``docs/surfaces.md``, "What the surfaces need").

    Raises:
        ValueError: if ``level_quantile`` is outside [0, 1] or ``level_offset``
            is negative.
    """
    check_level_rule(level_quantile, level_offset)
    level = float(np.quantile(scores, level_quantile))
    if level_offset > 0:
        level -= float(level_offset) * point_spacing(standardized_points)
    return level


def padded_bounds(points: np.ndarray, padding: float) -> np.ndarray:
    """The bounding box of ``points`` grown by ``padding`` x its largest side."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = float(padding) * float(np.max(high - low))
    return np.stack([low - pad, high + pad]).astype(np.float32)
