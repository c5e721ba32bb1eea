"""Same budget, old step vs new step: SDF error, AUROC and time.

The "old" step is kocc's step before issue 12: ``orthogonalization=
"chain_rule"`` (one orthogonalization per step, differentiated) and deel-lip's
``FullSort`` (``tf.sort``). The "new" step is the default: retraction and
kocc's FullSort (:mod:`kocc.activations`). Both train the same networks from
the same seeds and data for the same number of steps:

* ``disk`` / ``annulus``: the SDF-accuracy configuration of
  ``tests/test_models.py`` (3x64 FullSort, RMSprop 2e-3, batch 256, T = 4;
  3,000 and 5,000 steps); mean ``|f - S - m|`` on a 100x100 grid of [-3, 3]^2;
* ``two_moons``: the main job's configuration until 2026-12-02
  (``recipes/toy2d_two_moons.yaml`` then: 3x256 FullSort, RMSprop 1e-3, ball of
  radius 5, 2,000 steps, 2,048 standardized points); AUROC
  of the normal test points against uniform anomalies farther than 0.3 from the
  data, and the number of connected components of {f > 0} on a 300x300 grid.

Prints one JSON object.

    python benchmarks/fixed_budget.py [--only disk annulus two_moons] [--steps old new]
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
from deel.lip.activations import FullSort as DeelFullSort  # noqa: E402
from scipy import ndimage  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import annulus, disk, far_uniform_points, make_toy  # noqa: E402
from kocc.metrics import certified_auroc  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402

MARGIN = 0.05


def network(widths, old: bool, seed: int = 0) -> tf.keras.Model:
    net = lipschitz_mlp(2, widths=widths, seed=seed)
    if old:  # deel-lip's FullSort (tf.sort) in place of kocc's
        layers = [
            DeelFullSort() if "full_sort" in layer.name else layer
            for layer in net.layers
        ]
        rebuilt = type(net)([tf.keras.layers.Input((2,)), *layers])
        return rebuilt
    return net


def train(x, widths, steps, lr, old: bool, seed: int = 0) -> tuple[OCSDF, float]:
    tf.keras.utils.set_random_seed(seed)
    model = OCSDF(
        network(widths, old, seed),
        Ball(5.0, shape=(2,)),
        margin=MARGIN,
        nr_steps=4,
        orthogonalization="chain_rule" if old else "retraction",
    )
    model.compile(tf.keras.optimizers.RMSprop(lr))
    data = (
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(len(x), seed=seed)
        .repeat()
        .batch(256, drop_remainder=True)
    )
    start = time.perf_counter()
    model.fit(data, epochs=steps // 100, steps_per_epoch=100, verbose=0)
    return model, time.perf_counter() - start


def grid(n: int, span: float = 3.0) -> np.ndarray:
    g = np.linspace(-span, span, n, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["disk", "annulus", "two_moons"])
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=("old", "new"),
        default=["old", "new"],
        help="which steps to train (the old step's figures do not move when "
        "only the new step changes)",
    )
    args = parser.parse_args()
    results: list[dict] = []
    for task in args.only:
        for old in [step == "old" for step in args.steps]:
            if results:  # one line per finished run, in case the job is stopped
                print(json.dumps(results[-1]), flush=True)
            step = "old" if old else "new"
            if task in ("disk", "annulus"):
                x, sdf = (
                    disk(4096, seed=0)
                    if task == "disk"
                    else annulus(4096, inner=1.0, outer=2.0, seed=1)
                )
                steps = 3000 if task == "disk" else 5000
                model, seconds = train(x, (64,) * 3, steps, 2e-3, old)
                points = grid(100)
                err = np.abs(model.score_samples(points) - sdf(points) - MARGIN)
                results.append(
                    {
                        "task": task,
                        "step": step,
                        "steps": steps,
                        "mean_abs_sdf_error": round(float(err.mean()), 4),
                        "train_seconds": round(seconds, 1),
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                )
            else:
                x, scaler = make_toy("two_moons", 2048, 0.05, seed=0)
                test, test_scaler = make_toy("two_moons", 1024, 0.05, seed=1)
                test = scaler.transform(test_scaler.inverse_transform(test))
                anomalies = far_uniform_points(x, 2048, -3.0, 3.0, 0.3, seed=2)
                model, seconds = train(x, (256,) * 3, 2000, 1e-3, old)
                auroc = certified_auroc(
                    model.score_samples(test), model.score_samples(anomalies), 0.0
                )
                positive = model.score_samples(grid(300)).reshape(300, 300) > 0
                results.append(
                    {
                        "task": task,
                        "step": step,
                        "steps": 2000,
                        "auroc": round(float(auroc), 4),
                        "positive_components_300x300": int(ndimage.label(positive)[1]),
                        "train_seconds": round(seconds, 1),
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                )
    print(
        json.dumps(
            {
                "benchmark": "fixed_budget",
                "results": results,
                "load_average_after": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
