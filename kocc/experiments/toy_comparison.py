r"""OCSDF beside conventional one-class methods on a 2-D toy (paper §5.1).

The comparison of Béthune et al. (ICML 2023), Figure 6 and Table 1: on the same
standardized toy, fit

* ``bce``: an unconstrained ReLU network trained with the binary cross-entropy
  against the *same* negatives as OCSDF (uniform in the domain, moved by
  Algorithm 1's Newton-Raphson steps toward its own level set 0), for the same
  number of parameter updates (:mod:`kocc.baselines.bce`);
* ``one_class_svm`` and ``isolation_forest`` (scikit-learn);
* ``iocn``: the invertible one-class network (Schmier et al.,
  :class:`kocc.baselines.IOCN`), score :math:`-s(x)`; its inlier region
  ``{score > 0}`` is the pre-image of a cube under a homeomorphism, hence
  simply connected: one region bridging separated modes,

score the test normals, the test anomalies and a grid with each, and measure
the **local Lipschitz constant** of the two networks,

.. math::

    \hat L(f) = \max_{x \in G \cup X_{\text{train}}} \|\nabla_x f(x)\|_2,

over the plotting grid ``G`` and the training points (Table 1). OCSDF's is at
most 1 by construction; nothing bounds the BCE network's.

Every score is oriented "higher = more normal", so one AUROC routine
(:func:`kocc.metrics.certified_auroc` at radius 0) and one plot serve all
methods; each method's decision boundary is its own level 0 (logit 0 for BCE,
``decision_function = 0`` for scikit-learn's detectors, the cube's boundary
for IOCN).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from kocc.baselines.bce import bce_network, fit_bce_network
from kocc.baselines.detectors import fit_detector
from kocc.baselines.iocn import IOCN
from kocc.diagnostics import local_lipschitz
from kocc.experiments.recipes import ToyRecipe
from kocc.metrics import certified_auroc
from kocc.sampling import Domain

#: Display names, in the order of the figure's panels after OCSDF.
METHOD_LABELS: dict[str, str] = {
    "ocsdf": "OCSDF",
    "bce": "BCE network",
    "one_class_svm": "One-Class SVM",
    "isolation_forest": "Isolation Forest",
    "iocn": "IOCN",
}


@dataclass
class MethodResult:
    """One method on one toy: its AUROC, grid scores and (networks) Lipschitz."""

    auroc: float
    grid_scores: np.ndarray
    seconds: float
    local_lipschitz: float | None = None
    extra: dict = field(default_factory=dict)


def bce_epochs(steps: int, n_train: int, batch_size: int) -> int:
    """Epochs of :func:`fit_bce_network` that make at least ``steps`` updates.

    One epoch fits the ``n_train`` normals and as many fresh negatives, i.e.
    ``ceil(2 n_train / batch_size)`` updates.
    """
    per_epoch = math.ceil(2 * n_train / batch_size)
    return max(1, math.ceil(steps / per_epoch))


def fit_comparison(
    recipe: ToyRecipe,
    x_train: np.ndarray,
    x_test: np.ndarray,
    anomalies: np.ndarray,
    grid: np.ndarray,
    domain: Domain,
    lipschitz_points: np.ndarray,
) -> dict[str, MethodResult]:
    """Fit and score every method of ``recipe.comparison.methods``.

    Args:
        recipe: the toy recipe (its ``comparison``, ``model``, ``training`` and
            ``seed`` are used).
        x_train: standardized training points ``(n, 2)``.
        x_test: normal test points.
        anomalies: anomalous test points.
        grid: plotting grid points ``(g * g, 2)``.
        domain: the OCSDF negatives' domain, shared by the BCE network.
        lipschitz_points: where the networks' gradient norms are taken.

    Returns:
        ``{method: MethodResult}`` in the order of ``recipe.comparison.methods``.
    """
    cfg = recipe.comparison
    results: dict[str, MethodResult] = {}
    for method in cfg.methods:
        start = time.perf_counter()
        lipschitz = None
        extra: dict = {}
        if method == "bce":
            widths = cfg.bce_widths or recipe.model.widths
            steps = cfg.bce_steps or recipe.training.steps
            batch = min(recipe.training.batch_size, len(x_train))
            epochs = bce_epochs(steps, len(x_train), batch)
            network = bce_network(2, widths, seed=recipe.seed)
            fit_bce_network(
                network,
                x_train,
                domain,
                epochs=epochs,
                batch_size=batch,
                nr_steps=recipe.training.nr_steps,
                level_set=0.0,
                optimizer=tf.keras.optimizers.RMSprop(cfg.bce_learning_rate),
                seed=recipe.seed,
            )

            def score(x: np.ndarray, network: tf.keras.Model = network) -> np.ndarray:
                return network.predict(x, batch_size=8192, verbose=0).reshape(-1)

            lipschitz = local_lipschitz(network, lipschitz_points)
            extra = {"widths": list(widths), "epochs": epochs}
        elif method == "one_class_svm":
            score = fit_detector(
                method, x_train, nu=cfg.ocsvm_nu, gamma=cfg.ocsvm_gamma
            )
        elif method == "isolation_forest":
            score = fit_detector(
                method, x_train, recipe.seed, n_estimators=cfg.if_n_estimators
            )
        elif method == "iocn":
            iocn = IOCN(
                2,
                num_blocks=cfg.iocn_blocks,
                hidden_units=cfg.iocn_hidden_units,
                seed=recipe.seed,
            )
            iocn.compile(optimizer=tf.keras.optimizers.Adam(cfg.iocn_learning_rate))
            iocn.fit(
                x_train,
                batch_size=min(cfg.iocn_batch_size, len(x_train)),
                epochs=cfg.iocn_epochs,
                verbose=0,
            )
            score = iocn.score_samples
            extra = {"epochs": cfg.iocn_epochs}
        else:  # the recipe schema only lets the four names through
            raise ValueError(f"unknown comparison method {method!r}")
        results[method] = MethodResult(
            # radius 0: the ordinary AUROC (normal = positive class)
            auroc=certified_auroc(score(x_test), score(anomalies), 0.0),
            grid_scores=np.asarray(score(grid), np.float32),
            seconds=time.perf_counter() - start,
            local_lipschitz=lipschitz,
            extra=extra,
        )
    return results
