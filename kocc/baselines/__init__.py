"""Baselines to compare OCSDF against.

* :func:`bce_network` / :func:`fit_bce_network`: an unconstrained ReLU MLP
  trained with binary cross-entropy against the same negatives as OCSDF.
* :class:`DeepSVDD`: One-Class Deep SVDD (Ruff et al., ICML 2018) with the
  LeNet-type encoders of that paper, for images.
"""

from kocc.baselines.bce import bce_network, fit_bce_network
from kocc.baselines.deep_svdd import DeepSVDD

__all__ = ["DeepSVDD", "bce_network", "fit_bce_network"]
