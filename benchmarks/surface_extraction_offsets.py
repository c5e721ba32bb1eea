"""One OCSDF fit per shared mesh, meshed at several (global, local) level offsets.

Fits OCSDF exactly as ``kocc surface`` / :func:`~kocc.experiments.surface_pipeline.
run_surface` does with ``recipes/surface_modelnet.yaml`` (plus ``--set``
overrides, e.g. ``seed=1``): the same 2,048-point sample, network, training
and seed. Then meshes the fit with the recipe's ridge extraction at each
``--pairs G:L``: the global level lowered by G median nearest-neighbour
spacings of the points (``extraction.level_offset``; the shell that the ridge
needs closed, and the local level's floor) and the local level L spacings
outside the points (``extraction.local_offset``). Prints one JSON line per
mesh and pair: Chamfer (/ D²), Hausdorff (/ D), normal consistency (the
pipeline's 30,000 samples and seed), parts, watertightness, the grid points of
the ridge band, the fit's and the
extraction's CPU seconds and the load average. With the recipe's own pair
the line equals the pipeline's figures for that mesh and seed. The extraction
offsets of docs/surfaces.md ("The global level under the ridge extraction")
come from::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/surface_extraction_offsets.py --set seed=2 \\
        --only airplane torus --pairs 0.25:0.25 0.5:0.25 0.75:0.25
"""

from __future__ import annotations

import argparse
import json
import os
import time

import kocc  # noqa: F401  (selects tf-keras first)

# isort: split
from surfaces_shared_meshes import RECIPE, mesh_scores, select_meshes

from kocc.experiments.recipes import load_recipe_data
from kocc.experiments.surface_pipeline import (
    extract_with,
    fit_ocsdf,
    read_input,
    surface_recipe,
)
from kocc.implicit_surface import point_spacing


def offset_pair(text: str) -> tuple[float, float]:
    """``"G:L"`` as two non-negative floats."""
    try:
        global_offset, local_offset = (float(part) for part in text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected G:L, e.g. 0.5:0.25, got {text!r}"
        ) from err
    if not (global_offset >= 0 and local_offset >= 0):
        raise argparse.ArgumentTypeError(f"offsets must be >= 0, got {text!r}")
    return global_offset, local_offset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument("--only", nargs="*", default=None, help="mesh file stems")
    parser.add_argument(
        "--pairs",
        nargs="+",
        type=offset_pair,
        default=[(0.25, 0.25), (0.5, 0.25)],
        metavar="G:L",
        help="global:local level offsets, in point spacings",
    )
    args = parser.parse_args(argv)
    recipe = surface_recipe(load_recipe_data(args.recipe, args.overrides))
    extraction = recipe.extraction
    for path in select_meshes(args.data_dir, args.only):
        data = read_input(path, recipe)
        points = data["points"]
        start = time.process_time()
        surface = fit_ocsdf(points, recipe)  # the pipeline's own fit
        fit_cpu = time.process_time() - start
        spacing = point_spacing(surface.standardization.transform(points))
        for global_offset, local_offset in args.pairs:
            # the fit's level is the recipe's offset below the quantile
            level = surface.level - (global_offset - extraction.level_offset) * spacing
            start = time.process_time()
            mesh = extract_with(
                surface, extraction, level=level, local_offset=local_offset
            )
            extract_cpu = time.process_time() - start
            row = {
                "mesh": path.stem,
                "seed": recipe.seed,
                "level_offset": global_offset,
                "local_offset": local_offset,
                **mesh_scores(mesh, data["mesh"], recipe.seed),
                # grid points of the ridge band: 0 where the shell encloses
                # no interior (no ridge, the shell's sheets)
                "ridge_points": mesh.metadata["grid_evaluation"]["ridge_points"],
                "fit_cpu_seconds": round(fit_cpu, 1),
                "extract_cpu_seconds": round(extract_cpu, 1),
                "load_average": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
