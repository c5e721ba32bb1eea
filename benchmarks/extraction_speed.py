"""Surface-extraction cost of a FullSort network vs a ReLU network of the same widths.

Two comparisons, one JSON line:

* ``extract_mesh``: the whole path a user runs (grid evaluation + marching
  cubes) on *fitted* surfaces, so that the level set is realistic: OCSDF
  (:func:`kocc.surfaces.fit_point_cloud`, ``3 -> widths -> 1`` FullSort) with
  the default Lipschitz-certified coarse-to-fine evaluation
  (``fullsort_pruned``) and with every grid point evaluated
  (``fullsort_dense``, ``lipschitz_pruning=False``), against the
  distance-regression baseline with a ReLU MLP of the same widths
  (:func:`kocc.baselines.distance_regression.fit_distance_regression`), dense
  (``relu_dense``: no pruning, the fastest a ReLU network extracts here) and
  with its default path (``relu_default``: its product-of-spectral-norms bound
  is proven, so it is pruned too, with a loose bound);
* ``evaluate_grid`` alone (every grid point, no marching cubes) for the same two
  networks: the per-point cost.

The point cloud: 2,048 points sampled on ``$KOCC_DATA_DIR/meshes/trimesh_models/
torus.STL`` (a unit-sphere sample if ``KOCC_DATA_DIR`` is unset). Repeats
alternate between the sides; the JSON gives per side the median wall-clock
seconds and the median CPU seconds of the process (user + system, all
threads), their ratios to ``relu_dense``, and the network evaluations as a
fraction of the ``resolution^3`` grid. On a machine shared with other jobs the
wall clock measures the share of the cores each side got as much as its work;
the CPU time measures the work. A warm-up extraction of each side (at the
benchmark resolution, not timed) compiles the XLA sort for the chunk shapes.

    python benchmarks/extraction_speed.py [--resolution 200] [--widths 128 128 128]
        [--repeats 3] [--fit-steps N]

By default each network is fitted with its function's own default number of
steps (6,000 for ``fit_point_cloud``, 4,000 for ``fit_distance_regression``):
the networks a user gets. ``--fit-steps N`` fits both for N steps (the pruned
extraction's share of the grid grows when f is a poorer distance estimate,
e.g. 33 % after 500 steps against 20 % after 2,000: docs/performance.md).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import trimesh  # noqa: E402

from kocc.baselines.distance_regression import fit_distance_regression  # noqa: E402
from kocc.meshes import load_mesh, sample_surface  # noqa: E402
from kocc.surfaces import evaluate_grid, extract_mesh, fit_point_cloud  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def default_steps(fit) -> int:
    """The default of ``fit``'s ``steps`` argument."""
    return inspect.signature(fit).parameters["steps"].default


def point_cloud() -> tuple[np.ndarray, str]:
    data = os.environ.get("KOCC_DATA_DIR")
    if data:
        path = Path(data) / "meshes" / "trimesh_models" / "torus.STL"
        return sample_surface(load_mesh(path), 2048, seed=0), "torus.STL"
    sphere = trimesh.creation.icosphere(5)
    return sample_surface(sphere, 2048, seed=0), "unit sphere"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fit-steps",
        type=int,
        default=None,
        help="steps of both fits (default: each function's own default)",
    )
    parser.add_argument(
        "--no-grid", action="store_true", help="skip the evaluate_grid-only sides"
    )
    args = parser.parse_args()
    points, source = point_cloud()
    steps = {} if args.fit_steps is None else {"steps": args.fit_steps}
    start = time.perf_counter()
    # FullSort and the paper's level, as measured (not fit_point_cloud's defaults)
    ocsdf = fit_point_cloud(
        points,
        widths=args.widths,
        activation="fullsort",
        level_offset=0.0,
        seed=0,
        **steps,
    )
    ocsdf_fit = time.perf_counter() - start
    start = time.perf_counter()
    relu = fit_distance_regression(points, widths=args.widths, seed=0, **steps)
    relu_fit = time.perf_counter() - start
    res = args.resolution

    def extraction(surface, pruning):
        def run():
            mesh = extract_mesh(surface, res, lipschitz_pruning=pruning)
            return mesh.metadata["grid_evaluation"], len(mesh.faces)

        return run

    def grid(surface):
        def run():
            evaluate_grid(surface.score_fn(), surface.bounds, res)
            return {"evaluated_points": res**3}, None

        return run

    sides = {
        "fullsort_pruned": extraction(ocsdf, True),
        "fullsort_dense": extraction(ocsdf, False),
        "relu_dense": extraction(relu, False),
        "relu_default": extraction(relu, True),
    }
    if not args.no_grid:
        sides["fullsort_grid_only"] = grid(ocsdf)
        sides["relu_grid_only"] = grid(relu)
    info = {name: run() for name, run in sides.items()}  # warm-up (XLA shapes)
    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, run in sides.items():
            start, start_cpu = time.perf_counter(), cpu_seconds()
            run()
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    wall = {name: float(np.median(v)) for name, v in seconds.items()}
    work = {name: float(np.median(v)) for name, v in cpu.items()}
    results = {}
    for name in sides:
        stats, faces = info[name]
        results[name] = {
            "seconds": round(wall[name], 2),
            "cpu_seconds": round(work[name], 2),
            "ratio_to_relu_dense": round(wall[name] / wall["relu_dense"], 3),
            "cpu_ratio_to_relu_dense": round(work[name] / work["relu_dense"], 3),
            "evaluated_fraction": round(stats["evaluated_points"] / res**3, 4),
            "rounds_seconds": [round(s, 2) for s in seconds[name]],
        }
        if faces is not None:
            results[name]["faces"] = faces
            results[name]["lipschitz_bound"] = stats["lipschitz_bound"]
    if not args.no_grid:
        results["grid_only_ratio"] = round(
            wall["fullsort_grid_only"] / wall["relu_grid_only"], 3
        )
        results["grid_only_cpu_ratio"] = round(
            work["fullsort_grid_only"] / work["relu_grid_only"], 3
        )
    print(
        json.dumps(
            {
                "benchmark": "extraction_speed",
                "config": {
                    "resolution": res,
                    "widths": args.widths,
                    "repeats": args.repeats,
                    "fit_steps": {
                        "ocsdf": args.fit_steps or default_steps(fit_point_cloud),
                        "relu": args.fit_steps
                        or default_steps(fit_distance_regression),
                    },
                    "points": source,
                    "ocsdf_fit_seconds": round(ocsdf_fit, 1),
                    "relu_fit_seconds": round(relu_fit, 1),
                },
                **results,
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
