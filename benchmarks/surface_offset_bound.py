"""What normal consistency a shell can reach: the reference's own offset surface.

For a shared mesh (file stem), computes the unsigned distance to the mesh
(nearest of 1,000,000 area-uniform surface samples, scipy ``cKDTree``, clipped
at 5 grid cells or 3 median nearest-neighbour spacings of the input points,
whichever is larger) on the same grid as ``kocc surface`` (the padded bounding box
of the 2,048 input points, ``--resolution`` points per axis), meshes its level
set at ``delta`` grid cells with :func:`kocc.surfaces.mesh_from_volume`, and
prints one JSON line per ``delta``: Chamfer / D^2, Hausdorff / D and normal
consistency against the mesh (:func:`kocc.mesh_distances.compare_surfaces`),
watertightness. This is the best a reconstruction that thickens the surface
into a shell of that half-thickness can do on that grid: it separates the cost
of the shell and the grid from that of the fit. ``--source points`` uses the
distance to the 2,048 input points instead: its shells are unions of balls,
the exact target of a fit to the points alone, which shows how lumpy the
sampling itself is (every line also gives the points' spacing in grid
cells). No TensorFlow work; e.g.::

    python benchmarks/surface_offset_bound.py chair_0001 --deltas 0.5 1 1.5 2 3
    python benchmarks/surface_offset_bound.py chair_0001 --source points \\
        --deltas 1 1.5 2 3 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from surfaces_shared_meshes import shared_points

from kocc.implicit_surface import padded_bounds, point_spacing
from kocc.mesh_distances import compare_surfaces
from kocc.surfaces import mesh_from_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mesh", help="file stem of a shared mesh, e.g. chair_0001")
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--deltas", nargs="+", type=float, default=[1.0])
    parser.add_argument("--resolution", type=int, default=200)
    parser.add_argument("--padding", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--source",
        choices=("mesh", "points"),
        default="mesh",
        help="distance to the mesh (1,000,000 samples) or to the 2,048 input points "
        "alone (the union of balls: the exact target of a fit to the points)",
    )
    args = parser.parse_args()

    reference, points = shared_points(args.mesh, args.data_dir, args.seed)
    bounds = padded_bounds(points, args.padding)
    cell = (bounds[1] - bounds[0]) / (args.resolution - 1)
    start = time.process_time()
    if args.source == "mesh":
        dense, _ = trimesh.sample.sample_surface(reference, 1_000_000, seed=args.seed)
    else:
        dense = points
    axes = [np.linspace(bounds[0, d], bounds[1, d], args.resolution) for d in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    spacing = point_spacing(points)
    clip = max(5 * float(cell.max()), 3 * spacing)
    distance, _ = cKDTree(dense).query(grid, k=1, distance_upper_bound=clip)
    distance = np.minimum(distance, clip).reshape((args.resolution,) * 3)
    cpu = round(time.process_time() - start, 1)
    for delta in args.deltas:
        # the shell {d <= delta}: the level set of -d at -delta
        mesh = mesh_from_volume(
            -distance.astype(np.float32), -delta * float(cell.max()), bounds, cell
        )
        result = compare_surfaces(mesh, reference, n=30000, seed=args.seed)
        row = {
            "mesh": args.mesh,
            "source": args.source,
            "delta_cells": delta,
            "point_spacing_cells": round(spacing / float(cell.max()), 3),
            "resolution": args.resolution,
            "chamfer": result.chamfer,
            "hausdorff": result.hausdorff,
            "normal_consistency": result.normal_consistency,
            "watertight": bool(mesh.is_watertight),
            "distance_grid_cpu_seconds": cpu,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
