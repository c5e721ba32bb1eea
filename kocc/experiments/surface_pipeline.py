"""The ``surface`` recipe: a mesh or point cloud in, meshes and metrics out.

``run_surface(input_path, out_dir, config)`` is what ``kocc surface
MESH_OR_POINTS --out DIR`` runs (recipe ``recipes/surface_modelnet.yaml``):

1. read the input: a mesh (``.off/.stl/.obj/.ply`` with faces) is sampled with
   ``input.n_points`` points on its surface (the authors' protocol, 2,048 points)
   or, for watertight meshes, inside its volume; a point cloud
   (``.ply/.xyz/.npy``) is used as given;
2. fit OCSDF (:func:`kocc.surfaces.fit_point_cloud`, under the ``distribute``
   section's strategy, as the other kinds) and extract its mesh at
   ``extraction.resolution``\\ :sup:`3`;
3. the same for the DeepSDF-style baseline
   (:func:`kocc.baselines.fit_distance_regression`) unless disabled;
4. compare each mesh with the reference (the input mesh, else the input points):
   Chamfer (DeepSDF convention) and Hausdorff in units of the reference's
   bounding-box diagonal, and normal consistency;
5. write ``points.ply``, ``ocsdf.ply``, ``baseline.ply``, ``rendering.png`` and
   ``metrics.json`` into ``out_dir``.

The schema (:class:`SurfaceRecipe`) follows :mod:`kocc.experiments.recipes`: every
key has its default here, unknown keys are errors naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kocc.baselines.distance_regression import fit_distance_regression
from kocc.experiments.progress import Progress
from kocc.experiments.recipes import (
    DistributeConfig,
    MLPConfig,
    Recipe,
    TrainingConfig,
    at_least,
    from_dict,
    non_negative,
    one_of,
    positive,
    to_dict,
    unit_interval,
)
from kocc.experiments.training import run_directory, section_arguments, strategy_of
from kocc.extras import require
from kocc.mesh_distances import bounding_box_diagonal, compare_surfaces
from kocc.meshes import (
    is_mesh_file,
    load_mesh,
    load_point_cloud,
    render_meshes,
    sample_surface,
    sample_volume,
    write_mesh,
    write_point_cloud,
)
from kocc.surface_ridge import (
    DEFAULT_LOCAL_OFFSET,
    DEFAULT_RIDGE_LEVEL_OFFSET,
    DEFAULT_RIDGE_REACH,
    SURFACE_MODES,
)
from kocc.surfaces import ImplicitSurface, extract_mesh, fit_point_cloud

trimesh = require("trimesh")


@dataclass
class SurfaceInputConfig:
    """How a mesh input becomes a point cloud (ignored for point-cloud input)."""

    n_points: int = field(default=2048, metadata=at_least(4))
    #: surface | volume (watertight meshes only)
    sampling: str = field(default="surface", metadata=one_of("surface", "volume"))


@dataclass
class SurfaceDomainConfig:
    """Negatives' domain around the standardized points: ``box`` or ``ball``,
    grown by ``padding`` x the cloud's largest extent (also the extraction box)."""

    kind: str = field(default="box", metadata=one_of("box", "ball"))
    padding: float = field(default=0.1, metadata=non_negative())


def _fit_default(name: str) -> Any:
    """The default of :func:`kocc.surfaces.fit_point_cloud`'s argument ``name``."""
    return inspect.signature(fit_point_cloud).parameters[name].default


@dataclass
class ExtractionConfig:
    """Marching cubes settings (:func:`kocc.surfaces.extract_mesh`)."""

    resolution: int = field(default=200, metadata=at_least(2))
    level: float | None = None  # None: the level_quantile of f on the points
    level_quantile: float = field(default=0.01, metadata=unit_interval())
    #: lowers OCSDF's level by this many median nearest-neighbour spacings of
    #: the points (kocc.implicit_surface.default_level; baseline.level_offset
    #: for the baseline); None: the default of the ``surface`` mode, 0.5 for
    #: "ridge" (kocc.surface_ridge.DEFAULT_RIDGE_LEVEL_OFFSET) and
    #: fit_point_cloud's 0.25 for "shell"
    level_offset: float | None = field(default=None, metadata=non_negative())
    batch_size: int = field(default=32768, metadata=at_least(1))
    #: coarse-to-fine evaluation certified by the network's proven Lipschitz
    #: bound (same mesh; a network without a proven bound is evaluated densely)
    lipschitz_pruning: bool = True
    #: "ridge": the surface through the points (the ridge of f where the shell
    #: encloses an interior, the local level elsewhere: kocc.surface_ridge);
    #: "shell": the level set, the paper's extraction; for both methods
    surface: str = field(default="ridge", metadata=one_of(*SURFACE_MODES))
    #: the ridge band: walls up to 2 x this many grid cells thick
    #: (kocc.surface_ridge.ridge_regions)
    ridge_reach: float = field(default=DEFAULT_RIDGE_REACH, metadata=positive())
    #: the local level passes this many point spacings outside the points
    #: (kocc.surface_ridge.LocalLevel; ridge only)
    local_offset: float = field(default=DEFAULT_LOCAL_OFFSET, metadata=non_negative())

    def __post_init__(self) -> None:
        if self.level_offset is None:
            self.level_offset = (
                DEFAULT_RIDGE_LEVEL_OFFSET
                if self.surface == "ridge"
                else _fit_default("level_offset")
            )


@dataclass
class DistanceRegressionConfig:
    """The DeepSDF-style baseline (:func:`kocc.baselines.fit_distance_regression`)."""

    enabled: bool = True
    widths: list[int] = field(default_factory=lambda: [256, 256, 256, 256])
    activation: str = "relu"
    clamp: float = field(default=0.1, metadata=positive())
    n_queries: int = field(default=250000, metadata=at_least(1))
    near_sigmas: list[float] = field(
        default_factory=lambda: [0.08, 0.025], metadata=positive()
    )
    uniform_fraction: float = field(default=0.2, metadata=unit_interval())
    batch_size: int = field(default=1024, metadata=at_least(1))
    steps: int = field(default=4000, metadata=at_least(1))
    learning_rate: float = field(default=1e-3, metadata=positive())
    #: level offset in nearest-neighbour spacings; 0: the regressed score is
    #: flat near the surface (slope well below 1), where extraction.level_offset
    #: would move the level set far from it (docs/surfaces.md)
    level_offset: float = field(default=0.0, metadata=non_negative())


@dataclass
class SurfaceMetricsConfig:
    """Surface samples per side for Chamfer / Hausdorff (DeepSDF: 30,000)."""

    n_samples: int = field(default=30000, metadata=at_least(1))


@dataclass
class RenderConfig:
    """The PNG rendering (:func:`kocc.meshes.render_meshes`)."""

    enabled: bool = True
    #: surface points per mesh (z-buffered splats)
    samples: int = field(default=400000, metadata=at_least(1))
    pixels: int = field(default=320, metadata=at_least(1))  # image side per panel


def _surface_model() -> MLPConfig:
    """The ``model:`` defaults of ``kind: surface``: fit_point_cloud's."""
    return MLPConfig(
        widths=list(_fit_default("widths")), activation=_fit_default("activation")
    )


#: The ``training:`` keys that :func:`kocc.surfaces.fit_point_cloud` takes, as
#: arguments of the same names.
_FIT_TRAINING_KEYS = (
    "margin",
    "lam",
    "nr_steps",
    "warmup_epochs",
    "updates_per_sampling",
    "batch_size",
    "steps",
    "epochs",
    "learning_rate",
    "final_learning_rate",
    "optimizer",
)


def _surface_training() -> TrainingConfig:
    """The ``training:`` defaults of ``kind: surface``: those of
    :func:`kocc.surfaces.fit_point_cloud`, which the recipe runs."""
    return TrainingConfig(**{key: _fit_default(key) for key in _FIT_TRAINING_KEYS})


@dataclass
class SurfaceRecipe(Recipe):
    """``kind: surface``: fit a point cloud, extract and compare meshes."""

    kind: str = field(default="surface", metadata=one_of("surface"))
    name: str = "surface"
    input: SurfaceInputConfig = field(default_factory=SurfaceInputConfig)
    model: MLPConfig = field(default_factory=_surface_model)
    domain: SurfaceDomainConfig = field(default_factory=SurfaceDomainConfig)
    training: TrainingConfig = field(default_factory=_surface_training)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    baseline: DistanceRegressionConfig = field(default_factory=DistanceRegressionConfig)
    metrics: SurfaceMetricsConfig = field(default_factory=SurfaceMetricsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)


def surface_recipe(config: dict | SurfaceRecipe | None) -> SurfaceRecipe:
    """Validate a surface configuration (a mapping, possibly partial).

    Raises:
        RecipeError: on an unknown key, a value of the wrong type, or a bad
            choice (``kind``, ``input.sampling``, ``domain.kind``).
    """
    if isinstance(config, SurfaceRecipe):
        recipe = config
    else:
        recipe = from_dict(SurfaceRecipe, dict(config or {}))
    return recipe


def read_input(path: str | os.PathLike, recipe: SurfaceRecipe) -> dict:
    """The input's point cloud and, for a mesh, the mesh itself.

    Returns:
        ``{"points": (n, 3) array, "mesh": Trimesh or None, "kind": "mesh" or
        "points"}``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if is_mesh_file(path):
        mesh = load_mesh(path)
        n, seed = recipe.input.n_points, recipe.seed
        if recipe.input.sampling == "volume":
            points = sample_volume(mesh, n, seed)
        else:
            points = sample_surface(mesh, n, seed)
        return {"points": points, "mesh": mesh, "kind": "mesh"}
    return {"points": load_point_cloud(path), "mesh": None, "kind": "points"}


#: The ``baseline:`` keys that :func:`kocc.baselines.fit_distance_regression`
#: takes, as arguments of the same names (all but ``enabled``).
_BASELINE_KEYS = tuple(
    f.name for f in dataclasses.fields(DistanceRegressionConfig) if f.name != "enabled"
)


def fit_ocsdf(
    points: np.ndarray, recipe: SurfaceRecipe, strategy: Any = None
) -> ImplicitSurface:
    """Fit OCSDF to ``points`` as :func:`run_surface` does (the recipe's network,
    domain, level rule, seed and training keys; :func:`kocc.surfaces.fit_point_cloud`).

    Args:
        points: the point cloud, ``(n, 3)``.
        recipe: the surface recipe (``model``, ``domain``, ``extraction`` level
            keys, ``training``, ``seed``).
        strategy: an optional ``tf.distribute`` strategy for the training.
    """
    return fit_point_cloud(
        points,
        widths=recipe.model.widths,
        activation=recipe.model.activation,
        domain=recipe.domain.kind,
        padding=recipe.domain.padding,
        level_quantile=recipe.extraction.level_quantile,
        level_offset=recipe.extraction.level_offset,
        seed=recipe.seed,
        **section_arguments(recipe.training, _FIT_TRAINING_KEYS),
        strategy=strategy,
    )


def extract_with(
    surface: ImplicitSurface, extraction: ExtractionConfig, **overrides: Any
) -> trimesh.Trimesh:
    """Mesh ``surface`` with the recipe's ``extraction`` settings, as
    :func:`run_surface` does (:func:`kocc.surfaces.extract_mesh`).

    Args:
        surface: the fitted implicit surface.
        extraction: the recipe's ``extraction`` section.
        **overrides: :func:`~kocc.surfaces.extract_mesh` keywords that replace
            the section's (e.g. ``level``, ``local_offset``) or add to them
            (``on_phase``).
    """
    keywords = {
        "level": extraction.level,
        "batch_size": extraction.batch_size,
        "lipschitz_pruning": extraction.lipschitz_pruning,
        "surface": extraction.surface,
        "ridge_reach": extraction.ridge_reach,
        "local_offset": extraction.local_offset,
    }
    return extract_mesh(surface, extraction.resolution, **(keywords | overrides))


def _fit_baseline(points: np.ndarray, recipe: SurfaceRecipe) -> ImplicitSurface:
    return fit_distance_regression(
        points,
        padding=recipe.domain.padding,
        level_quantile=recipe.extraction.level_quantile,
        seed=recipe.seed,
        **section_arguments(recipe.baseline, _BASELINE_KEYS),
    )


def _fit_extract_compare(
    name: str,
    fit,
    points: np.ndarray,
    reference: Any,
    recipe: SurfaceRecipe,
    progress: Progress,
) -> tuple[dict, trimesh.Trimesh | None]:
    progress.start(f"{name} fit")
    start, start_cpu = time.perf_counter(), time.process_time()
    surface = fit(points, recipe)
    ex = recipe.extraction
    report: dict = {
        "fit_seconds": time.perf_counter() - start,
        "fit_cpu_seconds": time.process_time() - start_cpu,
        "level": surface.level if ex.level is None else ex.level,
    }

    def extraction_times() -> dict:
        return {
            "extract_seconds": time.perf_counter() - start,
            "extract_cpu_seconds": time.process_time() - start_cpu,
            "load_average": os.getloadavg()[0],
        }

    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        mesh = extract_with(
            surface,
            ex,
            on_phase=lambda phase: progress.next(f"{name} {phase}"),
        )
    except ValueError as err:  # the level set is empty on the grid
        report.update(extraction_times(), error=str(err))
        progress.done()
        progress.skip()  # no marching cubes
        return report, None
    progress.done()
    report.update(extraction_times())
    comparison = compare_surfaces(
        mesh, reference, n=recipe.metrics.n_samples, seed=recipe.seed
    )
    report.update(
        chamfer=comparison.chamfer,
        hausdorff=comparison.hausdorff,
        normal_consistency=comparison.normal_consistency,
        n_vertices=int(len(mesh.vertices)),
        n_faces=int(len(mesh.faces)),
        watertight=bool(mesh.is_watertight),
        components=int(len(mesh.split(only_watertight=False))),
        mesh=f"{name}.ply",
    )
    return report, mesh


#: The surface fits :func:`run_surface` knows.
SURFACE_METHODS = ("ocsdf", "baseline")


def run_surface(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: dict | None,
    methods: Sequence[str] | None = None,
) -> dict:
    """Fit, extract and compare surfaces for one mesh or point cloud.

    Args:
        input_path: a mesh (``.off/.stl/.obj/.ply``) or a point cloud
            (``.ply/.xyz/.npy``).
        out_dir: run directory (created).
        config: a (partial) :class:`SurfaceRecipe` mapping; missing keys take
            their defaults.
        methods: the fits to run, among :data:`SURFACE_METHODS`, in this order
            (e.g. ``("baseline",)`` to measure the baseline alone); ``None``:
            OCSDF, then the baseline if ``baseline.enabled``.

    Returns:
        The metrics written to ``out_dir/metrics.json``: per method (``ocsdf``,
        ``baseline``) ``chamfer`` (/ D²), ``hausdorff`` (/ D), D the reference's
        bounding-box diagonal, ``normal_consistency``, ``fit_seconds``,
        ``extract_seconds`` (wall) and ``fit_cpu_seconds``,
        ``extract_cpu_seconds`` (process CPU time, all threads),
        ``load_average`` (1-minute, after the extraction), ``level``, mesh size,
        ``watertight``; or ``error``
        when the level set is empty on the grid.

    Raises:
        RecipeError: for an invalid configuration.
        ValueError: for an unknown or repeated method, or a missing or invalid
            input file (FileNotFoundError).
    """
    recipe = surface_recipe(config)
    if methods is None:
        methods = ("ocsdf", "baseline") if recipe.baseline.enabled else ("ocsdf",)
    methods = tuple(methods)
    unknown = [m for m in methods if m not in SURFACE_METHODS]
    if unknown or not methods or len(set(methods)) < len(methods):
        raise ValueError(
            f"methods must be distinct names among {SURFACE_METHODS}, got {methods}"
        )
    # first: a multi-worker strategy must exist before any other TF operation
    strategy = strategy_of(recipe.distribute)
    data = read_input(input_path, recipe)
    out = run_directory(strategy, out_dir)
    points = data["points"]
    reference = data["mesh"] if data["mesh"] is not None else points
    write_point_cloud(points, out / "points.ply")

    metrics: dict = {
        "input": str(input_path),
        "input_kind": data["kind"],
        "reference": "mesh" if data["mesh"] is not None else "points",
        "n_points": int(len(points)),
        "resolution": recipe.extraction.resolution,
        "units": "chamfer / D^2, hausdorff / D; D = reference bounding-box diagonal",
        "bbox_diagonal": bounding_box_diagonal(reference),
    }
    panels: list[tuple[str, Any]] = [(f"input ({len(points)} points)", points)]
    if data["mesh"] is not None:
        panels.append(("reference mesh", data["mesh"]))
    fits = {
        "ocsdf": lambda x, r: fit_ocsdf(x, r, strategy),
        "baseline": _fit_baseline,
    }
    # per method: fit, grid evaluation, marching cubes
    progress = Progress("surface", 3 * len(methods))
    for name in methods:
        fit = fits[name]
        report, mesh = _fit_extract_compare(
            name, fit, points, reference, recipe, progress
        )
        metrics[name] = report
        if name == "ocsdf":
            report["replicas"] = int(strategy.num_replicas_in_sync)
        if mesh is not None:
            write_mesh(mesh, out / f"{name}.ply")
            panels.append((name, mesh))
    if recipe.render.enabled:
        render_meshes(
            panels,
            out / "rendering.png",
            samples=recipe.render.samples,
            pixels=recipe.render.pixels,
            seed=recipe.seed,
        )
        metrics["rendering"] = "rendering.png"
    metrics["config"] = to_dict(recipe)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
