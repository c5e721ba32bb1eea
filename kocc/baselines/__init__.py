"""Conventional (non-Lipschitz) one-class baselines to compare OCSDF against.

* :func:`bce_network` / :func:`fit_bce_network`: an unconstrained ReLU MLP
  trained with binary cross-entropy against the same negatives as OCSDF.
"""

from kocc.baselines.bce import bce_network, fit_bce_network

__all__ = ["bce_network", "fit_bce_network"]
