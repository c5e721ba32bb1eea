"""kocc: robust one-class classification with 1-Lipschitz networks (OCSDF).

Importing kocc selects the Keras 2 API (tf-keras) that deel-lip needs, see
:mod:`kocc.backend`. Everything else is plain Keras: build a 1-Lipschitz backbone
(:mod:`kocc.architectures`), wrap it in :class:`kocc.models.OCSDF` and call ``fit``.

The names a user types are importable from here (``from kocc import OCSDF``);
they load their module on first use (PEP 562), so ``import kocc`` stays light.
The module map is in ``docs/architecture.md``.
"""

from __future__ import annotations

from kocc.backend import configure_keras
from kocc.lazy_exports import lazy_exports

configure_keras()

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "OCSDF": "kocc.models",
    "OneClassHKR": "kocc.losses",
    "Box": "kocc.sampling",
    "Ball": "kocc.sampling",
    "newton_raphson": "kocc.sampling",
    "lipschitz_mlp": "kocc.architectures",
    "lipschitz_vgg": "kocc.architectures",
    "certified_auroc": "kocc.metrics",
    "CertifiedAUROC": "kocc.callbacks",
    "save_for_serving": "kocc.export",
    "OneClassSDF": "kocc.estimator",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
