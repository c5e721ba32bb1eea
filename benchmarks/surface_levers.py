"""One shared mesh, one OCSDF setting, several extraction levels: the surface levers.

Samples 2,048 points on a mesh of ``$KOCC_DATA_DIR/meshes`` (by file stem),
fits :func:`kocc.surfaces.fit_point_cloud` with the given network, budget and
margin, then meshes the fit at each ``--offsets`` value (the level offset of
:func:`kocc.implicit_surface.default_level`, in median nearest-neighbour
spacings) and prints one JSON line per level: Chamfer / D^2, Hausdorff / D,
normal consistency, connected parts, watertightness, fit and extraction wall
and CPU seconds, the load average. ``--render PNG`` writes the reference and
every level's mesh side by side. The lever table of docs/surfaces.md ("What
the surfaces need") comes from these runs, e.g.::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/surface_levers.py chair_0001 --widths 128 128 128 \\
        --steps 1000 --offsets 0
    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/surface_levers.py torus --steps 3000 \\
        --offsets 0 0.2 0.3 0.5 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

from surfaces_shared_meshes import mesh_scores, shared_points  # noqa: E402

from kocc.implicit_surface import point_spacing  # noqa: E402
from kocc.meshes import (  # noqa: E402
    render_meshes,
    write_mesh,
)
from kocc.surfaces import (  # noqa: E402
    evaluate_grid,
    extract_mesh,
    fit_point_cloud,
    mesh_from_volume,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mesh", help="file stem of a shared mesh, e.g. chair_0001")
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--widths", nargs="+", type=int, default=[128] * 8)
    parser.add_argument("--activation", default="groupsort2")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--lam", type=float, default=100.0)
    parser.add_argument("--nr-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--offsets", nargs="+", type=float, default=[0.25])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render", default=None, metavar="PNG")
    parser.add_argument(
        "--smoothing",
        nargs="+",
        type=float,
        default=None,
        help="Gaussian sigmas (grid cells) applied to the dense grid of f before "
        "marching cubes; the level is then the quantile of the smoothed grid "
        "interpolated at the points, minus the offset",
    )
    parser.add_argument(
        "--save-meshes", default=None, metavar="DIR", help="write each level's .ply"
    )
    args = parser.parse_args()

    reference, points = shared_points(args.mesh, args.data_dir, args.seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    surface = fit_point_cloud(
        points,
        widths=args.widths,
        activation=args.activation,
        steps=args.steps,
        margin=args.margin,
        lam=args.lam,
        nr_steps=args.nr_steps,
        batch_size=args.batch_size,
        level_offset=0.0,
        seed=args.seed,
    )
    fit = {
        "fit_seconds": round(time.perf_counter() - start, 1),
        "fit_cpu_seconds": round(time.process_time() - start_cpu, 1),
    }
    # the fit's level (offset 0) minus c spacings: what fit_point_cloud's
    # default_level gives with level_offset=c, from the same scores
    spacing = point_spacing(surface.standardization.transform(points))
    panels = [("reference", reference)]
    if args.smoothing is not None:
        from scipy.ndimage import gaussian_filter, map_coordinates

        low, high = surface.bounds
        cell = (high - low) / (args.resolution - 1)
        start, start_cpu = time.perf_counter(), time.process_time()
        dense = evaluate_grid(surface.score_fn(), surface.bounds, args.resolution)
        grid_time = (time.perf_counter() - start, time.process_time() - start_cpu)
        at_points = ((points - low) / cell).T
    settings = [(offset, None) for offset in args.offsets]
    if args.smoothing is not None:
        settings = [(o, s) for s in args.smoothing for o in args.offsets]
    for offset, sigma in settings:
        start, start_cpu = time.perf_counter(), time.process_time()
        if sigma is None:
            level = surface.level - offset * spacing
            mesh = extract_mesh(surface, args.resolution, level=level)
        else:
            volume = gaussian_filter(dense, sigma, mode="nearest") if sigma else dense
            scores = map_coordinates(volume, at_points, order=1)
            level = float(np.quantile(scores, 0.01)) - offset * spacing
            mesh = mesh_from_volume(volume, level, surface.bounds, cell)
        extract = {
            "extract_seconds": round(time.perf_counter() - start, 1),
            "extract_cpu_seconds": round(time.process_time() - start_cpu, 1),
        }
        if sigma is not None:  # plus the dense grid's evaluation, done once
            extract["dense_grid_seconds"] = round(grid_time[0], 1)
            extract["dense_grid_cpu_seconds"] = round(grid_time[1], 1)
        row = {
            "mesh": args.mesh,
            "widths": args.widths,
            "activation": args.activation,
            "steps": args.steps,
            "margin": args.margin,
            "lam": args.lam,
            "nr_steps": args.nr_steps,
            "batch_size": args.batch_size,
            "level_offset": offset,
            "smoothing": sigma,
            "resolution": args.resolution,
            "seed": args.seed,
            **mesh_scores(mesh, reference, args.seed),
            # distinct marching-cubes vertices at one point (level through a
            # grid corner, up to float32 rounding)
            "coincident_vertices": len(mesh.vertices)
            - len(np.unique(mesh.vertices, axis=0)),
            **fit,
            **extract,
            "load_average": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)
        label = f"offset{offset:g}" + ("" if sigma is None else f"_sigma{sigma:g}")
        panels.append((label, mesh))
        if args.save_meshes:
            write_mesh(mesh, f"{args.save_meshes}/{args.mesh}_{label}.ply")
    if args.render:
        render_meshes(panels, args.render, samples=200000, pixels=256, seed=0)


if __name__ == "__main__":
    main()
