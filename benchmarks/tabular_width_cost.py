"""Training cost of one tabular OCSDF network per width (and per step
compilation), on a shared data set.

Builds the network of a tabular recipe (``--recipe``, default the shipped
``recipes/tabular_odds.yaml``, its values open to ``--set KEY=VALUE`` as in
``kocc benchmark``, e.g. ``--set seed=3``) for one ODDS/ADBench set: the rows
standardized, the recipe's scaling and prior (``auto``: the sparsity rule's
pick), its activation, first margin, λ, T, batch size, optimizer and rate, at
each width of ``--widths`` (as many layers as the recipe's ``model.widths``),
and times the same ``fit`` loop in alternating rounds, so that every variant
sees the same machine load. ``--xla`` picks the update's compilation:
``recipe`` (the recipe's ``training.jit_compile``, after ``--set``), ``off``,
``on``, or ``both`` (each width with TensorFlow's kernels and as one XLA program,
``OCSDF.compile(jit_compile=True)``). The JSON gives each variant's median
steps/s (``_harness.FitRate.in_fit``, the loop's steady rate), its rounds, and
its time per network relative to the first variant: the factor by which
``training.members`` networks of it cost more than as many of the first
(docs/tabular.md, "Seventh screen"; docs/performance.md). Variants are named by
their width, with ``+xla`` for the XLA update.

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_width_cost.py vowels \
        [--recipe recipes/tabular_odds.yaml] [--widths 64 128] [--steps 300] \
        [--rounds 5] [--xla recipe|off|on|both] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import FitRate, tabular_config, tabular_rows  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.tabular import streamed_dataset  # noqa: E402
from kocc.experiments.cli import add_overrides_arg  # noqa: E402
from kocc.training import compile_ocsdf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a kocc.datasets.tabular name, e.g. vowels")
    parser.add_argument("--recipe", default="recipes/tabular_odds.yaml")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=300, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--xla", choices=("recipe", "off", "on", "both"), default="recipe"
    )
    add_overrides_arg(parser)
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1 or min(args.widths) < 1:
        parser.error("--steps >= 2, --rounds >= 1, --widths >= 1")
    config = tabular_config(parser, args)
    settings, seed = config.ocsdf, config.seed
    compilations = {
        "recipe": (settings.jit_compile,),
        "off": (False,),
        "on": (True,),
        "both": (False, True),
    }[args.xla]
    depth = len(settings.widths)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    rows, domain, description = tabular_rows(config, args.dataset, seed)
    fits = {}
    for width in args.widths:
        for jit_compile in compilations:
            tf.keras.utils.set_random_seed(seed)
            backbone = lipschitz_mlp(
                rows.shape[1], widths=(width,) * depth, activation=settings.activation
            )
            model = compile_ocsdf(
                backbone,
                domain,
                margin=settings.margins[0],
                lam=settings.lam,
                nr_steps=settings.nr_steps,
                optimizer=settings.optimizer,
                learning_rate=settings.learning_rate,
                jit_compile=jit_compile,
                seed=seed,
            )
            batch = min(settings.batch_size, len(rows))
            data = streamed_dataset(rows, batch, seed=seed)
            FitRate(model, data, 20)  # traces the step and warms up
            fits[f"{width}+xla" if jit_compile else str(width)] = (model, data)
    rounds: dict[str, list[float]] = {name: [] for name in fits}
    for _ in range(args.rounds):
        for name, (model, data) in fits.items():
            rounds[name].append(FitRate(model, data, args.steps).in_fit)
    median = {name: float(np.median(values)) for name, values in rounds.items()}
    first = next(iter(fits))
    print(
        json.dumps(
            {
                "benchmark": "tabular_width_cost",
                **description,
                "recipe": args.recipe,
                "overrides": args.overrides,
                "seed": seed,
                "depth": depth,
                "steps_per_round": args.steps,
                "xla": args.xla,
                "steps_per_second": {n: round(v, 1) for n, v in median.items()},
                "rounds": {
                    n: [round(v, 1) for v in values] for n, values in rounds.items()
                },
                "time_per_network_vs_first": {
                    n: round(median[first] / v, 3) for n, v in median.items()
                },
                "cpu_count": os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
