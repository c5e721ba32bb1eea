"""Mesh smoothing after extraction: scores of saved reconstructions, smoothed or not.

Reads the meshes a :mod:`surfaces_shared_meshes` run wrote (``--runs``: its
``--out`` folders; ``<out>/<data folder>/<stem>/{ocsdf,baseline}.ply``), applies
Taubin's lambda|mu smoothing (G. Taubin, SIGGRAPH 1995; lambda = 0.5,
mu = 0.53, umbrella Laplacian: :func:`trimesh.smoothing.filter_taubin`) with
each ``--iterations`` count (0: the mesh as extracted), and prints one JSON
document: per mesh, method and count, Chamfer (/ D²), Hausdorff (/ D), normal
consistency, watertightness and the smoothing's CPU seconds, with the same
samples as the pipeline's metrics (30,000 a side; ``--seed``: the run's
seed). Both methods get the same smoothing, so the comparison stays at the
same extraction.

With ``--reference``, each mesh also gets a ``"reference"`` entry: the
reference mesh scored against itself (count 0), with the same two samplings
(seeds ``seed`` and ``seed + 1``). Two samplings of one mesh are not the same
points, so this is the best the metric gives a perfect reconstruction: a
Chamfer distance above 0 and a normal consistency under 1, where
nearest-neighbour pairs straddle a sharp edge or a thin part.

``--filter`` picks the post-processing (each count as above):

- ``taubin`` (default): Taubin's smoothing, as above;
- ``bilateral``: feature-preserving bilateral filtering of the face normals
  (Zheng, Fu, Au, Tai, IEEE TVCG 2011, eq. 4): ``n_i <- normalize(sum_j A_j
  W_s(|c_i - c_j|) W_r(|n_i - n_j|) n_j)`` over the faces j whose centroids
  ``c_j`` lie within ``2 sigma_s`` of ``c_i`` (Gaussians: ``sigma_s`` =
  ``--sigma-cells`` grid cells of the 200^3 grid, ``sigma_r`` =
  ``--sigma-normal``; A_j the face areas), ``count`` times, then 10 vertex
  updates that move each vertex toward the planes of its faces (Sun et al.,
  IEEE TVCG 2007): ``x_v <- x_v + mean_{f ∋ v} n_f (n_f · (c_f - x_v))``.
  It keeps sharp edges and flattens lumpy faces;
- ``planes``: each vertex projected on the least-squares plane of its 16
  nearest input points (``points.ply`` of the run's folder) where that
  neighbourhood is planar (smallest covariance eigenvalue under
  ``--planarity`` of their sum); the count is ignored past 0.

Example::

    python benchmarks/surface_mesh_smoothing.py --runs runs/s1a runs/s1b \\
        --iterations 0 10 40 --seed 1
    python benchmarks/surface_mesh_smoothing.py --runs runs/s3a runs/s3b \\
        --iterations 0 --seed 3 --reference
    python benchmarks/surface_mesh_smoothing.py --runs runs/s3a runs/s3b \\
        --iterations 0 3 --seed 3 --methods ocsdf --filter bilateral
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

import kocc  # noqa: F401  (selects tf-keras first)
from kocc.datasets.paths import data_dir
from kocc.mesh_distances import compare_surfaces
from kocc.meshes import load_mesh, load_point_cloud, trimesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from surfaces_shared_meshes import shared_meshes  # noqa: E402


def smooth_mesh(mesh, iterations: int, lamb: float = 0.5, mu: float = 0.53):
    """A copy of ``mesh`` after ``iterations`` Taubin steps (half of them mu's)."""
    smoothed = mesh.copy()
    if iterations > 0:
        trimesh.smoothing.filter_taubin(
            smoothed, lamb=lamb, nu=mu, iterations=iterations
        )
    return smoothed


def _face_frames(vertices: np.ndarray, faces: np.ndarray):
    """Centroids, unit normals and areas of the faces."""
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    norm = np.linalg.norm(cross, axis=1)
    return corners.mean(1), cross / np.maximum(norm, 1e-30)[:, None], norm / 2


def bilateral_filter(
    mesh, iterations: int, sigma_s: float, sigma_r: float, vertex_updates: int = 10
):
    """A copy of ``mesh`` after bilateral normal filtering and vertex updates."""
    filtered = mesh.copy()
    if iterations <= 0:
        return filtered
    vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
    faces = np.asarray(mesh.faces)
    centroids, normals, areas = _face_frames(vertices, faces)
    pairs = cKDTree(centroids).query_pairs(2 * sigma_s, output_type="ndarray")
    own = np.arange(len(faces))
    i = np.concatenate([pairs[:, 0], pairs[:, 1], own])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], own])
    spatial = areas[j] * np.exp(
        -np.sum((centroids[i] - centroids[j]) ** 2, 1) / (2 * sigma_s**2)
    )
    for _ in range(iterations):
        weight = spatial * np.exp(
            -np.sum((normals[i] - normals[j]) ** 2, 1) / (2 * sigma_r**2)
        )
        matrix = scipy.sparse.csr_matrix((weight, (i, j)), shape=(len(faces),) * 2)
        normals = matrix @ normals
        normals /= np.maximum(np.linalg.norm(normals, axis=1), 1e-30)[:, None]
    corner_vertex = faces.ravel()
    corner_face = np.repeat(own, 3)
    count = np.maximum(np.bincount(corner_vertex, minlength=len(vertices)), 1)
    for _ in range(vertex_updates):
        centroids = vertices[faces].mean(1)
        n = normals[corner_face]
        step = np.einsum(
            "ck,ck->c", n, centroids[corner_face] - vertices[corner_vertex]
        )
        moved = np.zeros_like(vertices)
        np.add.at(moved, corner_vertex, step[:, None] * n)
        vertices += moved / count[:, None]
    filtered.vertices = vertices
    return filtered


def project_on_point_planes(mesh, points: np.ndarray, planarity: float, k: int = 16):
    """A copy of ``mesh`` whose vertices near planar point patches lie on them."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
    _, nearest = cKDTree(points).query(vertices, k)
    patch = points[nearest]
    centre = patch.mean(1)
    spread = patch - centre[:, None]
    values, vectors = np.linalg.eigh(np.einsum("vki,vkj->vij", spread, spread) / k)
    normal = vectors[:, :, 0]
    flat = values[:, 0] / np.maximum(values.sum(1), 1e-30) < planarity
    offset = np.sum((vertices[flat] - centre[flat]) * normal[flat], 1)
    vertices[flat] -= offset[:, None] * normal[flat]
    projected = mesh.copy()
    projected.vertices = vertices
    return projected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--iterations", nargs="+", type=int, default=[0, 10])
    parser.add_argument("--methods", nargs="+", default=["ocsdf", "baseline"])
    parser.add_argument("--only", nargs="+", default=None, help="mesh stems")
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--filter", choices=["taubin", "bilateral", "planes"], default="taubin"
    )
    parser.add_argument("--sigma-cells", type=float, default=1.5)
    parser.add_argument("--sigma-normal", type=float, default=0.3)
    parser.add_argument("--planarity", type=float, default=0.01)
    parser.add_argument("--resolution", type=int, default=200, help="grid of a cell")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also score each reference mesh against itself (the metric's ceiling)",
    )
    args = parser.parse_args(argv)

    references = {p.stem: p for p in shared_meshes(data_dir(args.data_dir))}
    rows = []
    for run in map(Path, args.runs):
        for folder in sorted(p for p in run.glob("*/*") if p.is_dir()):
            if folder.name not in references or (
                args.only and folder.name not in args.only
            ):
                continue
            reference = load_mesh(references[folder.name])
            row = {"mesh": folder.name}
            # (name, mesh, smoothing counts): the reference is scored as it is
            scored = [("reference", reference, [0])] if args.reference else []
            for method in args.methods:
                path = folder / f"{method}.ply"
                if path.exists():
                    scored.append((method, load_mesh(path), args.iterations))
            points = folder / "points.ply"
            for method, extracted, counts in scored:
                row[method] = {}
                for count in counts:
                    start = time.process_time()
                    if method == "reference" or args.filter == "taubin" or not count:
                        mesh = smooth_mesh(extracted, count)
                    elif args.filter == "bilateral":
                        extent = extracted.bounds[1] - extracted.bounds[0]
                        cell = float(extent.max()) / args.resolution
                        mesh = bilateral_filter(
                            extracted, count, args.sigma_cells * cell, args.sigma_normal
                        )
                    else:
                        mesh = project_on_point_planes(
                            extracted, load_point_cloud(points), args.planarity
                        )
                    seconds = time.process_time() - start
                    result = compare_surfaces(
                        mesh, reference, n=args.samples, seed=args.seed
                    )
                    row[method][str(count)] = {
                        "chamfer": result.chamfer,
                        "hausdorff": result.hausdorff,
                        "normal_consistency": result.normal_consistency,
                        "watertight": bool(mesh.is_watertight),
                        "smoothing_cpu_seconds": seconds,
                    }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    settings = {"iterations": args.iterations, "filter": args.filter}
    if args.filter == "bilateral":
        settings |= {"sigma_cells": args.sigma_cells, "sigma_normal": args.sigma_normal}
    if args.filter == "planes":
        settings["planarity"] = args.planarity
    print(json.dumps(settings | {"meshes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
