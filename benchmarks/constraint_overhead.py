"""Cost of the 1-Lipschitz constraint in OCSDF's training loop.

Trains, through the same ``OCSDF.fit`` loop (T = 4 Newton-Raphson steps, batch
256, RMSprop), a constrained network (:func:`kocc.architectures.lipschitz_mlp`:
orthogonal ``SpectralDense`` kernels, ``FrobeniusDense`` output) and an
unconstrained one of the same widths and activation (plain ``Dense`` layers),
for FullSort and GroupSort2 at each width. Rounds alternate between the two
networks so that both see the same machine load; the JSON gives the median
steps/s of each (the training loop's rate, ``_harness.FitRate.in_fit``: a
``fit`` call's fixed set-up and teardown costs are the same for both networks)
and the ratio unconstrained / constrained (the overhead).

    python benchmarks/constraint_overhead.py [--widths 128 512] [--depth 4]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import FitRate  # noqa: E402

from kocc.architectures import lipschitz_activation, lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import make_toy  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402
from kocc.training import repeated_batches  # noqa: E402


def unconstrained_mlp(widths, activation: str) -> tf.keras.Sequential:
    """``2 -> widths -> 1`` with plain ``Dense`` kernels and the same activation."""
    layers = [tf.keras.layers.Input((2,))]
    for width in widths:
        layers += [tf.keras.layers.Dense(width), lipschitz_activation(activation)]
    layers.append(tf.keras.layers.Dense(1))
    return tf.keras.Sequential(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--activations", nargs="+", default=["fullsort", "groupsort2"])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    x, _ = make_toy("two_moons", 4096, seed=0)
    data = repeated_batches(x.astype(np.float32), 256, seed=0)
    results = []
    for activation in args.activations:
        for width in args.widths:
            widths = (width,) * args.depth
            models = {
                "constrained": lipschitz_mlp(2, widths, activation, seed=0),
                "unconstrained": unconstrained_mlp(widths, activation),
            }
            trainers = {}
            for name, network in models.items():
                trainer = OCSDF(network, Ball(5.0, shape=(2,)), nr_steps=4)
                trainer.compile(tf.keras.optimizers.RMSprop(1e-3))
                trainer.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace
                trainers[name] = trainer
            rates: dict[str, list[float]] = {name: [] for name in trainers}
            for _ in range(args.rounds):
                for name, trainer in trainers.items():
                    rates[name].append(FitRate(trainer, data, args.steps).in_fit)
            constrained = float(np.median(rates["constrained"]))
            unconstrained = float(np.median(rates["unconstrained"]))
            results.append(
                {
                    "activation": activation,
                    "widths": list(widths),
                    "constrained_steps_per_second": round(constrained, 3),
                    "unconstrained_steps_per_second": round(unconstrained, 3),
                    "overhead_ratio": round(unconstrained / constrained, 3),
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "constraint_overhead",
                "config": {
                    "batch": 256,
                    "nr_steps": 4,
                    "steps_per_round": args.steps,
                    "rounds": args.rounds,
                },
                "results": results,
                "cpu_count": os.cpu_count(),
                "load_average_after": round(os.getloadavg()[0], 2),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
