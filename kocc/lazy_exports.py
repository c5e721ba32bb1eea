"""Lazy attributes of a package (PEP 562), for ``kocc`` and ``kocc.baselines``.

A package lists ``name -> defining module`` and gets the module-level
``__getattr__`` and ``__dir__`` that import the defining module on first use,
so that importing the package does not import every dependency of everything
it exports (``import kocc`` stays light; ``kocc.baselines.bce`` does not load
trimesh for ``fit_distance_regression``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` (PEP 562).

    Args:
        package: the package's ``__name__``, for the ``AttributeError``.
        exports: public name -> the module that defines it.
        namespace: the package's ``globals()``; a resolved name is cached
            there, so ``__getattr__`` runs once per name.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """

    def attribute(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def names() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return attribute, names
