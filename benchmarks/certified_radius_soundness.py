"""Certified-radius soundness of a served model: attacks inside and outside the radius.

Trains ``kocc.OneClassSDF`` on standardized two moons, exports it
(``save_for_serving``, threshold = the estimator's contamination quantile),
loads the SavedModel back and runs :func:`kocc.serving.audit_certified_radii`
on probe points (training points and uniform points of the box around them):
PGD on the decision inside ``fraction x certified_radius`` plus random
directions. Below ``fraction = 1`` a flip would be a soundness bug; above it,
the flips show how tight the radius is for this model. A linear network with
a unit-norm kernel (exact radius) is the control that the attacker finds the
flips just outside the radius.

    python benchmarks/certified_radius_soundness.py [--epochs 30] [--probe 2000]
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import int_options  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

from kocc import OneClassSDF  # noqa: E402
from kocc.export import save_for_serving  # noqa: E402
from kocc.serving import ServedModel, audit_certified_radii  # noqa: E402

FRACTIONS = (0.5, 0.9, 0.99, 1.01, 1.5, 2.0, 4.0)


def main() -> None:
    args = int_options(
        __doc__, epochs=30, probe=2000, steps=20, random_directions=4, seed=0
    )

    x, _ = make_moons(1000, noise=0.05, random_state=args.seed)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rng = np.random.default_rng(args.seed + 1)
    half = args.probe // 2
    low, high = x.min(0) - 1.0, x.max(0) + 1.0
    probe = np.concatenate(
        [x[rng.choice(len(x), half)], rng.uniform(low, high, (args.probe - half, 2))]
    ).astype(np.float32)

    start = time.perf_counter()
    estimator = OneClassSDF(epochs=args.epochs, random_state=args.seed).fit(x)
    fit_seconds = time.perf_counter() - start
    linear = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    linear.layers[0].kernel.assign([[0.6], [-0.8]])

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        estimator.export(os.path.join(tmp, "ocsdf"))
        save_for_serving(linear, os.path.join(tmp, "linear"))
        for name in ("ocsdf", "linear"):
            model = ServedModel.load(os.path.join(tmp, name))
            results[name] = [
                audit_certified_radii(
                    model,
                    probe,
                    fraction=f,
                    steps=args.steps,
                    random_directions=args.random_directions,
                    seed=args.seed,
                )
                for f in FRACTIONS
            ]
    print(
        json.dumps(
            {
                "benchmark": "certified_radius_soundness",
                "data": "make_moons(1000, noise=0.05), standardized",
                "estimator": estimator.get_params(),
                "fit_seconds": fit_seconds,
                "probe": {"training_points": half, "uniform_in_box": args.probe - half},
                "results": results,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
