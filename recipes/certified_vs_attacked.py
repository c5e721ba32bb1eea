"""Recipe: certified vs attacked AUROC of OCSDF, and of an unconstrained BCE network.

Trains an OCSDF (1-Lipschitz) and a conventional ReLU network with binary
cross-entropy on the same 2-D toy data and negatives, then reports for each:
clean AUROC, certified AUROC (OCSDF only: the BCE network has no certificate),
AUROC under the symmetric l2 PGD attack, and Lipschitz diagnostics. Prints JSON.

Usage::

    python recipes/certified_vs_attacked.py --dataset two_moons --epochs 50
"""

from __future__ import annotations

import argparse
import json

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import tensorflow as tf
from sklearn.datasets import make_blobs, make_moons

from kocc.architectures import lipschitz_mlp
from kocc.attacks import attacked_auroc
from kocc.baselines import bce_network, fit_bce_network
from kocc.callbacks import CertifiedAUROC
from kocc.diagnostics import empirical_lipschitz, gradient_norm_stats
from kocc.metrics import certified_auroc, model_scores
from kocc.models import OCSDF
from kocc.sampling import Box


def make_data(name: str, n: int, seed: int) -> np.ndarray:
    """Normal samples of a 2-D toy set, roughly inside [-2, 2]^2."""
    if name == "two_moons":
        x, _ = make_moons(n, noise=0.05, random_state=seed)
        return ((x - [0.5, 0.25]) / [0.9, 0.5]).astype(np.float32)
    if name == "blobs":
        x, _ = make_blobs(
            n, centers=[[-1.0, -1.0], [1.0, 0.5]], cluster_std=0.3, random_state=seed
        )
        return x.astype(np.float32)
    raise ValueError(f"unknown dataset {name!r}: expected 'two_moons' or 'blobs'")


def report(model, normal, anomalous, radii, domain, steps, probe, certified):
    scores_n, scores_a = model_scores(model, normal), model_scores(model, anomalous)
    result = {
        "clean_auroc": certified_auroc(scores_n, scores_a, 0.0),
        "attacked_auroc": attacked_auroc(
            model, normal, anomalous, radii, steps=steps, restarts=3, bounds=domain
        ).tolist(),
        "gradient_norms": gradient_norm_stats(model, probe),
        "empirical_lipschitz": empirical_lipschitz(model, probe, n_pairs=20_000),
    }
    if certified:
        result["certified_auroc"] = certified_auroc(scores_n, scores_a, radii).tolist()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="two_moons", choices=["two_moons", "blobs"]
    )
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="PGD steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    radii = [0.05, 0.1, 0.25, 0.5]
    domain = Box(-3.0, 3.0, shape=(2,))
    normal_train = make_data(args.dataset, 512, args.seed)
    normal_test = make_data(args.dataset, 256, args.seed + 1)
    anomalous = np.asarray(domain.sample(256, seed=args.seed + 5))
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
    monitor = CertifiedAUROC(normal_test, anomalous, radii, every_n_epochs=10)
    history = ocsdf.fit(
        normal_train, batch_size=128, epochs=args.epochs, verbose=0, callbacks=[monitor]
    )

    bce = bce_network(2, (128, 128, 128), seed=args.seed)
    fit_bce_network(
        bce, normal_train, domain, epochs=args.epochs, batch_size=128, seed=args.seed
    )

    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "epochs": args.epochs,
                "radii": radii,
                "ocsdf": report(
                    ocsdf,
                    normal_test,
                    anomalous,
                    radii,
                    domain,
                    args.steps,
                    probe,
                    True,
                ),
                "ocsdf_certified_auroc_during_training": {
                    key: history.history[key]
                    for key in history.history
                    if key.startswith("certified_auroc@")
                },
                "bce": report(
                    bce, normal_test, anomalous, radii, domain, args.steps, probe, False
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
