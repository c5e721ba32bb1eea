"""Prove the Lipschitz bound of the tabular benchmark's OCSDF models from their weights.

For each data set, trains OCSDF with the label-free settings of a tabular recipe
(``--recipe``, default ``recipes/tabular_odds.yaml``: network, margin, λ, steps,
prior and feature scaling, ``auto`` resolved by the sparsity rule as the
benchmark does; AD protocol), every member network of a run when the recipe
pools several (``training.members``), copies each network to plain Keras layers
(:func:`kocc.export.vanilla_network`), proves its l2 Lipschitz bound from the
weights (:func:`kocc.export.certify_network`, which fails above 1 + 1e-3) and
prints one JSON object per data set: the proven bound, the largest difference
between the copy's and the trained model's scores, and the AUROC the copy's
scores give (for several members: also the AUROC of the copies' mean f, the
benchmark's score, whose bound is at most the members' largest). The figures of
the benchmark's table come from such models: the margin and λ change the loss,
not the architecture.

The bound holds on OCSDF's inputs. With a feature scaling other than
``standard`` (``x -> (x - c) / s`` applied to standardized rows), the score is
``1 / min_j s_j``-Lipschitz on the standardized rows, printed as
``lipschitz_on_standardized_rows``: a certified radius in standardized units is
the score margin divided by that number.

Usage::

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_certificate.py wine vowels
    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_certificate.py \
        ionosphere --widths 128 128 128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras before TensorFlow is imported)

# isort: split
import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

from kocc.datasets.tabular import (
    FEATURE_SCALINGS,
    feature_divisors,
    fit_standardizer,
    load_tabular,
    scaled_rows,
)
from kocc.experiments.tabular_benchmark import (
    TabularBenchmarkConfig,
    member_seeds,
    rule_choice,
    train_ocsdf,
)
from kocc.export import certify_network, vanilla_network
from kocc.tabular_prior import tabular_prior

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tabular_odds.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="load_tabular names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="hidden widths (default: the recipe's)",
    )
    parser.add_argument(
        "--pad",
        type=float,
        default=None,
        help="box prior padding (default: the recipe's)",
    )
    parser.add_argument(
        "--scaling",
        choices=FEATURE_SCALINGS,
        default=None,
        help="OCSDF's feature scaling (default: the recipe's)",
    )
    parser.add_argument(
        "--recipe", default=str(RECIPE), help="a tabular recipe (default: %(default)s)"
    )
    args = parser.parse_args()
    recipe = TabularBenchmarkConfig.from_dict(
        yaml.safe_load(Path(args.recipe).read_text())
    )
    settings = recipe.ocsdf
    if args.widths is not None:
        settings = dataclasses.replace(settings, widths=tuple(args.widths))
    if args.scaling is not None:
        settings = dataclasses.replace(settings, feature_scaling=args.scaling)
    for name in args.datasets:
        x, y = load_tabular(name, args.data_dir)
        fit_standardizer(x).transform(x)  # in place, as the AD protocol does
        kind, scaling, sparsity = rule_choice(
            x,
            recipe.prior_kind,
            settings.feature_scaling,
            recipe.sparsity_rule,
            args.seed,
        )
        input_scale = float(feature_divisors(x, scaling).min())
        x, _ = scaled_rows(x, None, scaling)
        pad = recipe.pad_of(kind) if args.pad is None else args.pad
        domain = tabular_prior(x, kind, pad, recipe.prior_scale)
        members = []
        for seed in member_seeds(args.seed, settings.members):
            start = time.perf_counter()
            model = train_ocsdf(x, settings, settings.margins[0], domain, seed)
            seconds = time.perf_counter() - start
            network = vanilla_network(model)
            constant, bound = certify_network(network)
            trained = np.asarray(model.score_samples(x)).reshape(-1)
            served = np.asarray(network.predict(x, batch_size=4096, verbose=0))
            members.append((seed, seconds, constant, bound, trained, served.ravel()))
        constant = max(m[2] for m in members)
        mean = np.mean([m[5] for m in members], axis=0)
        report = {
            "dataset": name,
            "seed": args.seed,
            "margin": settings.margins[0],
            "lam": settings.lam,
            "widths": list(settings.widths),
            "steps": settings.steps,
            "prior": kind,
            "pad": pad,
            "feature_scaling": scaling,
            "sparsity": None if sparsity is None else round(sparsity, 4),
            "members": len(members),
            "train_seconds": round(sum(m[1] for m in members), 1),
            "proven_lipschitz_bound": max(m[3] for m in members),
            "lipschitz_constant_used": constant,
            "lipschitz_on_standardized_rows": constant / input_scale,
            "max_abs_score_difference": float(
                max(np.abs(m[4] - m[5]).max() for m in members)
            ),
            "auroc_from_certified_copy": round(float(roc_auc_score(y, -mean)), 4),
        }
        if len(members) > 1:
            report["member_aurocs_from_certified_copies"] = [
                round(float(roc_auc_score(y, -m[5])), 4) for m in members
            ]
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
