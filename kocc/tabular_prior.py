"""Negative priors for tabular data: where Newton-Raphson negative sampling starts.

OCSDF draws its negatives by moving samples of a prior distribution P towards the
boundary of the learned support (Béthune et al., ICML 2023, Algorithm 1: ``z0 ~ P``,
then ``z <- z - eta * f(z) * grad f(z) / ||grad f(z)||^2`` for T steps). For tabular
data, on standardized features, three priors are offered:

* :func:`data_box` — uniform over the box ``[min_j - pad, max_j + pad]`` per feature
  ``j`` of the (standardized) training rows: a :class:`kocc.sampling.Box`.
* :func:`data_ball` — uniform over the ball around the rows' mean that covers every
  row, its radius widened by ``pad``: a :class:`kocc.sampling.Ball`, the paper's
  domain (appendix E: "the ball of radius 5 ... guarantees X ⊂ B") with the radius
  taken from the rows so that it does.
* :class:`GaussianPrior` — independent per-feature Gaussians
  ``z_j ~ N(mean_j, (scale * std_j)^2)`` fitted on the training rows. Its support is
  the whole space, so :meth:`GaussianPrior.project` is the identity.

All three are :class:`kocc.sampling.Domain` objects: ``sample(n, seed)`` returns a
float32 tensor ``(n, d)``, ``project(z)`` maps points back into the domain, and
all serialize with ``get_config``/``from_config``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from kocc.sampling import Ball, Box, Domain


def _as_rows(x: np.ndarray | tf.Tensor, what: str) -> np.ndarray:
    """Validate a 2-D, non-empty, finite table and return it as a numpy array."""
    rows = np.asarray(x)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ValueError(f"{what} must have shape (n >= 1, d >= 1), got {rows.shape}.")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{what} holds non-finite values (NaN or inf).")
    return rows


def data_box(x: np.ndarray | tf.Tensor, pad: float = 1.0) -> Box:
    """Uniform prior over the bounding box of the data, widened by ``pad``.

    ``low_j = min_i x_ij - pad`` and ``high_j = max_i x_ij + pad`` for every
    feature ``j``; on standardized features ``pad`` is in units of standard
    deviations. A constant feature gives an interval of width ``2 * pad``.

    Args:
        x: training rows ``(n, d)``, finite.
        pad: margin added on each side of every feature, ``>= 0`` (``> 0`` when a
            feature is constant, so the box has a non-empty interior).

    Returns:
        A :class:`kocc.sampling.Box` with float32 bounds of shape ``(d,)``.

    Raises:
        ValueError: if ``x`` is not a finite ``(n, d)`` table or ``pad`` is negative
            or non-finite, or the box would be flat (constant feature, ``pad = 0``).
    """
    rows = _as_rows(x, "x")
    return _padded_box(rows.min(axis=0), rows.max(axis=0), pad)


def data_ball(x: np.ndarray | tf.Tensor, pad: float = 0.0) -> Ball:
    """Uniform prior over the ball around the data's mean that covers every row.

    ``center = mean_i x_i`` and ``radius = max_i ||x_i - center||_2 + pad``, so
    every training row lies in the ball (the paper's appendix E takes the ball
    of radius 5 "to guarantee X ⊂ B"; a fixed radius does not on heavy-tailed
    features, and rows outside the domain get no negatives near them). In ``d``
    dimensions a uniform sample lies at distance ``radius * u^(1/d)`` from the
    center, mostly near the sphere; most of a box's volume is in its corners, so
    its samples lie about ``sqrt(d / 3)`` half-widths from its center.

    Args:
        x: training rows ``(n, d)``, finite.
        pad: added to the radius, ``>= 0`` (``> 0`` when all rows are equal).

    Returns:
        A :class:`kocc.sampling.Ball` with a float32 center of shape ``(d,)``.

    Raises:
        ValueError: if ``x`` is not a finite ``(n, d)`` table, ``pad`` is
            negative or non-finite, or the radius would be 0 (all rows equal,
            ``pad = 0``).
    """
    rows = _as_rows(x, "x")
    center = rows.astype(np.float64).mean(axis=0)
    return _padded_ball(center, np.linalg.norm(rows - center, axis=1).max(), pad)


def _padded_ball(center: np.ndarray, max_norm: float, pad: float) -> Ball:
    """The ball of radius ``max_norm + pad`` around ``center``; refused if empty."""
    if not np.isfinite(pad) or pad < 0:
        raise ValueError(f"pad must be a finite number >= 0, got {pad!r}.")
    radius = float(max_norm) + float(pad)
    if not radius > 0:
        raise ValueError(
            f"the ball has radius 0 (all rows equal and pad={pad}); use pad > 0."
        )
    center = np.asarray(center, np.float32)
    return Ball(radius, center=center, shape=center.shape)


def _padded_box(low: np.ndarray, high: np.ndarray, pad: float) -> Box:
    """The float32 box ``[low - pad, high + pad]``; refused if flat."""
    if not np.isfinite(pad) or pad < 0:
        raise ValueError(f"pad must be a finite number >= 0, got {pad!r}.")
    low = np.asarray(low, np.float32) - np.float32(pad)
    high = np.asarray(high, np.float32) + np.float32(pad)
    flat = np.flatnonzero(high <= low)
    if flat.size:
        raise ValueError(
            f"the box is flat on feature(s) {flat.tolist()} (constant feature and "
            f"pad={pad}); use pad > 0."
        )
    return Box(low, high)


@tf.keras.utils.register_keras_serializable("kocc")
class GaussianPrior(Domain):
    """Per-feature (diagonal) Gaussian prior ``z_j ~ N(mean_j, (scale * std_j)^2)``.

    A :class:`kocc.sampling.Domain`, so :class:`kocc.models.OCSDF` accepts it as its
    ``domain``. Samples are drawn with :func:`tf.random.stateless_normal`, so
    ``sample(n, seed)`` is reproducible (and graph-compatible inside the training
    step). The support is all of ``R^d``: ``project`` is the identity.

    Args:
        mean: per-feature means, shape ``(d,)``.
        std: per-feature standard deviations, shape ``(d,)``, all ``> 0``.
        scale: multiplier of every ``std`` (``> 0``); ``> 1`` spreads the negatives
            further than the data.

    Raises:
        ValueError: on shapes that differ, non-finite values, ``std <= 0`` or
            ``scale <= 0``.
    """

    def __init__(
        self,
        mean: np.ndarray | list[float],
        std: np.ndarray | list[float],
        scale: float = 1.0,
    ) -> None:
        mean_arr = np.asarray(mean, dtype=np.float32).reshape(-1)
        std_arr = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean_arr.size == 0 or mean_arr.shape != std_arr.shape:
            raise ValueError(
                "mean and std must be non-empty with the same number of features, got "
                f"{mean_arr.shape} and {std_arr.shape}."
            )
        if not (np.all(np.isfinite(mean_arr)) and np.all(np.isfinite(std_arr))):
            raise ValueError("mean and std must be finite.")
        if np.any(std_arr <= 0):
            bad = np.flatnonzero(std_arr <= 0).tolist()
            raise ValueError(f"std must be > 0 on every feature; not on {bad}.")
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}.")
        self.mean = mean_arr
        self.std = std_arr
        self.scale = float(scale)
        self.shape = (int(mean_arr.shape[0]),)

    @classmethod
    def from_data(
        cls, x: np.ndarray | tf.Tensor, scale: float = 1.0, min_std: float = 1e-3
    ) -> GaussianPrior:
        """Fit the per-feature mean and std of the training rows.

        Args:
            x: training rows ``(n, d)``, finite.
            scale: multiplier of every std.
            min_std: floor of the std, so a constant feature still gets spread.

        Returns:
            The fitted prior.
        """
        rows = _as_rows(x, "x")
        std = np.maximum(rows.std(axis=0), min_std)
        return cls(rows.mean(axis=0), std, scale=scale)

    def _sample(self, n, seed, shape):
        noise = tf.random.stateless_normal((n, *shape), seed=seed, dtype=tf.float32)
        return self.mean + noise * (self.scale * self.std)

    def project(self, z: tf.Tensor) -> tf.Tensor:
        """Identity: the Gaussian has full support.

        Args:
            z: points ``(n, d)``.

        Returns:
            ``z`` as a float32 tensor.
        """
        return tf.convert_to_tensor(z, dtype=tf.float32)

    def get_config(self) -> dict[str, Any]:
        """Serializable constructor arguments."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "scale": self.scale,
        }

    def __repr__(self) -> str:
        return f"GaussianPrior(d={self.mean.shape[0]}, scale={self.scale})"


#: The priors :func:`tabular_prior` builds.
PRIOR_KINDS = ("box", "ball", "gaussian")


def _unknown_kind(kind: str) -> ValueError:
    return ValueError(f"prior kind must be one of {PRIOR_KINDS}, got {kind!r}.")


def tabular_prior(
    x: np.ndarray | tf.Tensor, kind: str = "box", pad: float = 1.0, scale: float = 1.0
) -> Box | Ball | GaussianPrior:
    """Build the negative prior named in a recipe from the training rows.

    Args:
        x: standardized training rows ``(n, d)``.
        kind: ``"box"`` (:func:`data_box`), ``"ball"`` (:func:`data_ball`) or
            ``"gaussian"`` (:class:`GaussianPrior`).
        pad: box padding (``kind="box"``) or radius padding (``kind="ball"``).
        scale: std multiplier (``kind="gaussian"``).

    Returns:
        The prior, with ``sample(n, seed)`` and ``project(z)``.

    Raises:
        ValueError: if ``kind`` is not one of :data:`PRIOR_KINDS`.
    """
    if kind == "box":
        return data_box(x, pad=pad)
    if kind == "ball":
        return data_ball(x, pad=pad)
    if kind == "gaussian":
        return GaussianPrior.from_data(x, scale=scale)
    raise _unknown_kind(kind)


def prior_from_statistics(
    statistics: Any,
    kind: str = "box",
    pad: float = 1.0,
    scale: float = 1.0,
    max_norm: float | None = None,
) -> Box | Ball | GaussianPrior:
    """The prior of :func:`tabular_prior` from streamed per-feature statistics.

    For rows too large for memory: ``statistics`` (a
    :class:`kocc.datasets.shards.FeatureStatistics`, one streaming pass over the shards)
    gives the prior of the *standardized* rows ``(x - mean) / s`` (``s`` the std, 1 for
    a constant feature) without the rows: the box ``[(min - mean) / s - pad, (max -
    mean) / s + pad]``, or the Gaussian of per-feature mean 0 and std ``std / s``
    (floored at 1e-3, as :meth:`GaussianPrior.from_data`), or the ball around 0 of
    radius ``max_norm + pad`` (``max_norm`` the largest norm of a standardized row,
    :func:`kocc.datasets.shards.max_standardized_norm`, a second pass). The box is
    computed in float32 as the standardization of the rows is (``(x - mean) / s``), so
    it equals the box :func:`tabular_prior` builds from the standardized float32 rows in
    memory (tested bit for bit); the Gaussian equals it up to float rounding.

    Args:
        statistics: ``mean``, ``std``, ``minimum``, ``maximum`` and ``scale``
            arrays of shape ``(d,)``.
        kind: ``"box"``, ``"ball"`` or ``"gaussian"``.
        pad: box padding (``kind="box"``) or radius padding (``kind="ball"``).
        scale: std multiplier (``kind="gaussian"``).
        max_norm: the largest standardized row norm (``kind="ball"`` only).

    Raises:
        ValueError: as :func:`tabular_prior`, and for ``kind="ball"`` without a
            finite ``max_norm >= 0``.
    """
    divisor = np.asarray(statistics.scale, dtype=np.float32)
    mean = np.asarray(statistics.mean, dtype=np.float32)
    if kind == "box":
        # float32, as the standardization of the rows: rounding is monotone, so
        # these are exactly the min and max of the standardized float32 rows
        low = (np.asarray(statistics.minimum, np.float32) - mean) / divisor
        high = (np.asarray(statistics.maximum, np.float32) - mean) / divisor
        return _padded_box(low, high, pad)
    if kind == "gaussian":
        std = np.maximum(np.asarray(statistics.std) / divisor, 1e-3)
        return GaussianPrior(np.zeros_like(std), std, scale=scale)
    if kind == "ball":
        if max_norm is None or not (np.isfinite(max_norm) and max_norm >= 0):
            raise ValueError(
                "the ball prior from streamed statistics needs max_norm, the largest "
                "standardized row norm (kocc.datasets.shards.max_standardized_norm), "
                f"a finite number >= 0; got {max_norm!r}."
            )
        return _padded_ball(np.zeros(len(statistics.mean)), max_norm, pad)
    raise _unknown_kind(kind)
