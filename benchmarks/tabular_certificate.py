"""Prove the Lipschitz bound of the tabular benchmark's OCSDF models from their weights.

For each data set, trains OCSDF with the default (label-free) settings of
``recipes/tabular_odds.yaml`` (network, margin, λ, steps, box prior, feature
scaling; AD protocol), copies the network to plain Keras layers
(:func:`kocc.export.vanilla_network`), proves its l2 Lipschitz bound from the
weights (:func:`kocc.export.certify_network`, which fails above 1 + 1e-3) and
prints one JSON object per data set: the proven bound, the largest difference
between the copy's and the trained model's scores, and the AUROC the copy's
scores give. The figures of the benchmark's table come from such models: the
margin and λ change the loss, not the architecture.

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
from kocc.experiments.tabular_benchmark import TabularBenchmarkConfig, train_ocsdf
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
        help="hidden widths (default: recipes/tabular_odds.yaml's)",
    )
    parser.add_argument(
        "--pad",
        type=float,
        default=None,
        help="box prior padding (default: recipes/tabular_odds.yaml's)",
    )
    parser.add_argument(
        "--scaling",
        choices=FEATURE_SCALINGS,
        default=None,
        help="OCSDF's feature scaling (default: recipes/tabular_odds.yaml's)",
    )
    args = parser.parse_args()
    recipe = TabularBenchmarkConfig.from_dict(yaml.safe_load(RECIPE.read_text()))
    settings = recipe.ocsdf
    pad = recipe.prior_pad if args.pad is None else args.pad
    if args.widths is not None:
        settings = dataclasses.replace(settings, widths=tuple(args.widths))
    if args.scaling is not None:
        settings = dataclasses.replace(settings, feature_scaling=args.scaling)
    for name in args.datasets:
        x, y = load_tabular(name, args.data_dir)
        fit_standardizer(x).transform(x)  # in place, as the AD protocol does
        input_scale = float(feature_divisors(x, settings.feature_scaling).min())
        x, _ = scaled_rows(x, None, settings.feature_scaling)
        start = time.perf_counter()
        domain = tabular_prior(x, "box", pad, 1.0)
        model = train_ocsdf(x, settings, settings.margins[0], domain, args.seed)
        seconds = time.perf_counter() - start
        network = vanilla_network(model)
        constant, bound = certify_network(network)
        trained = np.asarray(model.score_samples(x)).reshape(-1)
        served = np.asarray(network.predict(x, batch_size=4096, verbose=0)).reshape(-1)
        report = {
            "dataset": name,
            "seed": args.seed,
            "margin": settings.margins[0],
            "lam": settings.lam,
            "widths": list(settings.widths),
            "steps": settings.steps,
            "box_pad": pad,
            "feature_scaling": settings.feature_scaling,
            "train_seconds": round(seconds, 1),
            "proven_lipschitz_bound": bound,
            "lipschitz_constant_used": constant,
            "lipschitz_on_standardized_rows": constant / input_scale,
            "max_abs_score_difference": float(np.abs(trained - served).max()),
            "auroc_from_certified_copy": round(float(roc_auc_score(y, -served)), 4),
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
