"""kocc: robust one-class classification with 1-Lipschitz networks (OCSDF).

Importing kocc selects the Keras 2 API (tf-keras) that deel-lip needs, see
:mod:`kocc.backend`. Everything else is plain Keras: build a 1-Lipschitz backbone
(:mod:`kocc.architectures`), wrap it in :class:`kocc.models.OCSDF` and call ``fit``.
"""

from kocc.backend import configure_keras

configure_keras()

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level exports (PEP 562): ``kocc.OneClassSDF``."""
    if name == "OneClassSDF":
        from kocc.estimator import OneClassSDF

        return OneClassSDF
    raise AttributeError(f"module 'kocc' has no attribute {name!r}")
