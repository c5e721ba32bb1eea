"""Time and peak memory of OCSDF on ADBench/ODDS http (567,498 rows) from the stream.

Loads http, standardizes it in place (float32), trains OCSDF for a bounded number of
steps from :func:`kocc.datasets.tabular.streamed_dataset` (batches gathered from the
one array, no copy of the table), scores every row, and prints one JSON object:
wall times of each stage, the resident memory (RSS) after each stage and the peak
RSS (``resource.getrusage``), the bytes of the table itself, and the AUROC reached
after these few steps (a smoke figure, not the benchmark's).

Usage::

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_http_memory.py --steps 500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras before TensorFlow is imported)

# isort: split
import numpy as np
from sklearn.metrics import roc_auc_score

from kocc.datasets.tabular import fit_standardizer, load_tabular
from kocc.experiments.tabular_benchmark import OCSDFSettings, train_ocsdf
from kocc.tabular_prior import tabular_prior


def _rss_mib() -> float:
    """Current resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mib() -> float:
    """Peak resident set size so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--dataset", default="http")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--widths", default="128,128,128")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--prior", choices=("box", "gaussian"), default="box")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report: dict = {
        "dataset": args.dataset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "widths": [int(w) for w in args.widths.split(",")],
        "margin": args.margin,
        "prior": args.prior,
        "env_TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "rss_after_imports_mib": round(_rss_mib(), 1),
    }
    start = time.perf_counter()
    x, y = load_tabular(args.dataset, args.data_dir)
    fit_standardizer(x).transform(x)  # in place
    report["load_standardize_seconds"] = round(time.perf_counter() - start, 3)
    report["rows"], report["features"] = (int(s) for s in x.shape)
    report["table_mib"] = round(x.nbytes / 2**20, 2)
    report["rss_after_load_mib"] = round(_rss_mib(), 1)

    settings = OCSDFSettings(
        widths=tuple(report["widths"]),
        batch_size=args.batch_size,
        steps=args.steps,
    )
    domain = tabular_prior(x, kind=args.prior)
    start = time.perf_counter()
    model = train_ocsdf(x, settings, args.margin, domain, args.seed)
    train_seconds = time.perf_counter() - start
    report["train_seconds"] = round(train_seconds, 2)
    report["train_ms_per_step"] = round(1000 * train_seconds / args.steps, 2)
    report["rss_after_train_mib"] = round(_rss_mib(), 1)

    start = time.perf_counter()
    scores = model.score_samples(x)
    report["score_all_rows_seconds"] = round(time.perf_counter() - start, 2)
    report["auroc_after_steps"] = round(float(roc_auc_score(y, -scores)), 4)
    report["scores_finite"] = bool(np.all(np.isfinite(scores)))
    report["rss_after_score_mib"] = round(_rss_mib(), 1)
    report["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
