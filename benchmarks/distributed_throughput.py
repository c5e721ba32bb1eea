"""Training throughput of OCSDF under tf.distribute: 1 and 2 replicas.

The CPU is split into two logical devices; the same ``model.fit`` runs

* ``single``: no strategy (the default path of a single-device user);
* ``mirrored_1``: ``MirroredStrategy(["/cpu:0"])``, one replica;
* ``mirrored_2``: ``MirroredStrategy(["/cpu:0", "/cpu:1"])``, two replicas,

with a fixed batch *per replica* (the global batch grows with the replicas:
weak scaling). Logical CPU devices share the machine's cores, so two replicas
cannot run faster than one here: the figures show the strategy's overhead
(per-replica dispatch, gradient all-reduce, the cross-replica kernel write),
not a speed-up; on real devices (GPUs) the replicas compute in parallel.
``scaling_efficiency = samples/s(2 replicas) / (2 * samples/s(1 replica))``.

Rounds alternate between the configurations so that all see the same machine
load; the JSON reports medians over rounds.

    python benchmarks/distributed_throughput.py [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import TRAINING_ROUNDS, int_options  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import make_toy  # noqa: E402
from kocc.distribute import make_strategy, set_logical_cpus  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402
from kocc.training import repeated_batches  # noqa: E402


def main() -> None:
    args = int_options(
        __doc__, **TRAINING_ROUNDS, width=256, depth=3, batch=(256, "per replica")
    )

    set_logical_cpus(2)
    x, _ = make_toy("two_moons", 4096, 0.05, seed=0)
    configs = {
        "single": (None, 1),
        "mirrored_1": (["/cpu:0"], 1),
        "mirrored_2": (["/cpu:0", "/cpu:1"], 2),
    }
    runs = {}
    for name, (devices, replicas) in configs.items():
        strategy = make_strategy("mirrored", devices) if devices else None
        scope = strategy.scope() if strategy else tf.distribute.get_strategy().scope()
        with scope:
            model = OCSDF(
                lipschitz_mlp(2, widths=(args.width,) * args.depth, seed=0),
                Ball(5.0, shape=(2,)),
                nr_steps=args.nr_steps,
            )
            model.compile(optimizer=tf.keras.optimizers.RMSprop(1e-3))
        data = repeated_batches(x, args.batch * replicas, seed=0)
        model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace
        runs[name] = (model, data, replicas)

    seconds = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (model, data, _) in runs.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0)
            seconds[name].append(time.perf_counter() - start)

    results = {}
    for name, (_, _, replicas) in runs.items():
        median = float(np.median(seconds[name]))
        steps_per_second = args.steps / median
        results[name] = {
            "replicas": replicas,
            "global_batch": args.batch * replicas,
            "steps_per_second": steps_per_second,
            "samples_per_second": steps_per_second * args.batch * replicas,
            "round_seconds": seconds[name],
        }
    one = results["mirrored_1"]["samples_per_second"]
    two = results["mirrored_2"]["samples_per_second"]
    report = {
        "benchmark": "distributed_throughput",
        "network": f"2 -> {args.depth}x{args.width} FullSort -> 1",
        "batch_per_replica": args.batch,
        "nr_steps": args.nr_steps,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "results": results,
        "scaling_efficiency": two / (2 * one),
        "strategy_overhead_1_replica": results["single"]["steps_per_second"]
        / results["mirrored_1"]["steps_per_second"],
        "note": "two logical devices of one CPU share its cores: the figures "
        "show the strategy's overhead, not a speed-up",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
