"""Image synthesis with a trained OCSDF (Béthune et al., ICML 2023, appendix G.2).

A 1-Lipschitz score f approximating the signed distance to the data support can be
*inverted*: starting from uniform noise in the domain B, Newton-Raphson steps
(Algorithm 1) with step fraction :math:`\\eta = 1`

.. math::
    z \\leftarrow \\Pi_B\\Big(z - \\frac{1}{T}
        \\frac{\\nabla f(z)}{\\|\\nabla f(z)\\|^2 + \\epsilon}\\,(f(z) - \\ell)\\Big)

move every sample toward the level set :math:`f = \\ell`. With
:math:`\\ell = \\mathbb{E}_{x \\sim \\text{train}}[f(x)]`, the typical score of the
training images, the samples become images "as normal as the training data",
which shows what the network has learnt. The steps are those of
:func:`kocc.sampling.newton_raphson` (a single kernel serves training, synthesis
and surfaces).

:func:`synthesis_reach` measures how far the steps carried the samples toward
the data: a 1-Lipschitz f whose level :math:`\\ell` is reached close to the
noise (``f`` far above the signed distance there) leaves the samples noise,
whatever the number of steps. :func:`image_grid` and :func:`save_image_grid`
tile samples into one picture.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from sklearn.metrics import pairwise_distances_argmin_min

from kocc.extras import require
from kocc.sampling import Domain, newton_raphson
from kocc.validation import check_batch


def _feature_shape(model: Any) -> tuple[int, ...]:
    shape = getattr(model, "feature_shape", None)
    if shape is None:
        inputs = getattr(model, "input_shape", None)
        if inputs is None:
            raise ValueError(
                "cannot tell the input shape of the model: give a Keras model "
                "with a known input shape or a kocc.models.OCSDF"
            )
        shape = inputs[1:]
    return tuple(int(s) for s in shape)


def mean_score(model: Any, x: Any, batch_size: int = 1024) -> float:
    """:math:`\\mathbb{E}[f(x)]` over a batch of (training) samples.

    Raises:
        ValueError: on an invalid batch (empty, NaN, wrong shape).
    """
    x = check_batch(x, _feature_shape(model), "x_reference")
    if hasattr(model, "score_samples"):
        scores = model.score_samples(x, batch_size=batch_size)
    else:
        scores = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(scores))


def _synthesis_domain(model: Any, domain: Domain | None) -> Domain:
    domain = domain if domain is not None else getattr(model, "domain", None)
    if not isinstance(domain, Domain):
        raise ValueError(
            "synthesize needs a kocc.sampling Domain: pass domain=... or an OCSDF "
            f"model (which carries its own), got {domain!r}"
        )
    return domain


def noise_starts(
    model: Any, n: int, *, domain: Domain | None = None, seed: int = 0
) -> np.ndarray:
    """The starting points :math:`z_0 \\sim \\mathcal{U}(B)` of :func:`synthesize`.

    Same ``model``, ``n``, ``domain`` and ``seed`` as :func:`synthesize` give
    the very points it starts from (the draw is stateless).

    Raises:
        ValueError: on ``n < 1`` or a missing domain.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    domain = _synthesis_domain(model, domain)
    z0 = domain.sample(int(n), seed, shape=_feature_shape(model))
    return z0.numpy() if isinstance(z0, tf.Tensor) else np.asarray(z0, np.float32)


def synthesize(
    model: Any,
    n: int,
    steps: int = 64,
    level_set: float | None = None,
    *,
    x_reference: Any = None,
    domain: Domain | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Synthesize samples by Newton-Raphson from noise (appendix G.2).

    ``z0 ~ U(domain)``, then ``steps`` Newton-Raphson steps with ``eta = 1``
    toward the level set ``f = level_set`` (Algorithm 1), every iterate
    projected onto the domain.

    Args:
        model: a trained :class:`kocc.models.OCSDF` (its domain is used), or a
            Keras model / callable with a known input shape (then give
            ``domain``).
        n: number of samples (``>= 1``).
        steps: number of Newton-Raphson steps T (``>= 1``).
        level_set: target level; ``None`` = :math:`\\mathbb{E}[f(x)]` over
            ``x_reference`` (the training data).
        x_reference: the training samples, needed when ``level_set`` is
            ``None``.
        domain: sampling and projection domain; default ``model.domain``.
        seed: seed of the noise (stateless; same seed, same samples).

    Returns:
        float32 array ``(n, *input_shape)``, inside the domain.

    Raises:
        ValueError: on ``n < 1``, ``steps < 1``, a missing ``x_reference`` or
            domain, or a non-finite level.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    domain = _synthesis_domain(model, domain)
    if hasattr(model, "sync_constrained_kernels"):
        model.sync_constrained_kernels()
    if level_set is None:
        if x_reference is None:
            raise ValueError(
                "level_set=None targets E[f(x)] of the training data: pass "
                "x_reference=<training samples> or an explicit level_set"
            )
        level_set = mean_score(model, x_reference)
    level_set = float(level_set)
    if not np.isfinite(level_set):
        raise ValueError(f"level_set must be finite, got {level_set!r}")
    scorer = getattr(model, "backbone", model)
    z0 = noise_starts(model, n, domain=domain, seed=seed)
    z = newton_raphson(scorer, z0, int(steps), level_set, eta=1.0, domain=domain)
    return z.numpy() if isinstance(z, tf.Tensor) else np.asarray(z)


#: :attr:`SynthesisReach.closed` under this share: the samples stayed noise. In
#: docs/images.md ("Why the dihedral_box profiles synthesize noise") the runs
#: whose grids show the class closed 0.25 and 0.35 of the distance to the
#: training images in 64 steps (box negatives, Fashion-MNIST and MNIST), the
#: runs whose grids are noise 0.01 to 0.07 (dihedral_box negatives).
LOW_REACH = 0.15


@dataclass(frozen=True)
class SynthesisReach:
    """How far synthesis carried its samples from the noise toward the data.

    Medians over the samples, in the input space's l2 norm.

    Attributes:
        moved: :math:`\\|z_T - z_0\\|`, the distance each sample travelled.
        start_distance: distance from :math:`z_0` to its nearest reference
            (training) sample.
        end_distance: distance from :math:`z_T` to its nearest reference sample.
    """

    moved: float
    start_distance: float
    end_distance: float

    @property
    def closed(self) -> float:
        """``1 - end_distance / start_distance``: the share of the distance to
        the training data that synthesis closed (1 = on a training sample)."""
        if self.start_distance <= 0:
            return 1.0
        return 1.0 - self.end_distance / self.start_distance

    @property
    def low(self) -> bool:
        """``closed < LOW_REACH``: the samples stayed close to the noise."""
        return self.closed < LOW_REACH

    def to_dict(self) -> dict[str, float]:
        """The three medians and ``closed``, for JSON."""
        return {**asdict(self), "closed": self.closed}


def synthesis_reach(starts: Any, samples: Any, x_reference: Any) -> SynthesisReach:
    """Measure how far synthesis moved its samples toward the reference data.

    A 1-Lipschitz f changes by at most :math:`\\|z_T - z_0\\|` along the path
    (paper, eq. 1), so the steps stop as soon as f reaches the target level
    :math:`\\ell`: if :math:`\\ell - f(z_0)` is much smaller than the distance
    from the noise to the data, the samples stop near the noise.
    :attr:`SynthesisReach.closed`, the share of the distance to the data that
    was closed, tells it without looking at the pictures.

    Args:
        starts: the starting points :math:`z_0` ``(n, ...)``
            (:func:`noise_starts`).
        samples: the synthesized :math:`z_T`, same shape.
        x_reference: the training samples ``(m, ...)``, same feature shape.

    Returns:
        A :class:`SynthesisReach`.

    Raises:
        ValueError: on shapes that do not match, empty or non-finite input.
    """
    starts = check_batch(starts, None, "starts")
    samples = check_batch(samples, starts.shape[1:], "samples")
    if len(samples) != len(starts):
        raise ValueError(
            f"starts and samples must hold the same number of samples, got "
            f"{len(starts)} and {len(samples)}"
        )
    reference = check_batch(x_reference, starts.shape[1:], "x_reference")
    n = len(starts)
    flat_reference = reference.reshape(len(reference), -1)
    _, start_d = pairwise_distances_argmin_min(starts.reshape(n, -1), flat_reference)
    _, end_d = pairwise_distances_argmin_min(samples.reshape(n, -1), flat_reference)
    moved = np.linalg.norm((samples - starts).reshape(n, -1), axis=1)
    return SynthesisReach(
        moved=float(np.median(moved)),
        start_distance=float(np.median(start_d)),
        end_distance=float(np.median(end_d)),
    )


def image_grid(
    images: Any,
    ncols: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 1,
) -> np.ndarray:
    """Tile images ``(n, H, W, C)`` into one uint8 picture, row by row.

    Args:
        images: the images, values in ``value_range`` (clipped).
        ncols: images per row (default ``ceil(sqrt(n))``).
        value_range: the pixel range mapped to ``[0, 255]``.
        padding: pixels of black between tiles.

    Returns:
        uint8 array ``(rows*(H+p)-p, ncols*(W+p)-p)`` for one channel, with a
        trailing ``C`` axis for three.

    Raises:
        ValueError: on a batch that is not ``(n, H, W, C)`` with ``C`` in
            {1, 3}, or an empty range.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty batch (n, H, W, 1 or 3), got {images.shape}"
        )
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must have high > low, got {value_range!r}")
    n, h, w, c = images.shape
    ncols = int(ncols) if ncols else int(np.ceil(np.sqrt(n)))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols!r}")
    rows = int(np.ceil(n / ncols))
    scaled = np.clip((images - low) / (high - low), 0.0, 1.0)
    pixels = np.round(scaled * 255.0).astype(np.uint8)
    canvas = np.zeros((rows, ncols, h + padding, w + padding, c), np.uint8)
    canvas.reshape(rows * ncols, h + padding, w + padding, c)[:n, :h, :w] = pixels
    grid = canvas.transpose(0, 2, 1, 3, 4).reshape(
        rows * (h + padding), ncols * (w + padding), c
    )
    grid = grid[: rows * (h + padding) - padding, : ncols * (w + padding) - padding]
    return grid[..., 0] if c == 1 else grid


def save_image_grid(
    images: Any,
    path: str | os.PathLike,
    ncols: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """Write :func:`image_grid` of ``images`` as a PNG file; returns the path."""
    imsave = require("matplotlib.image").imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, ncols=ncols, value_range=value_range)
    imsave(path, grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    return path
