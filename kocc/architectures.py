"""1-Lipschitz network factories built from deel-lip layers."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from deel.lip.activations import FullSort, GroupSort, GroupSort2
from deel.lip.initializers import SpectralInitializer
from deel.lip.layers import FrobeniusDense, SpectralDense
from deel.lip.model import Sequential as LipSequential

_ACTIVATIONS = {
    "fullsort": FullSort,
    "groupsort2": GroupSort2,
}


def lipschitz_activation(name: str) -> tf.keras.layers.Layer:
    """A gradient-norm-preserving activation layer by name.

    Args:
        name: ``"fullsort"`` (sort the whole vector; the paper's choice for the
            dense networks) or ``"groupsort2"`` (sort pairs, a.k.a. MaxMin), or
            ``"groupsort<k>"`` for groups of ``k``.

    Raises:
        ValueError: for an unknown name.
    """
    key = name.lower()
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key]()
    if key.startswith("groupsort") and key[len("groupsort") :].isdigit():
        return GroupSort(n=int(key[len("groupsort") :]))
    raise ValueError(
        f"unknown activation {name!r}: expected one of "
        f"{sorted(_ACTIVATIONS)} or 'groupsort<k>'"
    )


def lipschitz_mlp(
    input_dim: int,
    widths: Sequence[int] = (512, 512, 512, 512),
    activation: str = "fullsort",
    seed: int | None = None,
    name: str = "lipschitz_mlp",
) -> LipSequential:
    """The paper's dense 1-Lipschitz network (appendix E): ``d -> widths -> 1``.

    Hidden layers are deel-lip ``SpectralDense`` (orthogonal kernels, Björck
    orthonormalization) followed by a gradient-norm-preserving activation; the
    last layer is a ``FrobeniusDense`` to one output (a unit-norm row), so the
    network is 1-Lipschitz w.r.t. the l2 norm.

    Args:
        input_dim: number of input features.
        widths: hidden layer widths (the paper: four layers of 512).
        activation: see :func:`lipschitz_activation`.
        seed: seed of the (orthogonal) kernel initialization; ``None`` draws from
            TensorFlow's global seed (``tf.keras.utils.set_random_seed``).
        name: model name.

    Returns:
        A deel-lip ``Sequential`` mapping ``(n, input_dim)`` to ``(n, 1)``.

    Raises:
        ValueError: on a non-positive ``input_dim`` or width, or an unknown
            activation.
    """
    if int(input_dim) <= 0:
        raise ValueError(f"input_dim must be > 0, got {input_dim!r}")
    widths = [int(w) for w in widths]
    if any(w <= 0 for w in widths):
        raise ValueError(f"widths must be positive, got {widths}")
    lipschitz_activation(activation)  # validate early
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input((int(input_dim),))]
    for i, width in enumerate(widths):
        layers += [
            SpectralDense(width, kernel_initializer=_initializer(seed, i)),
            lipschitz_activation(activation),
        ]
    layers.append(FrobeniusDense(1, kernel_initializer=_initializer(seed, len(widths))))
    return LipSequential(layers, name=name)


def _initializer(seed: int | None, index: int) -> SpectralInitializer:
    """A fresh orthogonal initializer per layer (deel-lip's default is shared)."""
    base = tf.keras.initializers.Orthogonal(
        seed=None if seed is None else int(seed) * 1000 + index
    )
    return SpectralInitializer(base_initializer=base)
