"""Input checks shared by models, estimators and commands: shape, emptiness, NaN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_batch(
    x: Any, feature_shape: Sequence[int] | None = None, name: str = "x"
) -> np.ndarray:
    """Validate a batch of samples and return it as a float32 array.

    Args:
        x: array-like of shape ``(n, *feature_shape)``.
        feature_shape: the expected shape of one sample (``None``: any).
        name: the argument's name, used in error messages.

    Returns:
        ``x`` as a C-contiguous float32 numpy array.

    Raises:
        ValueError: if ``x`` is empty, has the wrong rank or feature shape, or
            contains NaN or inf (the message names which).
    """
    try:
        array = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    if feature_shape is not None:
        feature_shape = tuple(int(s) for s in feature_shape)
        expected_rank = len(feature_shape) + 1
        if array.ndim != expected_rank:
            raise ValueError(
                f"{name} must have rank {expected_rank} (n, "
                f"{', '.join(map(str, feature_shape))}), got shape {array.shape}"
            )
        if array.shape[1:] != feature_shape:
            if len(feature_shape) == 1:
                raise ValueError(
                    f"{name} has {array.shape[1]} features but the model was built "
                    f"for {feature_shape[0]}"
                )
            raise ValueError(
                f"{name} has samples of shape {array.shape[1:]} but the model was "
                f"built for {feature_shape}"
            )
    elif array.ndim < 2:
        raise ValueError(f"{name} must be a batch (n, ...), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
        kinds = []
        if np.isnan(array).any():
            kinds.append("NaN")
        if np.isinf(array).any():
            kinds.append("inf")
        raise ValueError(
            f"{name} contains {' and '.join(kinds)} in {bad.size} sample(s), "
            f"first at row {int(bad[0])}"
        )
    return np.ascontiguousarray(array)


def check_positive(**values: Any) -> None:
    """Raise for the first of ``values`` (name=value) that is not ``> 0``.

    A hyper-parameter check of ``__init__``: NaN is not ``> 0`` either.

    Raises:
        ValueError: ``"<name> must be > 0, got <value>"``.
    """
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def check_non_negative(**values: Any) -> None:
    """Raise for the first of ``values`` (name=value) that is not ``>= 0``.

    The twin of :func:`check_positive` (NaN is not ``>= 0`` either).

    Raises:
        ValueError: ``"<name> must be >= 0, got <value>"``.
    """
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
