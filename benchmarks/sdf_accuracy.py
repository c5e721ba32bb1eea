"""How well OCSDF learns an analytic signed distance (paper Theorem 1).

Trains on a uniform disk (radius 1) and an annulus (radii 1 and 2), 4,096
points each, with the configuration of tests/test_models.py, and prints JSON:
the mean |f(x) - S(x) - margin| over a 100x100 grid of [-3, 3]^2, the same
error per ring of radius (inside the support, f saturates near the margin
because uniform negatives that fall inside the support are only partly moved
out by Algorithm 1), the largest gradient norm over 10,000 domain points, and
the training time.

    python benchmarks/sdf_accuracy.py [--steps 3000 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import annulus, disk  # noqa: E402
from kocc.diagnostics import local_lipschitz  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402
from kocc.training import repeated_batches  # noqa: E402

MARGIN = 0.05


def run(name, x, sdf, steps, width, lr):
    tf.keras.utils.set_random_seed(0)
    domain = Ball(5.0, shape=(2,))
    model = OCSDF(lipschitz_mlp(2, widths=(width,) * 3, seed=0), domain, margin=MARGIN)
    model.compile(tf.keras.optimizers.RMSprop(lr))
    ds = repeated_batches(x, 256, seed=0)
    start = time.perf_counter()
    model.fit(ds, epochs=steps // 100, steps_per_epoch=100, verbose=0)
    seconds = time.perf_counter() - start
    g = np.linspace(-3, 3, 100, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    err = np.abs(model.score_samples(grid) - sdf(grid) - MARGIN)
    radius = np.linalg.norm(grid, axis=1)
    edges = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.25]
    rings = {
        f"{a}-{b}": round(float(err[(radius >= a) & (radius < b)].mean()), 4)
        for a, b in zip(edges, edges[1:], strict=False)
    }
    lip = local_lipschitz(model, domain.sample(10000, seed=123))
    return {
        "shape": name,
        "steps": steps,
        "widths": [width] * 3,
        "learning_rate": lr,
        "mean_abs_error": round(float(err.mean()), 4),
        "mean_abs_error_by_radius": rings,
        "max_grad_norm_10k_domain_points": round(float(lip), 5),
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs=2, default=[3000, 5000])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    x_disk, sdf_disk = disk(4096, seed=0)
    x_ann, sdf_ann = annulus(4096, 1.0, 2.0, seed=1)
    results = [
        run("disk", x_disk, sdf_disk, args.steps[0], args.width, args.lr),
        run("annulus", x_ann, sdf_ann, args.steps[1], args.width, args.lr),
    ]
    print(json.dumps({"benchmark": "sdf_accuracy", "results": results}))


if __name__ == "__main__":
    main()
