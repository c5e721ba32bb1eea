"""Screen label-free rules that pick OCSDF's setting per data set (AD protocol).

For every data set and every candidate setting (a feature scaling of
:func:`kocc.datasets.tabular.scaled_rows`, optionally with its own margin and
prior, written ``scaling``, ``scaling:margin``, ``scaling@prior`` or
``scaling:margin@prior``; the prior is ``box`` (the default, padded by
``--pad``), ``ball`` (the covering ball, :func:`kocc.tabular_prior.data_ball`)
or ``ray`` (the covering ball with every initial point on the rays through the
rows, ``RayBall`` of ``benchmarks/tabular_levers.py``)), one OCSDF network is
trained on all rows (seed ``--seed``, the default recipe's other settings) and the
script prints one JSON object per data set with, per candidate:

* ``auroc``: the AUROC (%) of that network (the labels enter here only);
* ``if_agreement``: Spearman's rank correlation between its anomaly scores
  ``-f(x)`` and a seeded Isolation Forest's on the same rows (label-free);
* ``knn_agreement``: the same against the distance to the 5th neighbour;
* ``stability`` (with ``--stability``): the rows are split in two seeded halves,
  one network is trained on each (same settings), and the criterion is the
  Spearman correlation of their scores on all rows: how reproducible the
  ranking is from the unlabelled rows alone (two more trainings per candidate);
* ``heldout_inside`` (with ``--stability``): the share of each half's rows
  that the network trained on the *other* half scores at ``f >= -m``, averaged
  over the two halves (how well the learned support covers unseen rows).

and, per criterion, the candidate with the highest value (ties: the first
listed) and that candidate's AUROC (``picks``), to compare a rule's pick with
the best AUROC of the grid. Labels enter only the AUROCs. The results of one
screen are in docs/tabular.md. Usage::

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_selection.py \\
        --sets mammography,musk --candidates tail_stretch,heavy_tail --stability
"""

from __future__ import annotations

import argparse
import json
import os
import time

import kocc  # noqa: F401  (selects tf-keras before TensorFlow is imported)

# isort: split
import numpy as np
import tensorflow as tf
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from tabular_levers import RayBall  # the lever script beside this one

from kocc.baselines.detectors import Detector
from kocc.datasets.tabular import fit_standardizer, load_tabular, scaled_rows
from kocc.experiments.tabular_benchmark import OCSDFSettings, train_ocsdf
from kocc.tabular_prior import data_ball, tabular_prior

CRITERIA = ("if_agreement", "knn_agreement", "stability", "heldout_inside")


def fit_scores(
    rows: np.ndarray,
    score_rows: np.ndarray,
    settings: OCSDFSettings,
    margin: float,
    pad: float,
    seed: int,
    prior: str = "box",
) -> np.ndarray:
    """``f`` on ``score_rows`` of an OCSDF network trained on ``rows``, with
    the negatives' ``prior`` (``box``, ``ball`` or ``ray``) built from ``rows``."""
    if prior == "ray":  # the covering ball's center and radius, draws on the rays
        ball = data_ball(rows)
        domain = RayBall(ball.radius, rows, 1.0, 0.3, center=ball.center)
    else:
        domain = tabular_prior(rows, prior, pad if prior == "box" else 0.0, 1.0)
    model = train_ocsdf(rows, settings, margin, domain, seed)
    scores = np.asarray(model.score_samples(score_rows)).reshape(-1)
    del model
    tf.keras.backend.clear_session()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cardio,glass,mammography,vowels")
    parser.add_argument("--candidates", default="tail_stretch,heavy_tail")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--pad", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--stability", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("KOCC_DATA_DIR"))
    args = parser.parse_args()
    settings = OCSDFSettings(steps=args.steps)
    # (name, scaling, margin, prior) per candidate, checked before any training
    candidates = []
    for candidate in args.candidates.split(","):
        setting, _, prior = candidate.partition("@")
        scaling, _, margin_text = setting.partition(":")
        margin = float(margin_text) if margin_text else args.margin
        if (prior or "box") not in ("box", "ball", "ray"):
            parser.error(f"unknown prior {prior!r} in candidate {candidate!r}")
        candidates.append((candidate, scaling, margin, prior or "box"))
    for name in args.sets.split(","):
        start = time.perf_counter()
        x, y = load_tabular(name, args.data_dir)
        fit_standardizer(x).transform(x)
        references = {}
        for method, options in (("isolation_forest", {}), ("knn", {"n_neighbors": 5})):
            detector = Detector(method, **options)
            detector.fit(x, seed=args.seed, novelty=False)
            references[method] = -detector.scores(x, fitted_rows=True)
        half = np.random.default_rng(args.seed).permutation(len(x)) < len(x) // 2
        report: dict = {"dataset": name, "candidates": {}}
        for candidate, scaling, margin, prior in candidates:
            rows = scaled_rows(x, None, scaling)[0]
            f = fit_scores(rows, rows, settings, margin, args.pad, args.seed, prior)
            entry = {
                "auroc": round(100 * float(roc_auc_score(y, -f)), 2),
                "if_agreement": round(
                    float(spearmanr(-f, references["isolation_forest"])[0]), 4
                ),
                "knn_agreement": round(float(spearmanr(-f, references["knn"])[0]), 4),
            }
            if args.stability:
                # scaling fitted on all rows (as the full model's), networks on halves
                f_a = fit_scores(
                    rows[half], rows, settings, margin, args.pad, args.seed, prior
                )
                f_b = fit_scores(
                    rows[~half], rows, settings, margin, args.pad, args.seed, prior
                )
                entry["stability"] = round(float(spearmanr(f_a, f_b)[0]), 4)
                inside = 0.5 * (
                    np.mean(f_a[~half] >= -margin) + np.mean(f_b[half] >= -margin)
                )
                entry["heldout_inside"] = round(float(inside), 4)
            report["candidates"][candidate] = entry
        picks = {}
        for criterion in CRITERIA:
            scored = {
                c: e[criterion]
                for c, e in report["candidates"].items()
                if criterion in e
            }
            if scored:
                best = max(scored, key=scored.get)
                picks[criterion] = [best, report["candidates"][best]["auroc"]]
        report["picks"] = picks
        report["seconds"] = round(time.perf_counter() - start, 1)
        report["settings"] = {
            "margin": args.margin,
            "pad": args.pad,
            "steps": args.steps,
            "seed": args.seed,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
