"""Conventional (non-Lipschitz) baselines to compare OCSDF against.

* :func:`bce_network` / :func:`fit_bce_network`: an unconstrained ReLU MLP
  trained with binary cross-entropy against the same negatives as OCSDF.
* :func:`fit_distance_regression`: the supervised "DeepSDF-style" regression of
  nearest-neighbour distances (surfaces, paper Table 4).
* :class:`DeepSVDD`: One-Class Deep SVDD (Ruff et al., ICML 2018) with the
  LeNet-type encoders of that paper, for images.
* :class:`IOCN`: the invertible one-class network (Schmier et al.), and
  :class:`FlowBaseline`, the same invertible network as a normalizing flow.
* :class:`OMASGAN`: boundary samples from a GAN and an anomaly discriminator
  (Dionelis et al.).
"""

from kocc.baselines.bce import OneClassBCE, bce_network, fit_bce_network
from kocc.baselines.deep_svdd import DeepSVDD
from kocc.baselines.distance_regression import fit_distance_regression
from kocc.baselines.iocn import IOCN, FlowBaseline
from kocc.baselines.omasgan import OMASGAN

__all__ = [
    "IOCN",
    "OMASGAN",
    "DeepSVDD",
    "FlowBaseline",
    "OneClassBCE",
    "bce_network",
    "fit_bce_network",
    "fit_distance_regression",
]
