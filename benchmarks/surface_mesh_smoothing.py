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

Example::

    python benchmarks/surface_mesh_smoothing.py --runs runs/s1a runs/s1b \\
        --iterations 0 10 40 --seed 1
    python benchmarks/surface_mesh_smoothing.py --runs runs/s3a runs/s3b \\
        --iterations 0 --seed 3 --reference
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras first)
from kocc.datasets.paths import data_dir
from kocc.mesh_distances import compare_surfaces
from kocc.meshes import load_mesh, trimesh

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--iterations", nargs="+", type=int, default=[0, 10])
    parser.add_argument("--methods", nargs="+", default=["ocsdf", "baseline"])
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
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
            if folder.name not in references:
                continue
            reference = load_mesh(references[folder.name])
            row = {"mesh": folder.name}
            # (name, mesh, smoothing counts): the reference is scored as it is
            scored = [("reference", reference, [0])] if args.reference else []
            for method in args.methods:
                path = folder / f"{method}.ply"
                if path.exists():
                    scored.append((method, load_mesh(path), args.iterations))
            for method, extracted, counts in scored:
                row[method] = {}
                for count in counts:
                    start = time.process_time()
                    mesh = smooth_mesh(extracted, count)
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
    print(json.dumps({"iterations": args.iterations, "meshes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
