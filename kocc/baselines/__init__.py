"""Conventional (non-Lipschitz) baselines to compare OCSDF against.

* :func:`bce_network` / :func:`fit_bce_network`: an unconstrained ReLU MLP
  trained with binary cross-entropy against the same negatives as OCSDF.
* :func:`fit_distance_regression`: the supervised "DeepSDF-style" regression of
  nearest-neighbour distances (surfaces, paper Table 4).
* :class:`DeepSVDD`: One-Class Deep SVDD (Ruff et al., ICML 2018) with the
  LeNet-type encoders of that paper, for images.
"""

from kocc.baselines.bce import OneClassBCE, bce_network, fit_bce_network
from kocc.baselines.deep_svdd import DeepSVDD
from kocc.baselines.distance_regression import fit_distance_regression

__all__ = [
    "DeepSVDD",
    "OneClassBCE",
    "bce_network",
    "fit_bce_network",
    "fit_distance_regression",
]
