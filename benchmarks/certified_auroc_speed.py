"""Cost of kocc.metrics.certified_auroc against one sklearn roc_auc_score call.

The issue's budget: for 10^6 scores and 8 radii, certified_auroc (all radii at
once) must cost at most 2x one ``roc_auc_score`` call on the same scores. Both are
timed as the best of ``--repeats`` runs (so one-off cache or scheduler effects do
not count). Prints one JSON object.

Usage::

    python benchmarks/certified_auroc_speed.py --n 1000000 --radii 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from kocc.metrics import certified_auroc


def best_time(function, repeats: int) -> tuple[float, object]:
    """Smallest wall-clock time of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="total scores")
    parser.add_argument("--radii", type=int, default=8, help="number of radii")
    parser.add_argument("--anomaly-fraction", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    n_anomalous = int(round(args.n * args.anomaly_fraction))
    n_normal = args.n - n_anomalous
    # float32 scores as a network produces them: realistic amount of ties.
    normal = rng.normal(1.0, 1.0, n_normal).astype(np.float32)
    anomalous = rng.normal(0.0, 1.0, n_anomalous).astype(np.float32)
    labels = np.r_[np.ones(n_normal), np.zeros(n_anomalous)]
    pooled = np.r_[normal, anomalous]
    radii = np.linspace(0.0, 0.5, args.radii)

    sklearn_s, sklearn_auroc = best_time(
        lambda: roc_auc_score(labels, pooled), args.repeats
    )
    kocc_s, values = best_time(
        lambda: certified_auroc(normal, anomalous, radii), args.repeats
    )
    print(
        json.dumps(
            {
                "benchmark": "certified_auroc_speed",
                "n_scores": args.n,
                "n_radii": args.radii,
                "repeats": args.repeats,
                "roc_auc_score_seconds": sklearn_s,
                "certified_auroc_seconds": kocc_s,
                "ratio": kocc_s / sklearn_s,
                "target_ratio": 2.0,
                "eps0_abs_difference_to_sklearn": abs(
                    float(values[0]) - float(sklearn_auroc)
                ),
                "certified_auroc": [float(v) for v in values],
                "radii": radii.tolist(),
                "numpy": np.__version__,
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
