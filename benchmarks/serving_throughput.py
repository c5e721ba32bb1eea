"""Serving throughput: the certified SavedModel vs a plain Keras network.

The exported model (kocc.export.save_for_serving, loaded back with
tf.saved_model.load) returns score, anomaly_score, certified_radius, is_normal
and valid for a batch of 10,000 inputs. The baseline is an unconstrained
tf.keras network of the same shape (Dense layers and the same FullSort
activations, called in a tf.function) returning the scores only. Target:
exported >= 0.9x baseline.

Calls alternate between the two (A, B, A, B, ...) so that CPU contention from
other processes hits both alike; the JSON reports the median and the best
per-call time of each and their ratios. For context it also times a ReLU network
of the same widths (cheaper activation, so not the same network).

    python benchmarks/serving_throughput.py [--batch 10000] [--repeats 30]
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
from deel.lip.activations import FullSort  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.export import SIGNATURE_KEY, save_for_serving  # noqa: E402


def plain_network(input_dim: int, widths: list[int], relu: bool = False):
    """An unconstrained Keras network of the given shape."""
    layers = [tf.keras.layers.Input((input_dim,))]
    for width in widths:
        layers.append(tf.keras.layers.Dense(width, activation="relu" if relu else None))
        if not relu:
            layers.append(FullSort())
    layers.append(tf.keras.layers.Dense(1))
    return tf.keras.Sequential(layers)


def compiled_call(network, input_dim: int):
    spec = tf.TensorSpec((None, input_dim), tf.float32)
    return tf.function(lambda x: network(x, training=False), input_signature=[spec])


def interleaved_times(fns: dict, x: tf.Tensor, repeats: int, warmup: int) -> dict:
    """Seconds per call of each function, calls interleaved round-robin."""
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn(x)
            _ = [t.numpy() for t in tf.nest.flatten(out)]  # wait for the result
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def main() -> None:
    args = int_options(
        __doc__, batch=10_000, input_dim=2, width=512, depth=4, repeats=30, warmup=3
    )

    widths = [args.width] * args.depth
    x = tf.constant(
        np.random.default_rng(0).normal(size=(args.batch, args.input_dim)),
        tf.float32,
    )
    network = lipschitz_mlp(args.input_dim, widths, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        metadata = save_for_serving(network, os.path.join(tmp, "served"))
        served = tf.saved_model.load(os.path.join(tmp, "served"))
        signature = served.signatures[SIGNATURE_KEY]
        fns = {
            "exported": lambda batch: signature(inputs=batch),
            "plain_keras": compiled_call(
                plain_network(args.input_dim, widths), args.input_dim
            ),
            "plain_keras_relu": compiled_call(
                plain_network(args.input_dim, widths, relu=True), args.input_dim
            ),
        }
        times = interleaved_times(fns, x, args.repeats, args.warmup)

    def throughput(name: str, stat) -> float:
        return args.batch / float(stat(times[name]))

    report = {
        "benchmark": "serving_throughput",
        "config": {
            "batch": args.batch,
            "input_dim": args.input_dim,
            "widths": widths,
            "activation": "fullsort",
            "repeats": args.repeats,
        },
        "samples_per_second": {
            name: {
                "median": round(throughput(name, np.median), 1),
                "best": round(throughput(name, np.min), 1),
            }
            for name in times
        },
        "ratio_exported_vs_plain_keras": {
            "median": round(
                throughput("exported", np.median)
                / throughput("plain_keras", np.median),
                3,
            ),
            "best": round(
                throughput("exported", np.min) / throughput("plain_keras", np.min), 3
            ),
        },
        "target_ratio": 0.9,
        "lipschitz_bound": metadata.lipschitz_bound,
        "threads": {
            "intra_op": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
            "inter_op": os.environ.get("TF_NUM_INTEROP_THREADS", "default"),
        },
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
