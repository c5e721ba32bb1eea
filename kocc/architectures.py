"""1-Lipschitz network factories built from deel-lip layers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from deel.lip.initializers import SpectralInitializer
from deel.lip.layers import (
    FrobeniusDense,
    ScaledGlobalL2NormPooling2D,
    ScaledL2NormPooling2D,
    SpectralConv2D,
    SpectralDense,
)
from deel.lip.model import Sequential as LipSequential

from kocc.activations import FullSort, GroupSort, GroupSort2
from kocc.orthogonalization import constrained_layers, sync_constrained_kernels

#: The paper's image network (Table 5, "Mnist" column): channels of the 3x3
#: convolutions, one tuple per stage; every stage ends with an l2-norm pooling.
PAPER_VGG_WIDTHS = ((64, 64, 64, 64), (128, 128, 128, 128), (256, 256, 256))

#: The paper's dense network (appendix E): four hidden layers of 512.
PAPER_MLP_WIDTHS = (512, 512, 512, 512)

_ACTIVATIONS = {
    "fullsort": FullSort,
    "groupsort2": GroupSort2,
}


def lipschitz_activation(name: str) -> tf.keras.layers.Layer:
    """A gradient-norm-preserving activation layer by name.

    Args:
        name: ``"fullsort"`` (sort the whole vector; the paper's choice for the
            dense networks) or ``"groupsort2"`` (sort pairs, a.k.a. MaxMin), or
            ``"groupsort<k>"`` for groups of ``k``. kocc's layers
            (:mod:`kocc.activations`): deel-lip's with a faster sort, same
            outputs and configuration.

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
    input_dim: int | Sequence[int],
    widths: Sequence[int] = PAPER_MLP_WIDTHS,
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
        input_dim: number of input features, or an input shape such as
            ``(H, W, C)``: the input is then flattened first (a reshape, which
            preserves the l2 norm), so the same network scores images.
        widths: hidden layer widths (the paper: four layers of 512).
        activation: see :func:`lipschitz_activation`.
        seed: seed of the (orthogonal) kernel initialization and of the
            power-iteration vectors: the same seed builds the same network.
            ``None`` draws from TensorFlow's global generator
            (``tf.keras.utils.set_random_seed``).
        name: model name.

    Returns:
        A deel-lip ``Sequential`` mapping ``(n, *input_shape)`` to ``(n, 1)``.

    Raises:
        ValueError: on a non-positive ``input_dim`` (or input-shape entry) or
            width, or an unknown activation.
    """
    shape = (
        (int(input_dim),)
        if isinstance(input_dim, (int, np.integer))
        else tuple(int(s) for s in input_dim)
    )
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_dim must be > 0, got {input_dim!r}")
    widths = [int(w) for w in widths]
    if any(w <= 0 for w in widths):
        raise ValueError(f"widths must be positive, got {widths}")
    lipschitz_activation(activation)  # validate early
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input(shape)]
    if len(shape) > 1:
        layers.append(tf.keras.layers.Flatten())
    for i, width in enumerate(widths):
        layers += [
            SpectralDense(width, kernel_initializer=_initializer(seed, i)),
            lipschitz_activation(activation),
        ]
    layers.append(FrobeniusDense(1, kernel_initializer=_initializer(seed, len(widths))))
    network = LipSequential(layers, name=name)
    if seed is not None:
        _seed_power_iteration(network, int(seed))
    return network


def _initializer(
    seed: int | None, index: int
) -> SpectralInitializer | tf.keras.initializers.Orthogonal:
    """A fresh orthogonal initializer per layer (deel-lip's default is shared).

    With a seed, the plain seeded ``Orthogonal``: its kernels already have unit
    singular values, and deel-lip's ``SpectralInitializer`` would re-normalize
    them from an *unseeded* random power-iteration start, which made two
    networks built with the same seed differ (by ~1e-6).
    """
    if seed is None:
        return SpectralInitializer(base_initializer=tf.keras.initializers.Orthogonal())
    return tf.keras.initializers.Orthogonal(seed=int(seed) * 1000 + index)


def _seed_power_iteration(network: tf.keras.Model, seed: int) -> None:
    """Redraw the spectral layers' power-iteration vectors ``u`` from ``seed``.

    deel-lip draws them from TensorFlow's global generator; the constrained
    kernels are then recomputed, so the network is a function of ``seed`` alone.
    """
    layers = constrained_layers(network)
    for index, layer in enumerate(layers):
        if getattr(layer, "u", None) is not None:
            layer.u.assign(
                tf.random.stateless_normal(layer.u.shape, seed=(int(seed), index))
            )
    sync_constrained_kernels(layers)


def lipschitz_vgg(
    input_shape: Sequence[int],
    widths: Sequence[Sequence[int]] = PAPER_VGG_WIDTHS,
    activation: str = "groupsort2",
    seed: int | None = None,
    name: str = "lipschitz_vgg",
) -> LipSequential:
    """The paper's 1-Lipschitz VGG for images (Table 5, "Mnist" column).

    For each stage ``s`` of ``widths``: ``SpectralConv2D(w, 3x3, padding="same")``
    followed by ``activation`` for every width ``w`` of the stage, then a 2x2
    ``ScaledL2NormPooling2D``; after the last stage a
    ``ScaledGlobalL2NormPooling2D`` and a ``FrobeniusDense`` to one output. With
    the default widths: conv3x3-64 x4, pool, conv3x3-128 x4, pool, conv3x3-256 x3,
    pool, global l2-norm pooling, dense-1.

    Every layer is 1-Lipschitz for the l2 norm (deel-lip's convolutions carry the
    zero-padding correction factor; l2-norm poolings over disjoint windows are
    1-Lipschitz; GroupSort is gradient-norm preserving), hence so is the network.
    The cached constrained kernels are synchronised before returning, so the
    network is 1-Lipschitz in inference mode right away.

    Args:
        input_shape: ``(H, W, C)``.
        widths: conv channels per stage (at least one stage, each non-empty).
            A spatial size of 1 is reached after ``log2(min(H, W))`` poolings;
            the number of stages must not exceed that.
        activation: see :func:`lipschitz_activation` (the paper: GroupSort2).
        seed: seed of the orthogonal initializations (``None``: global seed).
        name: model name.

    Returns:
        A deel-lip ``Sequential`` mapping ``(n, H, W, C)`` to ``(n, 1)``.

    Raises:
        ValueError: on an input shape that is not ``(H, W, C)`` with positive
            sizes, empty or non-positive widths, too many stages for the image
            size, or an unknown activation.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive sizes, "
            f"got {tuple(input_shape)!r}"
        )
    stages = [[int(w) for w in stage] for stage in widths]
    if not stages or any(not stage for stage in stages):
        raise ValueError(f"widths must be non-empty stages of widths, got {widths!r}")
    if any(w <= 0 for stage in stages for w in stage):
        raise ValueError(f"widths must be positive, got {widths!r}")
    size = min(shape[:2])
    if size < 2 ** len(stages):
        raise ValueError(
            f"{len(stages)} stages of 2x2 pooling need images of at least "
            f"{2 ** len(stages)} pixels per side, got {shape[:2]}"
        )
    lipschitz_activation(activation)  # validate early
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input(shape)]
    index = 0
    for stage in stages:
        for width in stage:
            layers += [
                SpectralConv2D(
                    width,
                    (3, 3),
                    padding="same",
                    kernel_initializer=_initializer(seed, index),
                ),
                lipschitz_activation(activation),
            ]
            index += 1
        layers.append(ScaledL2NormPooling2D(pool_size=(2, 2)))
    layers += [
        ScaledGlobalL2NormPooling2D(),
        FrobeniusDense(1, kernel_initializer=_initializer(seed, index)),
    ]
    model = LipSequential(layers, name=name)
    if seed is not None:
        _seed_power_iteration(model, int(seed))
    else:
        sync_constrained_kernels(constrained_layers(model))
    return model
