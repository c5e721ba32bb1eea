"""Lipschitz diagnostics: how steep is a score function, and how close to GNP.

* :func:`gradient_norms` / :func:`local_lipschitz`: the local Lipschitz constant
  ``max_x ||grad f(x)||_2`` over a set of points, the measure of Béthune et al.
  (ICML 2023), Table 1. For a 1-Lipschitz network it is ``<= 1``; conventional
  networks reach tens to thousands.
* :func:`gradient_norm_stats`: summary statistics of ``||grad f(x)||``; a
  gradient-norm-preserving (GNP) network, the ideal of OCSDF (a signed distance
  function has ``||grad S|| = 1`` almost everywhere), has all of them near 1.
* :func:`empirical_lipschitz`: ``max |f(a) - f(b)| / ||a - b||_2`` over random
  pairs, a lower bound of the global Lipschitz constant that needs no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.metrics import model_scores, score_function
from kocc.validation import check_batch

__all__ = [
    "empirical_lipschitz",
    "gradient_norm_stats",
    "gradient_norms",
    "local_lipschitz",
]

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    return int(batch_size)


def gradient_norms(
    model: Callable[..., Any] | tf.keras.Model, x: Any, batch_size: int = 1024
) -> np.ndarray:
    """``||grad_x f(x)||_2`` for every sample, batched in a ``tf.function``.

    Each score depends on its own input only, so one backward pass of
    ``sum_i f(x_i)`` gives every per-sample gradient at once.

    Args:
        model: kocc model, Keras model (inference mode) or differentiable
            callable returning one score per sample.
        x: points ``(n, *feature_shape)``.
        batch_size: samples per backward pass.

    Returns:
        Array of shape ``(n,)``.

    Raises:
        ValueError: on an empty or non-finite ``x``, or ``batch_size < 1``, or
            a model whose gradient does not depend on its input.
    """
    x = check_batch(x, name="x")
    batch_size = _check_batch_size(batch_size)
    score_fn = score_function(model)

    @tf.function(
        input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)],
        reduce_retracing=True,
    )
    def norms(inputs: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            scores = tf.reshape(score_fn(inputs), [-1])
        grad = tape.gradient(scores, inputs)
        if grad is None:
            raise ValueError("the model's scores do not depend on its input.")
        flat = tf.reshape(grad, [tf.shape(inputs)[0], -1])
        return tf.norm(flat, axis=1)

    return np.concatenate(
        [
            np.asarray(norms(tf.constant(x[start : start + batch_size])), np.float64)
            for start in range(0, x.shape[0], batch_size)
        ]
    )


def local_lipschitz(
    model: Callable[..., Any] | tf.keras.Model, x: Any, batch_size: int = 1024
) -> float:
    """Local Lipschitz constant ``max_i ||grad f(x_i)||_2`` over the points.

    The measure of Béthune et al. (ICML 2023), Table 1 (evaluated there on the
    training points and the domain). A lower bound of the global Lipschitz
    constant; for kocc's 1-Lipschitz networks it must not exceed 1 (up to float
    error and the orthogonalization's tolerance).

    Not :func:`deel.lip.utils.evaluate_lip_const`: that one estimates the
    constant from one random finite difference per point (a seeded uniform
    perturbation, a lower estimate that depends on its ``eps`` and prints);
    this one takes the exact gradient norm at each point by automatic
    differentiation, deterministic and per point, as Table 1 reports
    (``tests/test_reuse_deel_lip.py`` checks the first never exceeds it).

    Args:
        model: kocc model, Keras model or differentiable callable.
        x: points ``(n, *feature_shape)``.
        batch_size: samples per backward pass.

    Returns:
        The maximum gradient norm.
    """
    return float(np.max(gradient_norms(model, x, batch_size)))


def gradient_norm_stats(
    model: Callable[..., Any] | tf.keras.Model,
    x: Any,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Statistics of ``||grad f(x)||_2`` over the points.

    A gradient-norm-preserving network (``||grad f|| = 1`` almost everywhere, as
    a signed distance function) has ``min``, ``mean`` and ``max`` all near 1; a
    1-Lipschitz but not GNP one has ``max <= 1`` with a lower mean.

    Args:
        model: kocc model, Keras model or differentiable callable.
        x: points ``(n, *feature_shape)``.
        quantiles: quantile levels in ``[0, 1]``, reported as ``q<level>``
            (e.g. ``q0.5``).
        batch_size: samples per backward pass.

    Returns:
        ``{"mean", "std", "min", "max", "q<level>"...}`` as floats.

    Raises:
        ValueError: on a quantile level outside ``[0, 1]``.
    """
    levels = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(levels)) or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"quantiles must be in [0, 1], got {list(quantiles)}.")
    norms = gradient_norms(model, x, batch_size)
    stats = {
        "mean": float(norms.mean()),
        "std": float(norms.std()),
        "min": float(norms.min()),
        "max": float(norms.max()),
    }
    for level, value in zip(levels, np.quantile(norms, levels), strict=True):
        stats[f"q{level:g}"] = float(value)
    return stats


def empirical_lipschitz(
    model: Callable[..., Any] | tf.keras.Model,
    x: Any,
    n_pairs: int = 10_000,
    seed: int = 0,
    batch_size: int = 4096,
) -> float:
    """Pairwise Lipschitz estimate ``max |f(a) - f(b)| / ||a - b||_2``.

    Pairs ``(a, b)`` are drawn uniformly (seeded) among the distinct points of
    ``x``; coincident pairs are skipped. A lower bound of the global Lipschitz
    constant that only needs forward passes; it is usually looser than
    :func:`local_lipschitz` (pairs far apart average the slope).

    Args:
        model: kocc model, Keras model or callable returning one score per sample.
        x: points ``(n, *feature_shape)`` with ``n >= 2``.
        n_pairs: number of random pairs (``>= 1``).
        seed: seed of the pair draw.
        batch_size: batch size of the forward passes.

    Returns:
        The largest slope over the pairs (0 if every pair coincides).

    Raises:
        ValueError: if ``x`` has fewer than 2 points, ``n_pairs < 1``, or the
            scores are not finite.
    """
    x = check_batch(x, name="x")
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 points to form pairs, got {x.shape[0]}.")
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {n_pairs!r}.")
    scores = model_scores(model, x, _check_batch_size(batch_size))
    if not np.all(np.isfinite(scores)):
        raise ValueError("the model returned non-finite scores.")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, x.shape[0], size=int(n_pairs))
    # second != first: shift by 1..n-1 modulo n
    second = (first + rng.integers(1, x.shape[0], size=int(n_pairs))) % x.shape[0]
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    distances = np.linalg.norm(flat[first] - flat[second], axis=1)
    keep = distances > 0
    if not keep.any():
        return 0.0
    slopes = np.abs(scores[first] - scores[second])[keep] / distances[keep]
    return float(slopes.max())
