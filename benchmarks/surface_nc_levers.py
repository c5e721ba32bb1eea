"""Normal consistency: training levers without a recipe key, and where NC is lost.

Samples 2,048 points on a shared mesh (by file stem, as
``benchmarks/surface_levers.py``), trains the 1-Lipschitz MLP of
:func:`kocc.surfaces.fit_point_cloud` through :func:`kocc.training.train_ocsdf`
in one or more *stages* (``--margins`` and ``--steps``, one pair per stage, each
with its own RMSprop decaying from 1e-3 to 1e-4: a margin schedule when the
margins differ), optionally with *negatives concentrated near the surface*
(``--near-fraction`` of the uniform draws replaced by an input point plus
Gaussian noise of ``--near-sigma`` median nearest-neighbour spacings, clipped to
the box, before the Newton-Raphson steps), meshes the fit at 200^3 at the
default level rule for each ``--offsets`` value, and prints one JSON line per
level. ``--breakdown`` adds the normal consistency from the reference side
(``ref_to_rec``) split between the *tubes* of the reference (samples whose
reference neighbourhood of 4 grid cells is elongated: second / first principal
variance < 0.3) and the rest, for the fit and for the reference's exact offset
shell at 1.5 grid cells (``benchmarks/surface_offset_bound.py``);
``--shell-only`` prints that split for the exact shell alone, without a fit.
``--local-deltas`` meshes the fit, on the dense grid, at a *local* level
instead of one level: ``f(x) = L(x) - delta h`` with ``L(x)`` the average of
f over the 16 input points nearest to x, weighted by
``exp(-|x - x_i|^2 / (2 (s h)^2))`` (``s``: ``--local-sigmas``), so that the
shell around every point has about the same thickness. E.g.::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/surface_nc_levers.py chair_0001 --margins 0.2 0.05 \\
        --steps 2000 4000
    python benchmarks/surface_nc_levers.py chair_0001 --margins 0.05 \\
        --steps 3000 --near-fraction 0.5 --near-sigma 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import tensorflow as tf  # noqa: E402
import trimesh  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from surfaces_shared_meshes import mesh_scores, shared_points  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.implicit_surface import (  # noqa: E402
    ImplicitSurface,
    IsotropicStandardization,
    default_level,
    padded_bounds,
    point_spacing,
)
from kocc.mesh_distances import sample_for_distance  # noqa: E402
from kocc.sampling import Box  # noqa: E402
from kocc.surfaces import (  # noqa: E402
    FINAL_LEARNING_RATE_FRACTION,
    evaluate_grid,
    extract_mesh,
    mesh_from_volume,
)
from kocc.training import (  # noqa: E402
    repeated_batches,
    steps_per_epoch_for,
    train_ocsdf,
)

RESOLUTION = 200


class NearSurfaceBox(Box):
    """A box whose draws are, with probability ``fraction``, a cloud point plus noise.

    ``N(0, sigma^2 I)`` noise around a uniformly chosen point of ``cloud``,
    clipped to the box; the other draws are uniform in the box.
    """

    def __init__(self, low, high, cloud, fraction: float, sigma: float):
        super().__init__(low, high)
        self.cloud = tf.constant(cloud, tf.float32)
        self.fraction = float(fraction)
        self.sigma = float(sigma)

    def _sample(self, n, seed, shape):
        uniform = super()._sample(n, seed, shape)
        if self.fraction <= 0:
            return uniform
        fold = tf.random.experimental.stateless_fold_in
        index = tf.random.stateless_uniform(
            (n,), fold(seed, 1), 0, self.cloud.shape[0], dtype=tf.int32
        )
        noise = tf.random.stateless_normal((n, *shape), fold(seed, 2))
        near = tf.gather(self.cloud, index) + self.sigma * noise
        pick = tf.random.stateless_uniform((n, 1), fold(seed, 3)) < self.fraction
        return self.project(tf.where(pick, near, uniform))


def tube_mask(reference, samples: np.ndarray, cell: float) -> np.ndarray:
    """Samples whose reference neighbourhood (radius 4 cells) is elongated."""
    dense, _ = trimesh.sample.sample_surface(reference, 300_000, seed=1)
    tree = cKDTree(dense)
    ratio = np.ones(len(samples))
    for j, near in enumerate(tree.query_ball_point(samples, 4 * cell)):
        if len(near) < 3:
            continue
        centred = dense[near] - dense[near].mean(axis=0)
        variances = np.sort(np.linalg.eigvalsh(centred.T @ centred / len(near)))
        ratio[j] = variances[1] / max(variances[2], 1e-30)
    return ratio < 0.3


def ref_to_rec(
    reference, mesh, n: int = 30000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Reference samples and |cos| of their normals with the nearest mesh sample's."""
    ref = sample_for_distance(reference, n, seed)
    rec = sample_for_distance(mesh, n, seed)
    _, nearest = cKDTree(rec.points).query(ref.points)
    return ref.points, np.abs(np.sum(ref.normals * rec.normals[nearest], axis=1))


def exact_shell(reference, bounds: np.ndarray, cell: np.ndarray, seed: int):
    """The reference's offset surface at 1.5 cells (surface_offset_bound.py)."""
    dense, _ = trimesh.sample.sample_surface(reference, 1_000_000, seed=seed)
    axes = [np.linspace(bounds[0, d], bounds[1, d], RESOLUTION) for d in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    clip = 5 * float(cell.max())
    distance, _ = cKDTree(dense).query(grid, distance_upper_bound=clip)
    distance = np.minimum(distance, clip).reshape((RESOLUTION,) * 3)
    level = -1.5 * float(cell.max())
    return mesh_from_volume(-distance.astype(np.float32), level, bounds, cell)


def shell_breakdown(reference, points: np.ndarray, seed: int) -> dict:
    """NC of the reference's exact 1.5-cell shell, on its tubes and the rest.

    Also the tubes' share of the reference samples (``tube_area_fraction``) and
    the tube mask itself (``tubes``, a boolean array over those samples).
    """
    bounds = padded_bounds(points, 0.1)
    cell = (bounds[1] - bounds[0]) / (RESOLUTION - 1)
    shell = exact_shell(reference, bounds, cell, seed)
    samples, cos = ref_to_rec(reference, shell, seed=seed)
    tubes = tube_mask(reference, samples, float(cell.max()))
    return {
        "shell_ref_to_rec": float(cos.mean()),
        "shell_tubes": float(cos[tubes].mean()),
        "shell_rest": float(cos[~tubes].mean()),
        "tube_area_fraction": float(tubes.mean()),
        "tubes": tubes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mesh", help="file stem of a shared mesh, e.g. chair_0001")
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--widths", nargs="+", type=int, default=[128] * 8)
    parser.add_argument("--margins", nargs="+", type=float, default=[0.05])
    parser.add_argument("--steps", nargs="+", type=int, default=[6000])
    parser.add_argument("--near-fraction", type=float, default=0.0)
    parser.add_argument("--near-sigma", type=float, default=2.0)
    parser.add_argument("--offsets", nargs="+", type=float, default=[0.0, 0.25])
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument(
        "--shell-only",
        action="store_true",
        help="the breakdown of the exact shell alone (no fit)",
    )
    parser.add_argument("--local-deltas", nargs="*", type=float, default=[])
    parser.add_argument("--local-sigmas", nargs="+", type=float, default=[1.0, 2.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.margins) != len(args.steps):
        raise SystemExit("--margins and --steps need one value per stage")
    if not 0.0 <= args.near_fraction <= 1.0:
        raise SystemExit(f"--near-fraction must be in [0, 1], got {args.near_fraction}")

    reference, points = shared_points(args.mesh, args.data_dir, args.seed)
    if args.shell_only:
        parts = shell_breakdown(reference, points, args.seed)
        parts.pop("tubes")
        print(json.dumps({"mesh": args.mesh, **parts}))
        return
    start, start_cpu = time.perf_counter(), time.process_time()
    standardization = IsotropicStandardization.fit(points)
    x = standardization.transform(points)
    spacing = point_spacing(x)
    low, high = padded_bounds(x, 0.1)
    domain = NearSurfaceBox(low, high, x, args.near_fraction, args.near_sigma * spacing)
    tf.keras.utils.set_random_seed(args.seed)
    backbone = lipschitz_mlp(3, widths=args.widths, activation="groupsort2", seed=0)
    for stage, (margin, steps) in enumerate(zip(args.margins, args.steps, strict=True)):
        per_epoch = steps_per_epoch_for(steps, 10)
        model, _ = train_ocsdf(
            backbone,
            domain,
            repeated_batches(x, 256, seed=args.seed + stage),
            epochs=10,
            steps_per_epoch=per_epoch,
            margin=margin,
            lam=100.0,
            nr_steps=4,
            optimizer="rmsprop",
            learning_rate=1e-3,
            final_learning_rate=FINAL_LEARNING_RATE_FRACTION * 1e-3,
            decay_steps=per_epoch * 10,
            seed=args.seed + stage,
        )
    fit = {
        "fit_seconds": round(time.perf_counter() - start, 1),
        "fit_cpu_seconds": round(time.process_time() - start_cpu, 1),
    }
    scores = model.score_samples(x)
    bounds = padded_bounds(points, 0.1)
    cell = (bounds[1] - bounds[0]) / (RESOLUTION - 1)
    tubes = None
    if args.breakdown:
        shell_parts = shell_breakdown(reference, points, args.seed)
        tubes = shell_parts.pop("tubes")
    for offset in args.offsets:
        level = default_level(scores, x, 0.01, offset)
        surface = ImplicitSurface(model.backbone, standardization, level, bounds)
        mesh = extract_mesh(surface, RESOLUTION)
        row = {
            "mesh": args.mesh,
            "widths": args.widths,
            "margins": args.margins,
            "steps": args.steps,
            "near_fraction": args.near_fraction,
            "near_sigma": args.near_sigma,
            "level_offset": offset,
            "seed": args.seed,
            **mesh_scores(mesh, reference, args.seed),
            **fit,
            "load_average": os.getloadavg()[0],
        }
        if tubes is not None:
            _, cos = ref_to_rec(reference, mesh, seed=args.seed)
            row.update(
                ref_to_rec=float(cos.mean()),
                tubes=float(cos[tubes].mean()),
                rest=float(cos[~tubes].mean()),
                **shell_parts,
            )
        print(json.dumps(row), flush=True)
    if args.local_deltas:
        surface = ImplicitSurface(model.backbone, standardization, 0.0, bounds)
        grid = evaluate_grid(surface.score_fn(), bounds, RESOLUTION)
        for sigma, delta, mesh in local_level_meshes(
            grid, scores, points, bounds, cell, spacing, standardization.scale, args
        ):
            row = {
                "mesh": args.mesh,
                "margins": args.margins,
                "steps": args.steps,
                "near_fraction": args.near_fraction,
                "local_sigma": sigma,
                "local_delta": delta,
                **mesh_scores(mesh, reference, args.seed),
            }
            print(json.dumps(row), flush=True)


def local_level_meshes(grid, scores, points, bounds, cell, spacing, scale, args):
    """Meshes of ``f - (L - delta h)`` (module docstring), per sigma and delta."""
    resolution = grid.shape[0]
    axes = [np.linspace(bounds[0, d], bounds[1, d], resolution) for d in range(3)]
    lowest = float(scores.min())
    near = grid > lowest - 3 * spacing  # where a local level can be crossed
    index = np.nonzero(near)
    xyz = np.stack([axes[d][index[d]] for d in range(3)], axis=1)
    distance, nearest = cKDTree(points).query(xyz, k=16)
    for sigma in args.local_sigmas:
        weights = np.exp(-0.5 * (distance / (sigma * spacing * scale)) ** 2) + 1e-12
        local = (weights * scores[nearest]).sum(1) / weights.sum(1)
        for delta in args.local_deltas:
            shifted = grid - (lowest - delta * spacing) - 1.0  # below 0 off the band
            shifted[index] = grid[index] - (local - delta * spacing)
            volume = np.minimum(shifted, 10.0).astype(np.float32)
            yield sigma, delta, mesh_from_volume(volume, 0.0, bounds, cell)


if __name__ == "__main__":
    main()
