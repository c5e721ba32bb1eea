"""Implicit surfaces on every shared mesh: OCSDF vs the distance-regression baseline.

For each mesh under ``$KOCC_DATA_DIR/meshes`` (or ``--data-dir``), runs
:func:`kocc.experiments.surface_pipeline.run_surface` with
``recipes/surface_modelnet.yaml``
(plus ``--set key=value`` overrides, e.g. the training budget) and prints one
JSON document: per mesh and method, Chamfer (/ D²) and Hausdorff (/ D) with D
the mesh's bounding-box diagonal, normal consistency, fit time and extraction
time at the recipe's resolution (200³). Results are also appended, mesh by mesh,
to ``--out/results.jsonl`` so that a long run can be followed and resumed
(``--resume`` skips meshes already there). ``--methods baseline`` fits only the
baseline (``run_surface``'s ``methods``: the same sampling, fit, extraction and
metrics, without OCSDF's fit, e.g. to measure the baseline at another budget);
``--methods ocsdf`` only OCSDF.

Run it single-threaded and niced on a shared machine, e.g.::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nice -n 10 \\
        python benchmarks/surfaces_shared_meshes.py --out runs/surfaces_bench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras first)
from kocc.datasets.paths import data_dir
from kocc.experiments.recipes import load_recipe_data
from kocc.experiments.surface_pipeline import (
    SURFACE_METHODS,
    run_surface,
    surface_recipe,
)
from kocc.mesh_distances import compare_surfaces
from kocc.meshes import MESH_EXTENSIONS, load_mesh, sample_surface

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "surface_modelnet.yaml"
KEYS = (
    "chamfer",
    "hausdorff",
    "normal_consistency",
    "fit_seconds",
    "extract_seconds",
    "fit_cpu_seconds",
    "extract_cpu_seconds",
    "load_average",
    "watertight",
    "components",
    "n_faces",
    "error",
)


def shared_meshes(root: Path) -> list[Path]:
    """Every mesh file under ``root/meshes``, sorted."""
    folder = root / "meshes"
    if not folder.is_dir():
        raise FileNotFoundError(f"no meshes/ folder in {str(root)!r}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in MESH_EXTENSIONS)


def shared_points(stem: str, directory: str | None, seed: int):
    """The shared mesh of file stem ``stem`` and 2,048 points sampled on it.

    ``directory``: the data directory (``None``: ``$KOCC_DATA_DIR``).
    """
    by_stem = {p.stem: p for p in shared_meshes(data_dir(directory))}
    if stem not in by_stem:
        raise SystemExit(f"unknown mesh {stem!r}; known: {sorted(by_stem)}")
    reference = load_mesh(by_stem[stem])
    return reference, sample_surface(reference, 2048, seed)


def select_meshes(directory: str | None, only: list[str] | None) -> list[Path]:
    """The shared meshes (``directory``: the data directory, ``None``:
    ``$KOCC_DATA_DIR``), or those of file stems ``only``, in that order.

    Raises:
        SystemExit: naming the unknown stems and the known ones.
    """
    paths = shared_meshes(data_dir(directory))
    if only is None:
        return paths
    by_stem = {p.stem: p for p in paths}
    unknown = [stem for stem in only if stem not in by_stem]
    if unknown:
        raise SystemExit(f"unknown mesh(es) {unknown}; known: {sorted(by_stem)}")
    return [by_stem[stem] for stem in only]


def mesh_scores(mesh, reference, seed: int) -> dict:
    """What the lever scripts report of a reconstructed ``mesh``.

    Chamfer (/ D²), Hausdorff (/ D) and normal consistency against
    ``reference`` (:func:`kocc.mesh_distances.compare_surfaces`, 30,000 samples
    a side, the pipeline's count), the number of connected parts and whether
    the mesh is watertight.
    """
    result = compare_surfaces(mesh, reference, n=30000, seed=seed)
    return {
        "chamfer": result.chamfer,
        "hausdorff": result.hausdorff,
        "normal_consistency": result.normal_consistency,
        "parts": len(mesh.split(only_watertight=False)),
        "watertight": bool(mesh.is_watertight),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument("--out", default="runs/surfaces_shared_meshes")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="mesh file stems to run, in this order (default: all, sorted)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=SURFACE_METHODS,
        default=list(SURFACE_METHODS),
        help="methods to fit (default: both)",
    )
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    config = load_recipe_data(args.recipe, args.overrides)
    recipe = surface_recipe(config)  # fail early on a bad override
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = {}
    if args.resume and log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done[row["mesh"]] = row
    elif log.exists():
        log.unlink()

    paths = select_meshes(args.data_dir, args.only)
    rows = []
    for path in paths:
        key = f"{path.parent.name}/{path.name}"
        if key in done:
            rows.append(done[key])
            continue
        run_dir = out / path.parent.name / path.stem
        metrics = run_surface(path, run_dir, config, methods=args.methods)
        row = {"mesh": key, "bbox_diagonal": metrics["bbox_diagonal"]}
        for method in ("ocsdf", "baseline"):
            if method in metrics:
                row[method] = {
                    k: metrics[method][k] for k in KEYS if k in metrics[method]
                }
        rows.append(row)
        with log.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), file=sys.stderr, flush=True)

    summary = {
        "recipe": str(args.recipe),
        "overrides": args.overrides,
        "methods": args.methods,
        "resolution": recipe.extraction.resolution,
        "ocsdf_budget": {
            "widths": recipe.model.widths,
            "activation": recipe.model.activation,
            "steps": recipe.training.steps,
            "batch_size": recipe.training.batch_size,
        },
        "baseline_budget": {
            "widths": recipe.baseline.widths,
            "steps": recipe.baseline.steps,
            "batch_size": recipe.baseline.batch_size,
        },
        "units": "chamfer / D^2, hausdorff / D; D = mesh bounding-box diagonal",
        "meshes": rows,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
