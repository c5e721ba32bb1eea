"""Normal consistency of an ensemble: the mean of OCSDF fits with different seeds.

Samples 2,048 points on a shared mesh (file stem; the points of seed 0, as
``benchmarks/surface_levers.py``), fits :func:`kocc.surfaces.fit_point_cloud`
at the defaults (``--steps`` updates) once per ``--seeds`` value (the seed of
the initialization, the shuffling and the negatives), evaluates each fit on the
dense 200^3 grid and meshes, at the default level rule (1st percentile of the
scores over the points minus ``offset`` median nearest-neighbour spacings),
every single fit and the mean of the fits. The mean of 1-Lipschitz functions is
1-Lipschitz, so the ensemble is still an OCSDF score. Prints one JSON line per
mesh and offset, e.g.::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/surface_ensemble.py chair_0001 --steps 3000 --seeds 0 1
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

from kocc.implicit_surface import IsotropicStandardization, point_spacing  # noqa: E402
from kocc.surfaces import evaluate_grid, fit_point_cloud, mesh_from_volume  # noqa: E402

RESOLUTION = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mesh", help="file stem of a shared mesh, e.g. chair_0001")
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--offsets", nargs="+", type=float, default=[0.0, 0.25])
    args = parser.parse_args()

    reference, points = shared_points(args.mesh, args.data_dir, 0)
    grids, scores, fit_cpu = [], [], []
    for seed in args.seeds:
        start = time.process_time()
        surface = fit_point_cloud(points, steps=args.steps, level_offset=0.0, seed=seed)
        fit_cpu.append(round(time.process_time() - start, 1))
        scores.append(surface.score(points))
        grids.append(evaluate_grid(surface.score_fn(), surface.bounds, RESOLUTION))
    bounds = surface.bounds
    cell = (bounds[1] - bounds[0]) / (RESOLUTION - 1)
    spacing = point_spacing(IsotropicStandardization.fit(points).transform(points))
    members = [
        (f"seed {seed}", grid, score)
        for seed, grid, score in zip(args.seeds, grids, scores, strict=True)
    ]
    members.append(("mean", np.mean(grids, axis=0), np.mean(scores, axis=0)))
    for name, grid, score in members:
        for offset in args.offsets:
            level = float(np.quantile(score, 0.01)) - offset * spacing
            mesh = mesh_from_volume(grid.astype(np.float32), level, bounds, cell)
            row = {
                "mesh": args.mesh,
                "steps": args.steps,
                "fit": name,
                "level_offset": offset,
                **mesh_scores(mesh, reference, 0),
                "fit_cpu_seconds": fit_cpu,
                "load_average": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
