"""A run's member networks on one compiled model (OCSDF.restart) or each built anew.

One run of a tabular recipe (``--recipe``, default the shipped
``recipes/tabular_odds.yaml``, its values open to ``--set KEY=VALUE`` as in
``kocc benchmark``: ``training.members``, ``training.steps``,
``training.jit_compile``, ``seed``) on one ODDS/ADBench set trains
``training.members`` networks (seeds ``1000 * seed + k``) through the
benchmark's own :func:`kocc.experiments.tabular_benchmark.train_ocsdf`, the
rows, prior, scaling and first margin as ``kocc benchmark`` picks them. Variant
``new`` builds, traces and compiles a model per network and clears the Keras
session after each (the benchmark before the change); ``restart`` trains them
all on the first network's compiled model (:meth:`kocc.models.OCSDF.restart`,
what ``kocc benchmark`` does now). The two alternate, ``--rounds`` times each:
the time is the whole run's members, training and scoring. The JSON gives the
median seconds, the rounds, the ratio new/restart, and the largest difference
between the two variants' member scores (0.0: the same networks to the bit)::

    KOCC_DATA_DIR=../shared/data TF_NUM_INTRAOP_THREADS=1 \\
        TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/tabular_member_reuse.py cardio [--rounds 2] \\
        [--set training.jit_compile=true] [--set training.members=5]
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

from kocc.experiments.cli import add_overrides_arg  # noqa: E402
from kocc.experiments.tabular_benchmark import (  # noqa: E402
    member_seeds,
    train_ocsdf,
)


def members_scores(rows, settings, domain, seed: int, restart: bool) -> np.ndarray:
    """The scores of a run's members on ``rows``, one row per member."""
    scores, model = [], None
    for member_seed in member_seeds(seed, settings.members):
        reuse = model if restart else None
        model = train_ocsdf(
            rows, settings, settings.margins[0], domain, member_seed, model=reuse
        )
        scores.append(np.asarray(model.score_samples(rows)).reshape(-1))
        if not restart:
            del model
            model = None
            tf.keras.backend.clear_session()
    del model
    tf.keras.backend.clear_session()
    return np.stack(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a kocc.datasets.tabular name, e.g. cardio")
    parser.add_argument("--recipe", default="recipes/tabular_odds.yaml")
    parser.add_argument("--rounds", type=int, default=2)
    add_overrides_arg(parser)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds >= 1")
    config = tabular_config(parser, args)
    if config.ocsdf.members < 2:
        parser.error("training.members >= 2: one network has nothing to reuse")
    settings, seed = config.ocsdf, config.seed
    rows, domain, description = tabular_rows(config, args.dataset, seed)
    seconds: dict[str, list[float]] = {"new": [], "restart": []}
    scores: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name in seconds:
            start = time.perf_counter()
            scores[name] = members_scores(
                rows, settings, domain, seed, restart=name == "restart"
            )
            seconds[name].append(time.perf_counter() - start)
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    print(
        json.dumps(
            {
                "benchmark": "tabular_member_reuse",
                **description,
                "members": settings.members,
                "steps": settings.steps,
                "jit_compile": settings.jit_compile,
                "seed": seed,
                "recipe": args.recipe,
                "overrides": args.overrides,
                "run_seconds": {n: round(v, 2) for n, v in median.items()},
                "rounds": {
                    n: [round(v, 2) for v in values] for n, values in seconds.items()
                },
                "new_over_restart": round(median["new"] / median["restart"], 3),
                "max_score_difference": float(
                    np.abs(scores["new"] - scores["restart"]).max()
                ),
                "cpu_count": os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
