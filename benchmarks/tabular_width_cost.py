"""Training cost of one tabular OCSDF network per width, on a shared data set.

Builds the default recipe's network for one ODDS/ADBench set (the rows
standardized, the sparsity rule's scaling and prior, margin 0.2, λ = 3, T = 4,
batches of 256, RMSprop) at each width of ``--widths`` (``--depth`` layers),
and times the same ``fit`` loop in alternating rounds, so that every width sees
the same machine load. The JSON gives each width's median steps/s
(``_harness.FitRate.in_fit``, the loop's steady rate), its rounds, and each
width's time per network relative to the first width: the factor by which
``training.members`` networks of that width cost more than as many of the
first (docs/tabular.md, "Seventh screen").

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_width_cost.py vowels \
        [--widths 64 128] [--steps 300] [--rounds 5]
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

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.tabular import (  # noqa: E402
    fit_standardizer,
    load_tabular,
    scaled_rows,
)
from kocc.experiments.tabular_benchmark import (  # noqa: E402
    PRIOR_PADS,
    SparsityRule,
    rule_choice,
    streamed_dataset,
)
from kocc.tabular_prior import tabular_prior  # noqa: E402
from kocc.training import compile_ocsdf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a kocc.datasets.tabular name, e.g. vowels")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1 or args.depth < 1 or min(args.widths) < 1:
        parser.error("--steps >= 2, --rounds >= 1, --depth >= 1, --widths >= 1")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    x, _ = load_tabular(args.dataset)
    fit_standardizer(x).transform(x)
    kind, scaling, sparsity = rule_choice(x, "auto", "auto", SparsityRule(), args.seed)
    rows, _ = scaled_rows(x, x[:1], scaling)
    domain = tabular_prior(rows, kind, PRIOR_PADS[kind], 1.0)
    fits = {}
    for width in args.widths:
        tf.keras.utils.set_random_seed(args.seed)
        backbone = lipschitz_mlp(
            rows.shape[1], widths=(width,) * args.depth, activation="fullsort"
        )
        model = compile_ocsdf(
            backbone, domain, margin=0.2, lam=3.0, nr_steps=4, seed=args.seed
        )
        data = streamed_dataset(rows, min(256, len(rows)), seed=args.seed)
        FitRate(model, data, 20)  # traces the step and warms up
        fits[width] = (model, data)
    rounds: dict[int, list[float]] = {width: [] for width in fits}
    for _ in range(args.rounds):
        for width, (model, data) in fits.items():
            rounds[width].append(FitRate(model, data, args.steps).in_fit)
    median = {width: float(np.median(values)) for width, values in rounds.items()}
    first = args.widths[0]
    print(
        json.dumps(
            {
                "benchmark": "tabular_width_cost",
                "dataset": args.dataset,
                "rows": int(rows.shape[0]),
                "features": int(rows.shape[1]),
                "prior": kind,
                "scaling": scaling,
                "sparsity": round(float(sparsity), 4),
                "depth": args.depth,
                "steps_per_round": args.steps,
                "steps_per_second": {str(w): round(v, 1) for w, v in median.items()},
                "rounds": {
                    str(w): [round(v, 1) for v in values]
                    for w, values in rounds.items()
                },
                "time_per_network_vs_first_width": {
                    str(w): round(median[first] / v, 3) for w, v in median.items()
                },
                "cpu_count": os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
