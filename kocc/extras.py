"""Optional dependencies: which extra of kocc installs them.

``pip install kocc`` installs the library's core only (TensorFlow, tf-keras,
deel-lip, numpy, scipy, scikit-learn). Features that need more import their
packages through :func:`require`, so a missing one fails with the command that
installs it::

    >>> trimesh = require("trimesh")  # doctest: +SKIP
    ImportError: kocc.surfaces needs trimesh, which the 'surfaces' extra
    installs: pip install 'kocc[surfaces]'
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

from kocc.safe_output import interrupts_received

#: Top-level module -> (distribution on PyPI, extra of kocc that installs it).
#: The extras themselves are declared in ``setup.cfg``.
OPTIONAL_MODULES: dict[str, tuple[str, str]] = {
    "trimesh": ("trimesh", "surfaces"),
    "skimage": ("scikit-image", "surfaces"),
    "foolbox": ("foolbox", "attacks"),
    "eagerpy": ("eagerpy", "attacks"),
    "tensorflow_datasets": ("tensorflow-datasets", "data"),
    "h5py": ("h5py", "data"),
    "matplotlib": ("matplotlib", "plots"),
    "yaml": ("PyYAML", "experiments"),
}


def install_hint(module: str) -> str:
    """The ``pip install`` command of the extra that provides ``module``."""
    top = module.partition(".")[0]
    if top not in OPTIONAL_MODULES:
        raise KeyError(
            f"{module!r} is not an optional dependency of kocc: expected one of "
            f"{sorted(OPTIONAL_MODULES)}"
        )
    return f"pip install 'kocc[{OPTIONAL_MODULES[top][1]}]'"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import an optional dependency, or say which extra installs it.

    Args:
        module: dotted module name whose top-level package is a key of
            :data:`OPTIONAL_MODULES` (``"skimage.measure"``).
        feature: what needs it, for the message; defaults to the calling module.

    Returns:
        The imported module.

    Raises:
        ImportError: the package is not installed; the message names the
            distribution, the extra and the ``pip install`` command.
        KeyboardInterrupt: an interrupt arrived during the import (inside
            :func:`kocc.safe_output.terminate_as_interrupt`) and the package
            caught it: trimesh wraps its optional imports in ``except
            BaseException``, which made a Ctrl-C during ``import trimesh`` a
            no-op (the command then ran to its end).
    """
    hint = install_hint(module)
    before, _ = interrupts_received()
    try:
        imported = importlib.import_module(module)
    except ImportError as error:
        if feature is None:
            caller = inspect.currentframe().f_back
            feature = caller.f_globals.get("__name__", "kocc") if caller else "kocc"
        distribution, extra = OPTIONAL_MODULES[module.partition(".")[0]]
        raise ImportError(
            f"{feature} needs {distribution}, which the {extra!r} extra installs: "
            f"{hint}"
        ) from error
    after, cause = interrupts_received()
    if after != before:  # the package's import swallowed the KeyboardInterrupt
        raise KeyboardInterrupt(cause)
    return imported
