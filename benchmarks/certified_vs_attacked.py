"""Certified vs attacked AUROC of OCSDF, and of an unconstrained BCE network.

Trains an OCSDF (1-Lipschitz) and a conventional ReLU network with binary
cross-entropy on the same standardized 2-D toy (:func:`kocc.datasets.toys.make_toy`)
with negatives from the ball of radius 5 (paper appendix E), then reports for
each: clean AUROC, certified AUROC (OCSDF only: the BCE network has no
certificate), AUROC under the symmetric l2 PGD attack, and Lipschitz
diagnostics. Anomalies are uniform in [-3, 3]^2, optionally only those farther
than ``--min-distance`` from the training data (the toy recipe uses 0.3).
Prints JSON.

Usage::

    python benchmarks/certified_vs_attacked.py --dataset two_moons --epochs 50
"""

from __future__ import annotations

import argparse
import json

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.attacks import attacked_auroc
from kocc.baselines import bce_network, fit_bce_network
from kocc.callbacks import CertifiedAUROC
from kocc.datasets.toys import TOY_NAMES, far_uniform_points, make_toy
from kocc.diagnostics import empirical_lipschitz, gradient_norm_stats
from kocc.metrics import certified_auroc, model_scores
from kocc.models import OCSDF
from kocc.sampling import Ball

RADII = [0.05, 0.1, 0.25, 0.5]


def robustness_report(model, normal, anomalous, domain, steps, probe, certified):
    """Clean / attacked (/ certified) AUROC and gradient diagnostics of a model."""
    scores_n, scores_a = model_scores(model, normal), model_scores(model, anomalous)
    result = {
        "clean_auroc": certified_auroc(scores_n, scores_a, 0.0),
        "attacked_auroc": attacked_auroc(
            model, normal, anomalous, RADII, steps=steps, restarts=3, bounds=domain
        ).tolist(),
        "gradient_norms": gradient_norm_stats(model, probe),
        "empirical_lipschitz": empirical_lipschitz(model, probe, n_pairs=20_000),
    }
    if certified:
        result["certified_auroc"] = certified_auroc(scores_n, scores_a, RADII).tolist()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="two_moons", choices=TOY_NAMES)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="PGD steps")
    parser.add_argument("--min-distance", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    domain = Ball(5.0, shape=(2,))
    tf.keras.utils.set_random_seed(args.seed)
    normal_train, scaler = make_toy(args.dataset, 512, seed=args.seed)
    test_std, test_scaler = make_toy(args.dataset, 256, seed=args.seed + 1)
    normal_test = scaler.transform(test_scaler.inverse_transform(test_std))
    if args.min_distance > 0:
        anomalous = far_uniform_points(
            normal_train, 256, min_distance=args.min_distance, seed=args.seed + 2
        )
    else:
        rng = np.random.default_rng(args.seed + 2)
        anomalous = rng.uniform(-3.0, 3.0, size=(256, 2)).astype(np.float32)
    probe = np.r_[normal_test, anomalous, np.asarray(domain.sample(2000, seed=9))]

    ocsdf = OCSDF(
        lipschitz_mlp(2, (64, 64, 64), activation="groupsort2", seed=args.seed),
        domain,
        margin=0.05,
        lam=100.0,
        nr_steps=4,
        seed=args.seed,
    )
    ocsdf.compile(optimizer=tf.keras.optimizers.Adam(5e-3))
    monitor = CertifiedAUROC(normal_test, anomalous, RADII, every_n_epochs=10)
    history = ocsdf.fit(
        normal_train, batch_size=128, epochs=args.epochs, verbose=0, callbacks=[monitor]
    )

    bce = bce_network(2, (128, 128, 128), seed=args.seed)
    fit_bce_network(
        bce, normal_train, domain, epochs=args.epochs, batch_size=128, seed=args.seed
    )

    report = {
        "benchmark": "certified_vs_attacked",
        "dataset": args.dataset,
        "epochs": args.epochs,
        "anomaly_min_distance": args.min_distance,
        "radii": RADII,
        "ocsdf": robustness_report(
            ocsdf, normal_test, anomalous, domain, args.steps, probe, True
        ),
        "ocsdf_certified_auroc_every_10_epochs": {
            key: values
            for key, values in history.history.items()
            if key.startswith("certified_auroc@")
        },
        "bce": robustness_report(
            bce, normal_test, anomalous, domain, args.steps, probe, False
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
