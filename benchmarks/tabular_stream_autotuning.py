"""One tabular network's fit with the row stream's tf.data autotuning on and off.

Trains the network of a tabular recipe (``--recipe``, default the shipped
``recipes/tabular_odds.yaml``: its scaling and prior as the sparsity rule picks
them, width, activation, first margin, λ, T, batch, optimizer, rate, steps,
``training.jit_compile`` and seed, each open to ``--set KEY=VALUE`` as in
``kocc benchmark``; ``--set training.jit_compile=true`` for the XLA update of
the tables of docs/tabular.md) on one ODDS/ADBench set through the benchmark's
own path, :func:`kocc.experiments.tabular_benchmark.fit_on_batches` fed by
:func:`kocc.datasets.tabular.streamed_dataset`, as ``kocc benchmark`` trains
each member. Variant ``off`` is the stream as kocc builds it (autotuning off,
:func:`kocc.datasets.pipelines.without_autotuning`), ``on`` the same stream
with tf.data's autotuning switched back on (the pipeline before the change).
The two alternate, ``--rounds`` times each, every round a new network from the
same seed: the time is the whole call (build, XLA compilation, the steps, and
the end of ``fit``), what a member costs. The JSON gives the median seconds,
the rounds, the ratio on/off, and the largest score difference between the two
variants' networks (0: the switch does not change the training)::

    KOCC_DATA_DIR=../shared/data TF_NUM_INTRAOP_THREADS=1 \\
        TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/tabular_stream_autotuning.py cardio [--rounds 3] \\
        [--recipe recipes/tabular_odds.yaml] [--set training.jit_compile=true] \\
        [--set training.steps=3000] [--set seed=0]
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
from _harness import tabular_config, tabular_rows  # noqa: E402

from kocc.datasets.tabular import streamed_dataset  # noqa: E402
from kocc.experiments.cli import add_overrides_arg  # noqa: E402
from kocc.experiments.tabular_benchmark import (  # noqa: E402
    fit_on_batches,
)


def with_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning switched back on."""
    options = tf.data.Options()
    options.autotune.enabled = True
    return dataset.with_options(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a kocc.datasets.tabular name, e.g. cardio")
    parser.add_argument("--recipe", default="recipes/tabular_odds.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    add_overrides_arg(parser)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds >= 1")
    config = tabular_config(parser, args)
    settings, seed = config.ocsdf, config.seed
    rows, domain, description = tabular_rows(config, args.dataset, seed)
    batch = min(settings.batch_size, len(rows))
    pipelines = {
        "off": lambda: streamed_dataset(rows, batch, seed=seed),
        "on": lambda: with_autotuning(streamed_dataset(rows, batch, seed=seed)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    scores: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            model = fit_on_batches(
                pipeline(),
                rows.shape[1],
                settings,
                settings.margins[0],
                domain,
                seed,
            )
            seconds[name].append(time.perf_counter() - start)
            scores[name] = np.asarray(model.score_samples(rows))
            del model
            tf.keras.backend.clear_session()
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    print(
        json.dumps(
            {
                "benchmark": "tabular_stream_autotuning",
                **description,
                "steps": settings.steps,
                "jit_compile": settings.jit_compile,
                "seed": seed,
                "recipe": args.recipe,
                "overrides": args.overrides,
                "fit_seconds": {n: round(v, 2) for n, v in median.items()},
                "rounds": {
                    n: [round(v, 2) for v in values] for n, values in seconds.items()
                },
                "on_over_off": round(median["on"] / median["off"], 3),
                "max_score_difference": float(
                    np.abs(scores["on"] - scores["off"]).max()
                ),
                "cpu_count": os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
