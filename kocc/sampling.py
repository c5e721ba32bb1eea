"""Negative sampling: domains and the Newton-Raphson kernel (paper Algorithm 1).

OCSDF trains a 1-Lipschitz score f against negatives placed near the level set
``f = -margin``. They are drawn uniformly from a domain B (:class:`Box`,
:class:`Ball`) and moved by T Newton-Raphson steps

.. math::
    z \\leftarrow \\Pi_B\\Big(z - \\frac{\\eta}{T}
        \\frac{\\nabla f(z)}{\\|\\nabla f(z)\\|^2 + \\epsilon}\\,(f(z) - \\ell)\\Big),

with one :math:`\\eta \\sim U(0, 1)` per sample and :math:`\\ell` the target level
(``-margin`` during training). One kernel, :func:`newton_raphson_steps`, serves
training, synthesis and surfaces.

Randomness is *stateless*: every draw takes a seed (an int or a pair of ints) so
that a run reproduces exactly, and the training loop derives the seed of each
step from the model seed and the optimizer's iteration counter (so a resumed run
draws the same negatives as an uninterrupted one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.validation import check_non_negative

#: Added to the squared gradient norm in the Newton-Raphson step.
GRAD_NORM_EPS = 1e-12

SeedLike = int | Sequence[int] | tf.Tensor
ShapeLike = Sequence[int] | None


def seed_pair(seed: SeedLike) -> tf.Tensor:
    """Turn an int, a pair of ints or an int tensor into a ``[2]`` int64 seed."""
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise TypeError(f"seed must be an integer or a pair of integers, got {seed!r}")
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    if seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(
            f"seed must be an int or a pair of ints, got shape {seed.shape}"
        )
    return seed


def _as_feature_shape(shape: ShapeLike) -> tuple[int, ...] | None:
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    if any(s <= 0 for s in shape):
        raise ValueError(f"feature shape must have positive sizes, got {shape}")
    return shape


class Domain:
    """Base class of sampling domains: uniform sampling and projection.

    Subclasses define :meth:`_sample` and :meth:`project`; ``shape`` is the shape
    of one sample (without the batch axis) when it is known.
    """

    shape: tuple[int, ...] | None

    def resolve_shape(self, shape: ShapeLike = None) -> tuple[int, ...]:
        """The feature shape of a sample, checked against the domain's own shape.

        Args:
            shape: the shape the caller needs (e.g. the model's input shape).

        Raises:
            ValueError: if the shapes conflict or neither is known.
        """
        shape = _as_feature_shape(shape)
        if shape is None and self.shape is None:
            raise ValueError(
                f"{type(self).__name__} has scalar bounds: give the feature shape, "
                "e.g. domain.sample(n, seed, shape=(2,))"
            )
        if shape is None:
            return self.shape
        if self.shape is not None and self._broadcast(shape) != shape:
            raise ValueError(
                f"{type(self).__name__} has feature shape {self.shape} but samples of "
                f"shape {shape} were asked for"
            )
        return shape

    def _broadcast(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            return tuple(np.broadcast_shapes(self.shape, shape))
        except ValueError:
            return ()

    def sample(self, n: int, seed: SeedLike = 0, shape: ShapeLike = None) -> tf.Tensor:
        """Draw ``n`` points uniformly from the domain.

        Args:
            n: number of points.
            seed: an int or a pair of ints (stateless randomness).
            shape: feature shape, required when the bounds are scalars.

        Returns:
            A float32 tensor of shape ``(n, *shape)``.
        """
        return self._sample(n, seed_pair(seed), self.resolve_shape(shape))

    def _sample(self, n, seed, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, z: tf.Tensor) -> tf.Tensor:  # pragma: no cover - abstract
        """Euclidean projection of a batch onto the domain."""
        raise NotImplementedError

    def contains(self, z: tf.Tensor, atol: float = 1e-5) -> tf.Tensor:
        """Boolean per sample: is it inside the domain (up to ``atol``)?"""
        z = tf.convert_to_tensor(z, tf.float32)
        gap = tf.reshape(z - self.project(z), [tf.shape(z)[0], -1])
        return tf.reduce_max(tf.abs(gap), axis=1) <= atol

    @classmethod
    def from_config(cls, config: dict) -> Domain:
        return cls(**config)


def _bounds(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return array


@tf.keras.utils.register_keras_serializable("kocc")
class Box(Domain):
    """The box ``[low, high]`` (per feature), e.g. ``[-1, 1]^(H*W*C)`` for images.

    Args:
        low: lower bound, a scalar or an array of the feature shape.
        high: upper bound, same convention; ``high > low`` everywhere.
        shape: feature shape, needed only when both bounds are scalars and the
            shape cannot be given by the caller.

    Raises:
        ValueError: if a bound is not finite, ``high <= low`` somewhere, or the
            bounds' shapes do not broadcast.
    """

    def __init__(self, low: Any = -1.0, high: Any = 1.0, shape: ShapeLike = None):
        low_a, high_a = _bounds(low, "low"), _bounds(high, "high")
        try:
            bshape = np.broadcast_shapes(low_a.shape, high_a.shape)
        except ValueError as err:
            raise ValueError(
                f"low {low_a.shape} and high {high_a.shape} shapes do not broadcast"
            ) from err
        if np.any(high_a <= low_a):
            raise ValueError(f"Box needs high > low everywhere, got {low!r}, {high!r}")
        self.low, self.high = low_a, high_a
        self.shape = _as_feature_shape(shape) if shape is not None else None
        if self.shape is None and bshape != ():
            self.shape = tuple(bshape)
        if self.shape is not None and bshape != ():
            if self._broadcast(tuple(bshape)) != self.shape:
                raise ValueError(
                    f"bounds of shape {tuple(bshape)} do not fit shape {self.shape}"
                )

    def _sample(self, n, seed, shape):
        u = tf.random.stateless_uniform((n, *shape), seed=seed, dtype=tf.float32)
        return self.low + (self.high - self.low) * u

    def project(self, z: tf.Tensor) -> tf.Tensor:
        """Clip each coordinate to ``[low, high]``."""
        return tf.clip_by_value(z, self.low, self.high)

    def uniform(self) -> Box:
        """The plain box of the same bounds and shape, drawing ``U([low, high])``.

        A subclass that draws otherwise (:class:`kocc.image_prior.GradedBox`,
        :class:`kocc.image_prior.DihedralBox`) keeps its bounds; image
        synthesis starts from this uniform noise (appendix G.2).
        """
        return Box(self.low, self.high, shape=self.shape)

    def get_config(self) -> dict:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "shape": list(self.shape) if self.shape is not None else None,
        }

    def __repr__(self) -> str:
        return f"Box(low={self.low.tolist()}, high={self.high.tolist()})"


@tf.keras.utils.register_keras_serializable("kocc")
class Ball(Domain):
    """The Euclidean ball ``{z : ||z - center||_2 <= radius}`` (over all features).

    The paper's toy experiments use the ball of radius 5 around the standardized
    data (appendix E).

    Args:
        radius: ``> 0``.
        center: a scalar or an array of the feature shape (default 0).
        shape: feature shape, needed only when the center is a scalar.

    Raises:
        ValueError: if ``radius <= 0`` or the center is not finite.
    """

    def __init__(self, radius: float = 1.0, center: Any = 0.0, shape: ShapeLike = None):
        if not float(radius) > 0:
            raise ValueError(f"radius must be > 0, got {radius!r}")
        self.radius = float(radius)
        self.center = _bounds(center, "center")
        self.shape = _as_feature_shape(shape) if shape is not None else None
        if self.shape is None and self.center.shape != ():
            self.shape = tuple(self.center.shape)

    def _sample(self, n, seed, shape):
        seeds = tf.random.experimental.stateless_split(seed, 2)
        d = int(np.prod(shape))
        direction = tf.random.stateless_normal((n, d), seed=seeds[0])
        direction = direction / tf.norm(direction, axis=1, keepdims=True)
        u = tf.random.stateless_uniform((n, 1), seed=seeds[1])
        z = direction * self._radii(u, d)
        return tf.reshape(z, (n, *shape)) + self.center

    def _radii(self, u: tf.Tensor, d: int) -> tf.Tensor:
        """Distances to the center from uniforms ``u``: ``radius * u ** (1 / d)``,
        the radius of a draw uniform over the ball's volume in ``d`` dimensions."""
        return self.radius * u ** (1.0 / d)

    def project(self, z: tf.Tensor) -> tf.Tensor:
        """Radial projection onto the ball."""
        offset = z - self.center
        axes = list(range(1, len(offset.shape)))
        norm = tf.sqrt(tf.reduce_sum(offset * offset, axis=axes, keepdims=True))
        scale = tf.minimum(1.0, self.radius / tf.maximum(norm, 1e-12))
        return self.center + offset * scale

    def get_config(self) -> dict:
        return {
            "radius": self.radius,
            "center": self.center.tolist(),
            "shape": list(self.shape) if self.shape is not None else None,
        }

    def __repr__(self) -> str:
        return f"Ball(radius={self.radius}, center={self.center.tolist()})"


def as_score_fn(model: Callable) -> Callable[[tf.Tensor], tf.Tensor]:
    """Wrap a Keras model (inference mode) or a callable as ``z -> f(z)``, (n,)."""
    if isinstance(model, tf.keras.layers.Layer):

        def fn(z):
            return tf.reshape(model(z, training=False), [-1])

        return fn

    def plain(z):
        return tf.reshape(model(z), [-1])

    return plain


def newton_raphson_steps(
    score_fn: Callable[[tf.Tensor], tf.Tensor],
    z: tf.Tensor,
    steps: tf.Tensor | int,
    level_set: tf.Tensor | float,
    eta: tf.Tensor,
    project: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.Tensor:
    """The Newton-Raphson kernel of Algorithm 1, graph-compatible, batched.

    ``z <- project(z - (eta/T) * grad f(z) / (||grad f(z)||^2 + eps) * (f(z) - l))``
    repeated ``T = steps`` times, for all samples at once. ``steps`` may be a
    tensor (0 leaves ``z`` unchanged), so one trace serves warm-up and training.

    Args:
        score_fn: maps a batch ``(n, ...)`` to scores of shape ``(n,)``.
        z: starting points ``(n, ...)``, any rank.
        steps: number of steps ``T >= 0``.
        level_set: target level ``l`` (``-margin`` in training).
        eta: step fractions, shape ``(n,)`` (or a scalar).
        project: projection onto the domain, or ``None``.

    Returns:
        The moved points, same shape as ``z``.
    """
    z = tf.convert_to_tensor(z, tf.float32)
    n = tf.shape(z)[0]
    rank = len(z.shape)
    per_sample = tf.concat([[n], tf.ones([rank - 1], tf.int32)], axis=0)
    eta = tf.broadcast_to(tf.cast(eta, z.dtype), [n])
    steps = tf.cast(steps, tf.int32)
    step_fraction = eta / tf.cast(tf.maximum(steps, 1), z.dtype)
    level_set = tf.cast(level_set, z.dtype)
    sum_axes = list(range(1, rank))

    def step(t, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            f = score_fn(z)
        grad = tape.gradient(f, z)
        sq_norm = tf.reduce_sum(grad * grad, axis=sum_axes)
        coef = step_fraction * (f - level_set) / (sq_norm + GRAD_NORM_EPS)
        z = z - tf.reshape(coef, per_sample) * grad
        if project is not None:
            z = project(z)
        return t + 1, z

    _, z = tf.while_loop(lambda t, _: t < steps, step, (tf.constant(0), z))
    return z


def draw_eta(n: int | tf.Tensor, seed: SeedLike) -> tf.Tensor:
    """One step fraction ``eta ~ U(0, 1)`` per sample (Algorithm 1)."""
    return tf.random.stateless_uniform([n], seed=seed_pair(seed), dtype=tf.float32)


@tf.function(reduce_retracing=True)
def _newton_raphson_graph(model, z, steps, level_set, eta, domain):
    # model and domain are Python objects: one trace per (model, domain) pair
    project = domain.project if domain is not None else None
    return newton_raphson_steps(as_score_fn(model), z, steps, level_set, eta, project)


def newton_raphson(
    model: Callable,
    z0: Any,
    steps: int,
    level_set: float,
    eta: float | None = None,
    domain: Domain | None = None,
    seed: SeedLike = 0,
) -> tf.Tensor:
    """Move points toward the level set ``f = level_set`` (paper Algorithm 1).

    Args:
        model: a Keras model (called in inference mode) or a callable returning
            one score per sample.
        z0: starting points ``(n, ...)``: vectors, images or 3-D points.
        steps: number of steps ``T >= 0``.
        level_set: the target level (``-margin`` for OCSDF negatives).
        eta: step fraction in ``(0, 1]`` for every sample, or ``None`` to draw
            one ``eta ~ U(0, 1)`` per sample (seeded by ``seed``). With
            ``eta = 1`` a single step lands exactly on the level set of a
            piecewise-affine f whose linear region contains the segment.
        domain: if given, every iterate is projected onto it.
        seed: seed of the ``eta`` draw.

    Returns:
        A float32 tensor of the same shape as ``z0``.

    Raises:
        ValueError: on a negative ``steps``, an ``eta`` outside ``(0, 1]``, or
            non-finite starting points.
    """
    check_non_negative(steps=int(steps))
    z0 = tf.convert_to_tensor(z0, tf.float32)
    if len(z0.shape) < 2:
        raise ValueError(f"z0 must be a batch (n, ...), got shape {tuple(z0.shape)}")
    if not bool(tf.reduce_all(tf.math.is_finite(z0))):
        raise ValueError("z0 contains NaN or inf")
    n = tf.shape(z0)[0]
    if eta is None:
        eta_t = draw_eta(n, seed)
    else:
        if not 0.0 < float(eta) <= 1.0:
            raise ValueError(f"eta must be in (0, 1], got {eta!r}")
        eta_t = tf.fill([n], tf.constant(float(eta), tf.float32))
    return _newton_raphson_graph(
        model,
        z0,
        tf.constant(int(steps)),
        tf.constant(float(level_set), tf.float32),
        eta_t,
        domain,
    )
