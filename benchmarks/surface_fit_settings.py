"""Sphere and torus surfaces at the tests' budget: step and learning-rate schedule.

Fits :func:`kocc.surfaces.fit_point_cloud` on 2,048 points of a unit sphere and
of a torus (radii 1, 0.35), as ``tests/test_surfaces.py`` does (3 x 128
GroupSort2, 800 RMSprop steps of 256 points, meshed at 56^3), and prints one
JSON line per fit: Chamfer / D^2, Hausdorff / D, watertightness, fit seconds.

``--orthogonalization`` picks the training step (``retraction``, the default,
or ``chain_rule``); ``--constant-rate`` keeps the rate at ``learning_rate``
instead of fit_point_cloud's linear decay to
:data:`kocc.surfaces.FINAL_LEARNING_RATE_FRACTION` of it; ``--threads`` sets
TensorFlow's intra- and inter-op threads; ``--level-offset`` the extraction
level offset (:func:`kocc.implicit_surface.default_level`). The figures of
docs/surfaces.md ("Why the learning rate decays", run with
``--level-offset 0``) come from these runs.

    python benchmarks/surface_fit_settings.py --seeds 0 1 2 --threads 1 \
        --level-offset 0
    python benchmarks/surface_fit_settings.py --orthogonalization chain_rule \
        --constant-rate --level-offset 0
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import tensorflow as tf  # noqa: E402
import trimesh  # noqa: E402

import kocc.surfaces as surfaces  # noqa: E402
from kocc.mesh_distances import compare_surfaces  # noqa: E402

SHAPES = {
    "sphere": lambda: trimesh.creation.icosphere(5),
    "torus": lambda: trimesh.creation.torus(
        1.0, 0.35, major_sections=96, minor_sections=48
    ),
}
RECIPE = dict(widths=(128, 128, 128), activation="groupsort2", steps=800, epochs=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--orthogonalization",
        default="retraction",
        choices=("retraction", "chain_rule"),
    )
    parser.add_argument("--constant-rate", action="store_true")
    parser.add_argument(
        "--level-offset",
        type=float,
        default=0.25,
        help="extraction level offset in nearest-neighbour spacings (the "
        "tables of docs/surfaces.md before the offset default: 0)",
    )
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    train = surfaces.train_ocsdf

    def train_with_settings(*positional, **settings):
        if args.constant_rate:
            settings["final_learning_rate"] = settings["learning_rate"]
        return train(*positional, orthogonalization=args.orthogonalization, **settings)

    surfaces.train_ocsdf = train_with_settings  # fit_point_cloud's training call
    for seed in args.seeds:
        for name in args.shapes:
            mesh = SHAPES[name]()
            points, _ = trimesh.sample.sample_surface(mesh, 2048, seed=seed)
            start = time.perf_counter()
            surface = surfaces.fit_point_cloud(
                points, seed=seed, level_offset=args.level_offset, **RECIPE
            )
            fit_seconds = time.perf_counter() - start
            reconstruction = surfaces.extract_mesh(surface, resolution=56)
            result = compare_surfaces(reconstruction, mesh, n=30000)
            print(
                json.dumps(
                    {
                        "shape": name,
                        "seed": seed,
                        "threads": args.threads,
                        "orthogonalization": args.orthogonalization,
                        "rate": "constant" if args.constant_rate else "decaying",
                        "level_offset": args.level_offset,
                        "chamfer": result.chamfer,
                        "hausdorff": result.hausdorff,
                        "watertight": bool(reconstruction.is_watertight),
                        "fit_seconds": round(fit_seconds, 2),
                        "load_average": os.getloadavg()[0],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
