"""Surface-extraction cost of a FullSort network vs a ReLU network of the same widths.

Times :func:`kocc.surfaces.evaluate_grid` (the network on every point of a
``resolution^3`` grid, in chunks; what :func:`kocc.surfaces.extract_mesh` does
before marching cubes) for ``3 -> widths -> 1`` networks: kocc's 1-Lipschitz
FullSort network (:func:`kocc.architectures.lipschitz_mlp`, inference mode)
and a plain ReLU MLP. Repeats alternate between the two; the JSON gives the
median wall-clock seconds of each and their ratio, and the median CPU seconds
of the process (user + system, all threads) and their ratio: on a machine
shared with other jobs the wall clock measures the share of the cores each
side got as much as its work, the CPU time measures the work.

    python benchmarks/extraction_speed.py [--resolution 200] [--widths 128 128 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.surfaces import evaluate_grid  # noqa: E402


def relu_mlp(widths) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Input((3,))]
    layers += [tf.keras.layers.Dense(w, activation="relu") for w in widths]
    layers.append(tf.keras.layers.Dense(1))
    return tf.keras.Sequential(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bounds = np.array([[-1.0] * 3, [1.0] * 3])
    networks = {
        "fullsort": lipschitz_mlp(3, args.widths, "fullsort", seed=0),
        "relu": relu_mlp(args.widths),
    }

    def score_fn(network):
        return lambda x: tf.reshape(network(x, training=False), [-1])

    evaluate_grid(score_fn(networks["fullsort"]), bounds, 8)  # trace the sort

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {name: [] for name in networks}
    cpu: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(args.repeats):
        for name, network in networks.items():
            start, start_cpu = time.perf_counter(), cpu_seconds()
            evaluate_grid(score_fn(network), bounds, args.resolution)
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    fullsort = float(np.median(seconds["fullsort"]))
    relu = float(np.median(seconds["relu"]))
    fullsort_cpu = float(np.median(cpu["fullsort"]))
    relu_cpu = float(np.median(cpu["relu"]))
    print(
        json.dumps(
            {
                "benchmark": "extraction_speed",
                "config": {
                    "resolution": args.resolution,
                    "widths": args.widths,
                    "repeats": args.repeats,
                },
                "fullsort_seconds": round(fullsort, 2),
                "relu_seconds": round(relu, 2),
                "ratio": round(fullsort / relu, 3),
                "fullsort_cpu_seconds": round(fullsort_cpu, 2),
                "relu_cpu_seconds": round(relu_cpu, 2),
                "cpu_ratio": round(fullsort_cpu / relu_cpu, 3),
                "load_average_before": round(load_before, 2),
                "cpu_count": os.cpu_count(),
                "load_average_after": round(os.getloadavg()[0], 2),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
