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

from __future__ import annotations

from typing import TYPE_CHECKING

from kocc.lazy_exports import lazy_exports

if TYPE_CHECKING:  # the names as static analysis sees them (type checkers, API docs)
    from kocc.baselines.bce import OneClassBCE, bce_network, fit_bce_network
    from kocc.baselines.deep_svdd import DeepSVDD
    from kocc.baselines.distance_regression import fit_distance_regression
    from kocc.baselines.iocn import IOCN, FlowBaseline
    from kocc.baselines.omasgan import OMASGAN

#: Public name -> the module that defines it. The names load their module on
#: first use (PEP 562): ``from kocc.baselines.bce import ...`` does not import
#: the other baselines' dependencies (``fit_distance_regression`` needs trimesh,
#: from the ``surfaces`` extra).
_EXPORTS: dict[str, str] = {
    "OneClassBCE": "kocc.baselines.bce",
    "bce_network": "kocc.baselines.bce",
    "fit_bce_network": "kocc.baselines.bce",
    "DeepSVDD": "kocc.baselines.deep_svdd",
    "fit_distance_regression": "kocc.baselines.distance_regression",
    "IOCN": "kocc.baselines.iocn",
    "FlowBaseline": "kocc.baselines.iocn",
    "OMASGAN": "kocc.baselines.omasgan",
}

__all__ = [  # as written out for static analysis; equal to sorted(_EXPORTS)
    "DeepSVDD",
    "FlowBaseline",
    "IOCN",
    "OMASGAN",
    "OneClassBCE",
    "bce_network",
    "fit_bce_network",
    "fit_distance_regression",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
