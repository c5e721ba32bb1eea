r"""Implicit surfaces: from a point cloud to a mesh through the learned SDF.

Paper §6 and appendix F (Béthune et al., ICML 2023). The points of a cloud sampled
on a surface are the *normal* data of a one-class problem; OCSDF learns, from the
points alone (no ground-truth distance), a 1-Lipschitz f that approximates
:math:`S + m`, with S the signed distance to the support of the points (here a
thin shell around the surface, positive inside it) and m the margin. A mesh is
then the level set :math:`\{x : f(x) = \ell\}` extracted by marching cubes.

- :func:`fit_point_cloud` standardizes the points *isotropically* (one centre,
  one scale for the three axes, so that distances keep their meaning), trains
  :class:`kocc.models.OCSDF` with negatives drawn in a box (or ball) around them,
  and returns an :class:`ImplicitSurface`.
- :func:`extract_mesh` evaluates f on a ``resolution``\ :sup:`3` grid chunk by
  chunk inside a ``tf.function`` (the activations of one chunk only are alive
  at a time), coarse to fine when the network's Lipschitz bound is proven
  (:mod:`kocc.certified_grid`: only the points near the level set are
  evaluated exactly, with the same mesh), runs scikit-image's
  ``marching_cubes`` (Lewiner) at the level :math:`\ell` (default: the 1st
  percentile of f over the training points, the paper's choice) and returns a
  :class:`trimesh.Trimesh` in the original coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.certified_grid import (
    evaluate_grid_certified,
    evaluate_points,
    mixed_cell_corners,
    proven_lipschitz_bound,
    scores_by_chunk,
)
from kocc.extras import require
from kocc.implicit_surface import (  # noqa: F401  (re-exported: kocc.surfaces.*)
    DEFAULT_GRID_BATCH,
    ImplicitSurface,
    IsotropicStandardization,
    check_level_rule,
    default_level,
    padded_bounds,
)
from kocc.meshes import check_points
from kocc.sampling import Ball, Box
from kocc.surface_ridge import (
    DEFAULT_LOCAL_OFFSET,
    DEFAULT_RIDGE_REACH,
    LocalLevel,
    check_surface_mode,
    ridge_exact_points,
    ridge_field,
    ridge_regions,
)
from kocc.training import (
    negatives_per_batch_for,
    repeated_batches,
    steps_per_epoch_for,
    train_ocsdf,
)
from kocc.validation import check_non_negative, check_positive

trimesh = require("trimesh")
marching_cubes = require("skimage.measure").marching_cubes

#: The learning rate of :func:`fit_point_cloud` decays linearly from
#: ``learning_rate`` to this fraction of it over the ``steps`` updates. At a
#: constant rate the last RMSprop steps keep moving f by about as much as the
#: first ones, so f is uneven over the points and the level set at their 1st
#: percentile is a thick shell: sphere and torus of ``tests/test_surfaces.py``
#: (800 steps, seeds 0-2) had Chamfer / D^2 of 8.0e-4 to 2.7e-3 at a constant
#: rate, 8.7e-5 to 1.4e-4 with this decay (``docs/surfaces.md``,
#: ``benchmarks/surface_fit_settings.py``).
FINAL_LEARNING_RATE_FRACTION = 0.1


def _check_recipe(widths: Sequence[int], domain: str, padding: float) -> None:
    if domain not in ("box", "ball"):
        raise ValueError(f"domain must be 'box' or 'ball', got {domain!r}")
    if not padding >= 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    if len(widths) == 0:
        raise ValueError("widths must list at least one hidden layer width")


def fit_point_cloud(
    points: Any,
    *,
    widths: Sequence[int] = (128,) * 8,
    activation: str = "groupsort2",
    domain: str = "box",
    padding: float = 0.1,
    margin: float = 0.05,
    lam: float = 100.0,
    nr_steps: int = 2,
    warmup_epochs: int = 0,
    updates_per_sampling: int = 1,
    batch_size: int = 256,
    steps: int = 6000,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    final_learning_rate: float | None = None,
    optimizer: str = "rmsprop",
    level_quantile: float = 0.01,
    level_offset: float = 0.25,
    seed: int = 0,
    verbose: int = 0,
    strategy: tf.distribute.Strategy | None = None,
) -> ImplicitSurface:
    """Fit OCSDF to a 3-D point cloud (paper §6, appendix F).

    The points are standardized (:class:`IsotropicStandardization`); negatives
    are drawn uniformly in the standardized bounding box grown by ``padding`` x
    its largest side (``domain="box"``) or in the ball of radius
    ``(1 + padding) * max ||x||`` (``domain="ball"``), then moved by
    ``nr_steps`` Newton-Raphson steps (Algorithm 1). Training minimizes the
    hinge-KR loss (``margin``, ``lam``) for ``steps`` updates
    (:func:`kocc.training.train_ocsdf`), the learning rate decaying linearly
    from ``learning_rate`` to ``final_learning_rate`` (by default
    :data:`FINAL_LEARNING_RATE_FRACTION` times ``learning_rate``).
    The default level is the ``level_quantile`` of f over the points lowered
    by ``level_offset`` median nearest-neighbour spacings
    (:func:`kocc.implicit_surface.default_level`). The defaults are those of
    ``recipes/surface_modelnet.yaml``, measured on the shared meshes
    (``docs/surfaces.md``): an 8 x 128 GroupSort2 network (3 x 128 webs thin
    parts such as chair legs), 6,000 RMSprop steps of 256 points from 1e-3,
    T = 2 (the paper's T = 4 takes 1.3 times as long per step; its surfaces
    were as close on 15 of the 16 shared meshes, not on the airplane),
    lambda = 100, m = 0.05 (the paper's tabular
    optimizer, margin and weight), level offset 0.25.

    Args:
        points: ``(n, 3)`` points, ``n >= 4``, finite.
        widths: hidden widths of the 1-Lipschitz MLP
            (:func:`kocc.architectures.lipschitz_mlp`).
        activation: its activation (``"fullsort"``, ``"groupsort2"``, ...).
        domain: ``"box"`` or ``"ball"``.
        padding: how far the domain (and the default extraction box) extends
            beyond the points, as a fraction of their largest extent.
        margin: hinge margin m, in standardized units.
        lam: hinge weight.
        nr_steps: Newton-Raphson steps per negative sampling.
        warmup_epochs: first epochs with uniform negatives (no NR steps).
        updates_per_sampling: parameter updates per negative sampling K: the
            ``batch_size`` negatives are drawn (uniform draw and Newton-Raphson
            steps) every K updates and reused in between (Algorithm 3's
            alternation of sampling and updates; 1: a fresh sampling per update).
        batch_size: points per update (as many negatives).
        steps: number of parameter updates (rounded up to a multiple of
            ``epochs``).
        epochs: Keras epochs the steps are shown as (and counted by
            ``warmup_epochs``).
        learning_rate: optimizer learning rate at the first update.
        final_learning_rate: the rate it decays to, linearly, over the updates
            (``None``: ``FINAL_LEARNING_RATE_FRACTION * learning_rate``).
        optimizer: ``"rmsprop"``, ``"adam"`` or ``"sgd"``.
        level_quantile: quantile of the training points' scores used as the
            default extraction level (0.01: the paper's 1st percentile).
        level_offset: lowers that level by this many median nearest-neighbour
            spacings of the standardized points
            (:func:`kocc.implicit_surface.default_level`; 0: the paper's level).
        seed: seeds the network initialization, the shuffling and the negatives.
        verbose: Keras ``fit`` verbosity.
        strategy: the ``tf.distribute`` strategy the network is built and
            trained under (default: the current one); ``batch_size`` is then
            the global batch, split over the replicas (docs/distributed.md).

    Returns:
        The fitted :class:`ImplicitSurface` (model = the OCSDF backbone).

    Raises:
        ValueError: for invalid points (fewer than 4, NaN/inf, not 3-D) or
            hyper-parameters.
    """
    points = check_points(points)
    _check_recipe(widths, domain, padding)
    check_level_rule(level_quantile, level_offset)
    standardization = IsotropicStandardization.fit(points)
    x = standardization.transform(points)
    if domain == "box":
        low, high = padded_bounds(x, padding)
        sampling_domain = Box(low, high)
    else:
        radius = (1.0 + float(padding)) * float(np.linalg.norm(x, axis=1).max())
        sampling_domain = Ball(radius, center=np.zeros(3, np.float32))

    tf.keras.utils.set_random_seed(int(seed))
    strategy = strategy or tf.distribute.get_strategy()
    steps_per_epoch = steps_per_epoch_for(steps, epochs)
    with strategy.scope():
        backbone = lipschitz_mlp(3, widths=widths, activation=activation, seed=seed)
        model, report = train_ocsdf(
            backbone,
            sampling_domain,
            repeated_batches(x, int(batch_size), seed=int(seed)),
            epochs=int(epochs),
            steps_per_epoch=steps_per_epoch,
            verbose=verbose,
            margin=margin,
            lam=lam,
            nr_steps=int(nr_steps),
            warmup_epochs=int(warmup_epochs),
            updates_per_sampling=int(updates_per_sampling),
            negatives_per_batch=negatives_per_batch_for(
                batch_size, updates_per_sampling
            ),
            optimizer=optimizer,
            learning_rate=learning_rate,
            final_learning_rate=(
                FINAL_LEARNING_RATE_FRACTION * float(learning_rate)
                if final_learning_rate is None
                else float(final_learning_rate)
            ),
            decay_steps=steps_per_epoch * int(epochs),
            seed=seed,
        )
    scores = np.asarray(model.score_samples(x), np.float32).reshape(-1)
    return ImplicitSurface(
        model=model.backbone,
        standardization=standardization,
        level=default_level(scores, x, level_quantile, level_offset),
        bounds=padded_bounds(points, padding),
        history={k: [float(v) for v in vs] for k, vs in report.history.items()},
        points=x,
        point_scores=scores,
    )


def _check_bounds(bounds: Any) -> np.ndarray:
    bounds = np.asarray(bounds, dtype=np.float32)
    if bounds.shape != (2, 3) or not np.all(np.isfinite(bounds)):
        raise ValueError(
            f"bounds must be finite [[xmin, ymin, zmin], [xmax, ymax, zmax]], got "
            f"shape {bounds.shape}"
        )
    if np.any(bounds[1] <= bounds[0]):
        raise ValueError(f"bounds need high > low on every axis, got {bounds.tolist()}")
    return bounds


def _grid(bounds: Any, resolution: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Checked ``(2, 3)`` bounds, ``resolution >= 2`` and the grid spacing."""
    bounds, resolution = _check_bounds(bounds), int(resolution)
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution!r}")
    return bounds, resolution, (bounds[1] - bounds[0]) / (resolution - 1)


def evaluate_grid(
    score_fn: Callable[[tf.Tensor], tf.Tensor],
    bounds: Any,
    resolution: int,
    batch_size: int = DEFAULT_GRID_BATCH,
) -> np.ndarray:
    """Scores on the regular ``resolution``\\ :sup:`3` grid spanning ``bounds``.

    One ``tf.function`` runs a ``tf.while_loop`` (``parallel_iterations=1``) over
    chunks of ``batch_size`` grid points: each iteration computes its points'
    coordinates from their flat indices, evaluates ``score_fn`` on them and
    writes the scores into a ``TensorArray``, so only one chunk's activations
    exist at a time; the output holds ``resolution**3`` float32 scores.

    Args:
        score_fn: maps ``(k, 3)`` points (original coordinates) to ``(k,)``.
        bounds: ``(2, 3)`` grid box (low, high); the grid includes both ends.
        resolution: points per axis, ``>= 2``.
        batch_size: grid points per chunk.

    Returns:
        A float32 array ``(resolution, resolution, resolution)`` indexed ``[i, j,
        k]`` for the point ``low + spacing * (i, j, k)``.
    """
    bounds, resolution, spacing = _grid(bounds, resolution)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    low = tf.constant(bounds[0], tf.float32)
    spacing = tf.constant(spacing, tf.float32)
    total = resolution**3
    chunks = -(-total // batch_size)

    @tf.function
    def run() -> tf.Tensor:
        def chunk_points(c: tf.Tensor) -> tf.Tensor:
            start = c * batch_size
            flat = tf.range(start, tf.minimum(start + batch_size, total))
            ijk = tf.stack(
                [
                    flat // (resolution * resolution),
                    (flat // resolution) % resolution,
                    flat % resolution,
                ],
                axis=1,
            )
            return low + tf.cast(ijk, tf.float32) * spacing

        return scores_by_chunk(score_fn, chunk_points, chunks)

    return run().numpy().reshape(resolution, resolution, resolution)


def extract_mesh(
    model: ImplicitSurface | Callable,
    resolution: int = 200,
    level: float | None = None,
    bounds: Any = None,
    batch_size: int = DEFAULT_GRID_BATCH,
    on_phase: Callable[[str], None] | None = None,
    lipschitz_pruning: bool = True,
    surface: str = "shell",
    ridge_reach: float = DEFAULT_RIDGE_REACH,
    local_offset: float = DEFAULT_LOCAL_OFFSET,
) -> trimesh.Trimesh:
    """Mesh the level set ``{f = level}`` by marching cubes (Lewiner), or its ridge.

    f is evaluated on the ``resolution``\\ :sup:`3` grid, then the grid is
    padded by one cell of its minimum on every side so that a surface reaching
    the box closes there (on the box face); face normals point toward
    decreasing f (out of the region ``f > level``).

    **Certified pruning** (``lipschitz_pruning=True``, the default): when the
    network's Lipschitz constant L is proven from its weights
    (:func:`kocc.certified_grid.proven_lipschitz_bound`: a Keras chain of
    layers :mod:`kocc.lipschitz_bound` can bound, e.g. the OCSDF backbone of
    :func:`fit_point_cloud`), the grid is evaluated coarse to fine
    (:func:`kocc.certified_grid.evaluate_grid_certified`): a block of grid
    points with centre c and half-diagonal r is filled with f(c) when
    :math:`|f(c) - \\ell| > L r` (plus a float-rounding margin), since then
    all its points are on the same side of the level; the other blocks are
    split, down to blocks of 2 x 2 x 2 whose points are evaluated. With every
    sign known, the corners of the cells the level crosses that hold only a
    certified value are evaluated exactly. So every corner of every cell the
    level crosses holds its exact value, and the mesh's vertices and faces are
    those of the dense evaluation; so are the vertex normals, except on a cap
    closing the surface on the box, whose normals mix in the padding value (the
    grid's minimum, which pruning does not compute exactly). For an
    :class:`ImplicitSurface` the bound of its network is divided by the
    standardization's scale (``x -> (x - center) / scale``); a bare callable is
    pruned only if it is itself such a Keras model (on original coordinates).
    Anything else (a Python function, a subclassed model, a layer without a
    proven bound) is evaluated densely on every grid point
    (:func:`evaluate_grid`), as with ``lipschitz_pruning=False``. How much is
    saved depends on how steep f is: OCSDF's f after a short fit is flatter
    than a distance (``|grad f| < 1``), so the shell evaluated around the
    level set is thicker.

    **Ridge** (``surface="ridge"``, :mod:`kocc.surface_ridge`): the surface
    the points were sampled on rather than the boundary of a shell around it.
    Where the shell ``{f >= level}`` encloses an interior, the mesh follows
    the ridge of f inside the shell (one sheet instead of two); elsewhere
    (thin parts and filled parts, whose shell is solid through) the level set
    of the *local level* :class:`kocc.surface_ridge.LocalLevel`, which passes
    ``local_offset`` point spacings outside the points instead of the global
    level's gap (the global level is its floor). The local level needs the
    surface's training points and scores (kept by both fits); for a bare
    callable or without them, the global level is used there. Pruning
    certifies the signs against the level interval the local level spans, and
    the ridge band is evaluated exactly, so it still gives the dense
    evaluation's mesh.

    The returned mesh's ``metadata["grid_evaluation"]`` records
    ``grid_points`` (``resolution**3``), ``evaluated_points`` (network
    evaluations, block centres included), ``exact_points``,
    ``lipschitz_bound`` (``None`` when no bound is proven) and ``pruned``
    (``False`` when every grid point was evaluated: no bound, or the first
    blocks showed that the bound is too loose for pruning to pay,
    :func:`kocc.certified_grid.evaluate_grid_certified`).

    Args:
        model: an :class:`ImplicitSurface` (from :func:`fit_point_cloud` or a
            baseline), or a callable mapping original-coordinate points
            ``(k, 3)`` to scores (then ``level`` and ``bounds`` are required).
        resolution: grid points per axis.
        level: iso-level; default the surface's ``level`` (1st percentile of f
            over the training points).
        bounds: ``(2, 3)`` box in original coordinates; default the surface's
            ``bounds`` (the points' bounding box plus padding).
        batch_size: grid points per chunk of the evaluation.
        on_phase: called with ``"grid evaluation"`` and ``"marching cubes"``
            as each phase begins (progress reporting).
        lipschitz_pruning: evaluate coarse to fine when a Lipschitz bound is
            proven (same mesh, fewer evaluations); ``False``: every grid point.
        surface: ``"shell"`` (the level set, the paper's extraction) or
            ``"ridge"`` (the ridge where the shell encloses an interior).
        ridge_reach: with ``surface="ridge"``, the band's reach in grid cells
            (:func:`kocc.surface_ridge.ridge_regions`).
        local_offset: with ``surface="ridge"``, the local level's offset c in
            point spacings (:class:`kocc.surface_ridge.LocalLevel`).

    Returns:
        A :class:`trimesh.Trimesh` in the original coordinates.

    Raises:
        ValueError: if ``level`` or ``bounds`` is missing for a bare callable,
            the level is outside the range of f on the grid (no surface), or
            ``surface`` or ``ridge_reach`` is invalid.
    """
    check_surface_mode(surface)
    check_positive(ridge_reach=ridge_reach)
    check_non_negative(local_offset=local_offset)
    local = None
    if isinstance(model, ImplicitSurface):
        score_fn = model.score_fn()
        level = model.level if level is None else level
        bounds = model.bounds if bounds is None else bounds
        network = model.model
        # score_fn multiplies by float32(1 / scale): the bound in original units
        coordinate_scale = float(np.float32(1.0 / model.standardization.scale))
        if surface == "ridge" and model.points is not None:
            local = LocalLevel.of(
                model.points, model.point_scores, float(level), float(local_offset)
            )
    else:
        if level is None or bounds is None:
            raise ValueError(
                "extract_mesh on a bare callable needs level= and bounds= (an "
                "ImplicitSurface from fit_point_cloud carries both)"
            )
        score_fn = model
        network, coordinate_scale = model, 1.0
    bounds, resolution, spacing = _grid(bounds, resolution)
    level = float(level)
    level_high = level if local is None else local.high
    on_phase = on_phase or (lambda phase: None)
    on_phase("grid evaluation")
    bound = proven_lipschitz_bound(network) if lipschitz_pruning else None
    grid = None
    if bound is not None:
        bound *= coordinate_scale
        grid = evaluate_grid_certified(
            score_fn,
            bounds[0],
            spacing,
            resolution,
            level,
            bound,
            int(batch_size),
            level_high=level_high,
        )
    if grid is None or grid.volume is None:
        volume = evaluate_grid(score_fn, bounds, resolution, batch_size)
        exact = resolution**3
        evaluated = exact + (0 if grid is None else grid.evaluated_points)
    else:
        volume, evaluated, exact = grid.volume, grid.evaluated_points, grid.exact_points
    pruned = grid is not None and grid.volume is not None
    report = {
        "grid_points": resolution**3,
        "evaluated_points": int(evaluated),
        "exact_points": int(exact),
        "lipschitz_bound": bound,
        "pruned": pruned,
    }
    if surface == "ridge":
        regions = ridge_regions(volume >= level, ridge_reach)
        if pruned and regions.band.any():  # exact scores on the band
            ijk = np.argwhere(ridge_exact_points(regions))
            evaluate = evaluate_points(score_fn, bounds[0], spacing, int(batch_size))
            volume[tuple(ijk.T)] = evaluate(ijk.astype(np.float32))
            report["evaluated_points"] += len(ijk)
        levels = np.full(volume.shape, level, np.float32)
        if local is not None:  # at every corner of a cell the local level may cross
            ijk = np.argwhere(mixed_cell_corners(volume, level, level_high))
            xyz = bounds[0].astype(np.float64) + ijk * spacing.astype(np.float64)
            standardized = (xyz - model.standardization.center) / (
                model.standardization.scale
            )
            levels[tuple(ijk.T)] = local(standardized)
        report["ridge_points"] = int(regions.band.sum())
        report["level_range"] = [level, level_high]
        volume, level = ridge_field(volume, levels, regions), 0.0
    on_phase("marching cubes")
    mesh = mesh_from_volume(volume, level, bounds, spacing)
    mesh.metadata["grid_evaluation"] = report
    return mesh


def mesh_from_volume(
    volume: np.ndarray, level: float, bounds: Any, spacing: Any
) -> trimesh.Trimesh:
    """Marching cubes (Lewiner) on a grid of scores, in the grid's coordinates.

    The volume is padded by one cell of its minimum on every side so that a
    surface reaching the box closes there (on the box face); face normals point
    toward decreasing scores (out of ``{f > level}``). The mesh keeps marching
    cubes' connectivity, one vertex per crossed grid edge: merging vertices by
    position (trimesh's ``process=True``) fused distinct vertices that round to
    the same float32 point where the level passes within float32 rounding of a
    grid corner, and pinched the surface there into edges of 4 or more faces
    (``docs/surfaces.md``, "Watertight meshes").

    Args:
        volume: ``(r, r, r)`` scores at ``low + spacing * (i, j, k)``.
        level: iso-level, strictly between the volume's minimum and maximum.
        bounds: ``(2, 3)`` grid box (low, high).
        spacing: ``(3,)`` grid spacing.

    Raises:
        ValueError: if the level is not strictly between the volume's minimum
            and maximum (no surface on the grid).
    """
    bounds = np.asarray(bounds, np.float32)
    spacing = np.asarray(spacing, np.float32)
    f_min, f_max, level = float(volume.min()), float(volume.max()), float(level)
    if not f_min < level < f_max:
        raise ValueError(
            f"level {level:.6g} is outside the range of f on the grid "
            f"[{f_min:.6g}, {f_max:.6g}]: no surface to extract (enlarge the "
            "bounds or change the level)"
        )
    padded = np.pad(volume, 1, mode="constant", constant_values=f_min)
    vertices, faces, normals, _ = marching_cubes(
        padded,
        level=level,
        spacing=tuple(float(s) for s in spacing),
        method="lewiner",
        gradient_direction="ascent",
    )
    # undo the one-cell padding; a cap closing a surface cut by the box lies in
    # the padding cell: put it on the box face
    vertices = np.clip(vertices - spacing + bounds[0], bounds[0], bounds[1])
    return trimesh.Trimesh(
        vertices=vertices, faces=faces, vertex_normals=normals, process=False
    )
