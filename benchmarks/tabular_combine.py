"""Combine OCSDF networks saved by ``tabular_levers.py --save-scores`` (AD protocol).

``benchmarks/tabular_levers.py --save-scores DIR`` writes, per data set and seed,
the rows' labels and every member network's anomaly scores ``-f(x)``
(``DIR/<set>_seed<seed>.npz``). This script pools the members of one or more such
directories into one ensemble per data set, the mean of the members' ``f`` (a mean
of 1-Lipschitz functions is 1-Lipschitz, so the certificate of each member holds
for the ensemble), and prints one JSON object per data set with:

* ``auroc_ensemble``: the AUROC (%) of that mean (the labels enter here only);
* ``member_auroc``: each member's AUROC, in the order of ``--ensemble``;
* ``member_agreement``: the mean pairwise Spearman correlation of the members'
  scores on the rows (label-free; how much the members agree);
* ``sparsity``: the label-free sparsity of the rows, ``s / r``: ``s`` the median
  distance from a row to its 10th nearest other row, ``r`` the median distance
  from a row to the rows' mean, both on the rows OCSDF saw under ``--scaling``
  (:func:`~kocc.experiments.tabular_benchmark.row_sparsity`). Near 1, a row's
  10th neighbour is as far as the bulk's radius: the rows sample their support
  too thinly for its local shape;
* with ``--fallback DIR``: ``auroc_fallback``, the AUROC of the mean of that
  directory's members, and ``auroc_rule``: the ensemble's AUROC where
  ``sparsity <= --max-sparsity``, the fallback's elsewhere (``prior`` says which;
  where the fallback is picked, the ensemble's scores need not have been saved).
  The rule reads the rows only; its threshold is a library-level choice made on
  benchmark sets, as every default is (docs/tabular.md says which).

Usage (after the ``tabular_levers.py`` commands of docs/tabular.md)::

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_combine.py \\
        --sets cardio,wine --ensemble runs/ballH3k,runs/ballT3k --fallback runs/boxT
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

# the scalings of the lever script (tabular_levers.py imports kocc, which selects
# tf-keras before TensorFlow is imported)
from tabular_levers import scale, scores_path

from kocc.datasets.tabular import load_tabular
from kocc.experiments.tabular_benchmark import row_sparsity


def load_members(
    directories: list[str], name: str, seed: int, y: np.ndarray
) -> np.ndarray:
    """The stacked member scores ``(members, rows)`` of ``name`` at ``seed`` over
    ``directories``. A missing file, or one whose saved labels are not the data
    set's (``y``), is an error that names it."""
    scores = []
    for directory in directories:
        path = scores_path(directory, name, seed)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run benchmarks/tabular_levers.py --sets {name} "
                f"--seed {seed} --save-scores {directory} (with that directory's "
                "settings) first."
            )
        with np.load(path) as saved:
            if not np.array_equal(saved["y"], np.asarray(y)):
                raise ValueError(
                    f"{path} holds the scores of other rows than {name}'s."
                )
            scores.append(saved["scores"])
    return np.concatenate(scores)


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    return round(100 * float(roc_auc_score(y, scores)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", required=True)
    parser.add_argument(
        "--ensemble",
        required=True,
        help="comma-separated --save-scores directories; their members are pooled",
    )
    parser.add_argument(
        "--fallback",
        default="",
        help="a --save-scores directory scored where the rows are sparser than "
        "--max-sparsity",
    )
    parser.add_argument("--max-sparsity", type=float, default=0.7)
    parser.add_argument(
        "--scaling",
        default="tail4",
        help="the scaling of tabular_levers.py the sparsity is measured under",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("KOCC_DATA_DIR"))
    args = parser.parse_args()
    if not 0.0 < args.max_sparsity:
        parser.error(f"--max-sparsity must be > 0, got {args.max_sparsity}")
    ensemble = [d for d in args.ensemble.split(",") if d]
    for name in args.sets.split(","):
        raw, y = load_tabular(name, args.data_dir)
        ratio = row_sparsity(scale(raw.copy(), args.scaling))
        use_ensemble = not args.fallback or ratio <= args.max_sparsity
        report = {"dataset": name, "seed": args.seed, "sparsity": round(ratio, 3)}
        # the ensemble's members are needed where the rule picks it; elsewhere
        # they are reported when they were saved
        if use_ensemble or all(
            scores_path(d, name, args.seed).is_file() for d in ensemble
        ):
            members = load_members(ensemble, name, args.seed, y)
            agreement = [
                spearmanr(a, b)[0] for a, b in itertools.combinations(members, 2)
            ]
            report |= {
                "auroc_ensemble": auroc(y, members.mean(axis=0)),
                "members": len(members),
                "member_auroc": [auroc(y, s) for s in members],
                "member_agreement": (
                    round(float(np.mean(agreement)), 3) if agreement else None
                ),
            }
        if args.fallback:
            fallback = load_members([args.fallback], name, args.seed, y)
            report["auroc_fallback"] = auroc(y, fallback.mean(axis=0))
            report["prior"] = "ensemble" if use_ensemble else "fallback"
            report["auroc_rule"] = report[
                "auroc_ensemble" if use_ensemble else "auroc_fallback"
            ]
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
