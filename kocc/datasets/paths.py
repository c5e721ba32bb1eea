"""Where the real data sets live: ``KOCC_DATA_DIR`` or an explicit directory."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "KOCC_DATA_DIR"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Return the data directory: ``path`` if given, else ``$KOCC_DATA_DIR``.

    Args:
        path: an explicit directory; takes precedence over the environment.

    Returns:
        The directory as a :class:`pathlib.Path`.

    Raises:
        FileNotFoundError: if neither is set or the directory does not exist.
    """
    if path is None:
        path = os.environ.get(DATA_DIR_ENV)
        if not path:
            raise FileNotFoundError(
                f"No data directory: pass data_dir=... or set {DATA_DIR_ENV} to the "
                "folder holding mnist/, odds/, adbench/, ... (e.g. ../shared/data)."
            )
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory {str(root)!r} does not exist.")
    return root
