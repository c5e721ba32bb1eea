r"""Lipschitz-certified coarse-to-fine evaluation of a score on a regular 3-D grid.

Marching cubes only needs the exact value of f where the level set
:math:`\{f = \ell\}` passes. If f is L-Lipschitz (a bound **proven from the
weights**, :func:`proven_lipschitz_bound`), one evaluation decides the sign of
:math:`f - \ell` on a whole block of grid points: for a box B of grid points with
centre c and half-diagonal r (:math:`\|x - c\| \le r` for every x in B),

.. math::
    |f(c) - \ell| > L r \;\Longrightarrow\;
    \operatorname{sign}(f(x) - \ell) = \operatorname{sign}(f(c) - \ell)
    \quad \forall x \in B,

because :math:`|f(x) - f(c)| \le L \|x - c\| \le L r < |f(c) - \ell|`.

:func:`evaluate_grid_certified` applies this octree-style, in two passes.
First the *signs*: the grid is cut into blocks of ``top_block``\ :sup:`3`
points; a certified block is filled with :math:`f(c)` (on the right side of
the level for all its points); a block that fails is split in 8 and its
children are tested, down to blocks of ``min_block`` points per side, whose
points are then evaluated exactly. Every grid point then has its true sign of
:math:`f - \ell`. Second the *values*: marching cubes puts geometry only in
the cells whose 8 corners are not all strictly on one side of the level; those
cells are found from the signs, and those of their corners that only hold a
certified value are evaluated exactly. All the evaluations of one pass or level
are one batched, chunked evaluation (:func:`evaluate_points`); the index
arithmetic is numpy, with no Python loop over blocks.

Why the mesh is *identical* to the one of a dense evaluation: the signs are
exact, so the cells the level crosses are exactly those of the dense grid,
and every corner of each of them holds its exact value. scikit-image's Lewiner
marching cubes computes vertices, faces and normals from the 8 corner values of
those cells only, so it returns the same vertices and faces (and normals, but
for the cells of the one-cell padding :func:`kocc.surfaces.extract_mesh` adds
around the grid, whose value is the grid's minimum). The other values only have
to be on the right side of the level, and they are.

Soundness: pruning is only as good as L. :func:`proven_lipschitz_bound` returns
a bound only for a network whose layers :mod:`kocc.lipschitz_bound` can bound
from the weights actually used in inference, and ``None`` otherwise (then the
grid is evaluated densely). Floating-point rounding is covered by margins:
r is grown by 4 float32 ulps of the largest coordinate (rounding of the
coordinates), :math:`L r` by the relative ``RELATIVE_SAFETY`` (rounding of r),
and the score by ``ABSOLUTE_SAFETY`` :math:`\cdot (1 + |f(c)|)` (rounding of
the two float32 evaluations compared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from deel.lip.layers.base_layer import Condensable
from deel.lip.model import vanillaModel

from kocc.lipschitz_bound import LipschitzBoundError, lipschitz_upper_bound

#: Relative margin on :math:`L r` (rounding of the radius; the rounding of the
#: float32 coordinates is added to r: 4 ulps of the largest coordinate).
RELATIVE_SAFETY = 1e-3
#: Absolute margin on the score, times ``1 + |f(c)|``: float32 rounding of the
#: two evaluations compared (the score at the centre and at a grid point). The
#: float32 scores of a fitted 3 x 128 FullSort surface network differed from a
#: float64 evaluation of the same weights by at most 2.4e-7 (1 + |f|) on 20,000
#: points of [-3, 3]^3 (standardized coordinates).
ABSOLUTE_SAFETY = 1e-5
#: Side of the first blocks, in grid points (halved at each level).
TOP_BLOCK = 32
#: Side of the last blocks tested; the points of the blocks that fail at this
#: size are evaluated one by one.
MIN_BLOCK = 2
#: The first blocks are made smaller (down to ``min_block``) until there are
#: at least this many: their centres are the sample :func:`_pays` decides on.
MIN_FIRST_BLOCKS = 256
#: Pruning is abandoned for dense evaluation when fewer of the first blocks'
#: centres than this fraction are far enough from the level for their
#: neighbourhood to be certifiable at all (:func:`_pays`).
MIN_PRUNABLE_FRACTION = 0.5
#: When the blocks left after the last level hold more than this fraction of
#: the grid, every grid point is evaluated instead
#: (:func:`kocc.surfaces.evaluate_grid` computes coordinates in the graph,
#: without the host's index arrays: about 0.9 s for 6.9 M points at 200^3 in
#: one profile).
DENSE_FRACTION = 0.8
#: Smallest chunk of :func:`evaluate_points`: a batch is padded up to a power
#: of two at least this large, so the XLA-compiled sort sees few shapes.
MIN_CHUNK = 1024


def proven_lipschitz_bound(model: object) -> float | None:
    """An l2 Lipschitz bound of ``model``'s inference function, or ``None``.

    The bound is :func:`kocc.lipschitz_bound.lipschitz_upper_bound` (product of
    per-layer bounds, from the weights). For a network with deel-lip
    constrained layers (``SpectralDense``, ``FrobeniusDense``...), whose
    inference call (``training=False``) multiplies by the cached constrained
    kernel ``wbar``, the bound is that of deel-lip's vanilla export, whose
    ``Dense`` layers hold exactly those ``wbar`` (nothing is re-orthogonalized:
    the bound is of the weights that are evaluated). Anything that cannot be
    analysed (a Python callable, a subclassed model, a layer without a known
    bound, non-finite weights) gives ``None``: no pruning.

    Args:
        model: a Keras model (or anything else).

    Returns:
        A finite bound ``>= 0``, or ``None``.
    """
    if not isinstance(model, tf.keras.Model):
        return None
    try:
        network = model
        if any(isinstance(layer, Condensable) for layer in model.layers):
            network = vanillaModel(model)
        if not all(np.isfinite(w).all() for w in network.get_weights()):
            return None
        bound = float(lipschitz_upper_bound(network))
    except (LipschitzBoundError, ValueError, TypeError, AttributeError):
        return None
    return bound if np.isfinite(bound) and bound >= 0 else None


def scores_by_chunk(
    score_fn: Callable[[tf.Tensor], tf.Tensor],
    chunk_points: Callable[[tf.Tensor], tf.Tensor],
    count: int | tf.Tensor,
) -> tf.Tensor:
    """``score_fn`` on ``count`` chunks of points, one chunk alive at a time.

    A ``tf.while_loop`` (``parallel_iterations=1``) over ``c < count`` evaluates
    ``score_fn(chunk_points(c))`` and writes the scores into a ``TensorArray``;
    returns them concatenated (in graph mode, inside the caller's
    ``tf.function``). Shared by the dense grid
    (:func:`kocc.surfaces.evaluate_grid`) and :func:`evaluate_points`.
    """

    def body(c, scores):
        return c + 1, scores.write(c, tf.reshape(score_fn(chunk_points(c)), [-1]))

    scores = tf.TensorArray(tf.float32, size=count, infer_shape=False)
    _, scores = tf.while_loop(
        lambda c, _: c < count, body, (tf.constant(0), scores), parallel_iterations=1
    )
    return scores.concat()


def evaluate_points(
    score_fn: Callable[[tf.Tensor], tf.Tensor],
    low: np.ndarray,
    spacing: np.ndarray,
    batch_size: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """A chunked evaluator of ``score_fn`` at grid-index coordinates.

    The returned function maps ``(m, 3)`` float32 index coordinates ``ijk``
    (integers for grid points, half-integers for block centres) to the scores
    of the points ``low + ijk * spacing`` (the same float32 arithmetic as
    :func:`kocc.surfaces.evaluate_grid`, so a grid point gets the same
    coordinates). It pads ``m`` up to a multiple of one chunk size (
    ``batch_size``, or the power of two ``>= max(m, MIN_CHUNK)`` below it) and
    runs one traced ``tf.function``: a ``tf.while_loop`` over the chunks
    (``parallel_iterations=1``, one chunk's activations alive at a time).
    """
    low_t = tf.constant(low, tf.float32)
    spacing_t = tf.constant(spacing, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 3), tf.float32)])
    def run(chunks: tf.Tensor) -> tf.Tensor:
        return scores_by_chunk(
            score_fn, lambda c: low_t + chunks[c] * spacing_t, tf.shape(chunks)[0]
        )

    def evaluate(ijk: np.ndarray) -> np.ndarray:
        m = len(ijk)
        if m == 0:
            return np.zeros(0, np.float32)
        # few distinct chunk shapes: batch_size, or a power of two below it
        chunk = min(int(batch_size), 1 << (max(m, MIN_CHUNK) - 1).bit_length())
        padded = -(-m // chunk) * chunk
        points = np.zeros((padded, 3), np.float32)
        points[:m] = ijk
        return run(tf.constant(points.reshape(-1, chunk, 3))).numpy()[:m]

    return evaluate


@dataclass
class CertifiedGrid:
    """The grid of :func:`evaluate_grid_certified` and what it cost.

    Attributes:
        volume: ``(n, n, n)`` float32: exact scores where marching cubes needs
            them, elsewhere the score at the centre of a certified block (on
            the same side of the level as the true score); ``None`` when
            pruning was abandoned (the caller evaluates every grid point).
        evaluated_points: network evaluations (block centres included).
        exact_points: grid points evaluated exactly.
        lipschitz: the bound used, in the coordinates of the grid.
    """

    volume: np.ndarray | None
    evaluated_points: int
    exact_points: int
    lipschitz: float


def _block_view(volume: np.ndarray, side: int) -> np.ndarray:
    """``volume`` ``(p, p, p)`` seen as ``(p/s, s, p/s, s, p/s, s)`` (a view)."""
    p = volume.shape[0]
    return volume.reshape(p // side, side, p // side, side, p // side, side)


def mixed_cell_corners(
    volume: np.ndarray, level: float, level_high: float | None = None
) -> np.ndarray:
    """Grid points that are a corner of a cell a level may cross.

    A cell whose 8 corners are all strictly below ``level`` or all strictly
    above ``level_high`` (default ``level``) is crossed by no level in
    ``[level, level_high]``; the corners of every other cell are returned. The
    grid is first padded by one point below the level on every side (as
    :func:`kocc.surfaces.extract_mesh` pads it), so the corners of the cells
    that close a surface on the box are included. ``(n, n, n)`` booleans.
    """
    high = level if level_high is None else level_high
    above = np.pad(volume > high, 1, constant_values=False)
    below = np.pad(volume < level, 1, constant_values=True)
    m = above.shape[0] - 1  # cells per axis
    corners = [
        (slice(i, i + m), slice(j, j + m), slice(k, k + m))
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    all_above = np.logical_and.reduce([above[c] for c in corners])
    all_below = np.logical_and.reduce([below[c] for c in corners])
    mixed = ~(all_above | all_below)
    touched = np.zeros(above.shape, bool)
    for c in corners:
        touched[c] |= mixed
    return touched[1:-1, 1:-1, 1:-1]


def _pays(
    scores: np.ndarray, level: float, lipschitz: float, spacing, level_high: float
) -> bool:
    r"""Whether pruning is expected to save evaluations, from the first scores.

    The first blocks' centres sample the grid evenly. A grid point can only be
    certified (at the latest in a block of 2 x 2 x 2 points, half-diagonal
    :math:`\|h\|/2`) where :math:`|f - \ell| > L \|h\| / 2`. With a loose
    bound (e.g. the product of the spectral norms of an unconstrained network)
    or a coarse grid, few points are, and the block tests would only add
    evaluations. Pruning goes on only if at least ``MIN_PRUNABLE_FRACTION``
    (half) of the centres are that far from the level: the last level's tests
    cost one evaluation per 8 points, the coarser levels' tests and the host's
    index arithmetic more. (A random ReLU network that left 86 % of a 200^3
    grid to evaluate after the last level took 4.9-6.2 s against 3.8-4.0 s
    dense; the centres of fitted OCSDF torus networks passed at 81 % and 89 %.)
    """
    reach = 0.5 * lipschitz * float(np.linalg.norm(spacing))
    far = (scores - level_high > reach) | (level - scores > reach)
    return float(np.mean(far)) >= MIN_PRUNABLE_FRACTION


def evaluate_grid_certified(
    score_fn: Callable[[tf.Tensor], tf.Tensor],
    low: np.ndarray,
    spacing: np.ndarray,
    resolution: int,
    level: float,
    lipschitz: float,
    batch_size: int,
    top_block: int = TOP_BLOCK,
    min_block: int = MIN_BLOCK,
    level_high: float | None = None,
) -> CertifiedGrid:
    r"""Scores on the ``resolution``\ :sup:`3` grid, exact near the level set.

    1. **Signs, coarse to fine.** Blocks of ``top_block``\ :sup:`3` grid points
       (halved down to ``min_block``) are tested at the centre c of their box,
       of half-diagonal r: the block is *certified* when

       .. math::
           |f(c) - \ell| > (1 + \rho) L r + \alpha (1 + |f(c)|)

       (:math:`\rho` = ``RELATIVE_SAFETY``, :math:`\alpha` =
       ``ABSOLUTE_SAFETY``), and its points get the value f(c), on the same
       side of the level as their true score. The points of the blocks that
       still fail at ``min_block`` are evaluated exactly. Every grid point now
       has its exact sign of :math:`f - \ell`.
    2. **Exact values where marching cubes needs them.** From the signs, the
       cells whose 8 corners are not all strictly on one side of the level
       (the only cells marching cubes puts geometry in; the grid padded by one
       point below the level, as :func:`kocc.surfaces.extract_mesh` pads it)
       are found, and those of their corners that only have a certified value
       are evaluated exactly.

    See the module docstring for why the marching-cubes mesh of the result
    equals that of the dense grid.

    **A level interval** (``level_high`` > ``level``, for a level that varies
    over the grid within ``[level, level_high]``, as the local level of
    :mod:`kocc.surface_ridge`): a block is certified when
    :math:`f(c) - \ell_{high}` or :math:`\ell - f(c)` exceeds the same
    threshold, so every grid point is exactly known to be below ``level``,
    above ``level_high`` or (exactly evaluated) in between; step 2 evaluates
    the corners of every cell not all below ``level`` nor all above
    ``level_high``, i.e. of every cell some level of the interval may cross.

    Args:
        score_fn: maps ``(k, 3)`` points to ``(k,)`` scores, L-Lipschitz.
        low: ``(3,)`` float32 grid origin.
        spacing: ``(3,)`` float32 grid step per axis.
        resolution: points per axis.
        level: the iso-level.
        lipschitz: a proven Lipschitz bound of ``score_fn`` (l2, in the
            coordinates of ``low`` and ``spacing``).
        level_high: the top of a level interval (default: ``level``, one
            level); must be ``>= level``.
        batch_size: points per evaluated chunk.
        top_block: side of the first blocks (a power of two; halved while
            there are fewer than ``MIN_FIRST_BLOCKS`` of them).
        min_block: side of the last blocks tested (a power of two).

    Returns:
        A :class:`CertifiedGrid`; its ``volume`` is ``None`` if pruning does
        not pay: the first blocks' scores show it (:func:`_pays`), or the
        blocks left at the last level hold more than ``DENSE_FRACTION`` of the
        grid. The caller then evaluates every grid point.
    """
    n = int(resolution)
    level = float(level)
    level_high = level if level_high is None else float(level_high)
    if not level_high >= level:
        raise ValueError(f"level_high {level_high} must be >= level {level}")
    top_block, min_block = int(top_block), int(min_block)
    if top_block & (top_block - 1) or min_block & (min_block - 1):
        raise ValueError("top_block and min_block must be powers of two")
    if not 2 <= min_block <= top_block:
        raise ValueError("need 2 <= min_block <= top_block")
    # at least MIN_FIRST_BLOCKS first blocks: their centres sample the grid
    while top_block > min_block and (-(-n // top_block)) ** 3 < MIN_FIRST_BLOCKS:
        top_block //= 2
    spacing64 = np.asarray(spacing, np.float64)
    # float32 coordinates low + ijk * spacing are off by a few ulps of their
    # magnitude: the centre and a grid point may be that much farther apart
    magnitude = np.maximum(np.abs(low), np.abs(low + (n - 1) * spacing64))
    slack = 4 * float(np.finfo(np.float32).eps) * float(np.linalg.norm(magnitude))
    evaluate = evaluate_points(score_fn, low, spacing, batch_size)
    blocks_per_axis = -(-n // top_block)
    side = blocks_per_axis * top_block
    volume = np.full((side, side, side), np.nan, np.float32)
    exact = np.zeros((side, side, side), bool)
    axis = np.arange(blocks_per_axis) * top_block
    origins = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    evaluated = 0
    size = top_block
    eighths = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1)
    while True:
        last = np.minimum(origins + size - 1, n - 1)  # the block's last point
        centre = 0.5 * (origins + last)
        radius = 0.5 * np.linalg.norm((last - origins) * spacing64, axis=1) + slack
        scores = evaluate(centre.astype(np.float32)).astype(np.float64)
        evaluated += len(origins)
        threshold = (1 + RELATIVE_SAFETY) * lipschitz * radius
        threshold += ABSOLUTE_SAFETY * (1 + np.abs(scores))
        certified = (scores - level_high > threshold) | (level - scores > threshold)
        if size == top_block and not _pays(
            scores, level, lipschitz, spacing64, level_high
        ):
            return CertifiedGrid(None, len(origins), 0, float(lipschitz))
        block = origins[certified] // size
        _block_view(volume, size)[block[:, 0], :, block[:, 1], :, block[:, 2], :] = (
            scores[certified, None, None, None]
        )
        origins = origins[~certified]
        if size == min_block or not len(origins):
            break
        size //= 2
        children = (origins[:, None, :] + size * eighths.reshape(1, -1, 3)).reshape(
            -1, 3
        )
        origins = children[np.all(children < n, axis=1)]
    if len(origins) * size**3 > DENSE_FRACTION * n**3:  # cheaper: every point
        return CertifiedGrid(None, evaluated, 0, float(lipschitz))
    # exact evaluation of every grid point of the blocks left
    offsets = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    points = (origins[:, None, :] + offsets.reshape(1, -1, 3)).reshape(-1, 3)
    inside = np.all(points < n, axis=1)
    values = np.full(len(points), np.nan, np.float32)
    values[inside] = evaluate(points[inside].astype(np.float32))
    block = origins // size
    view = _block_view(volume, size)
    view[block[:, 0], :, block[:, 1], :, block[:, 2], :] = values.reshape(
        -1, size, size, size
    )
    _block_view(exact, size)[block[:, 0], :, block[:, 1], :, block[:, 2], :] = True
    volume, exact = volume[:n, :n, :n], exact[:n, :n, :n]
    # exact values at the certified corners of the cells the level may cross
    repair = np.argwhere(mixed_cell_corners(volume, level, level_high) & ~exact)
    volume[tuple(repair.T)] = evaluate(repair.astype(np.float32))
    exact_points = int(inside.sum()) + len(repair)
    return CertifiedGrid(
        volume=np.ascontiguousarray(volume),
        evaluated_points=evaluated + exact_points,
        exact_points=exact_points,
        lipschitz=float(lipschitz),
    )
