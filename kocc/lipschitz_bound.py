r"""Sound upper bounds on the l2 Lipschitz constant of a plain Keras network.

A certificate ``r(x) = |f(x) - t| / L`` is only as good as ``L``. Before a network
is exported with certificates (:mod:`kocc.export`), its Lipschitz constant is
bounded from the weights actually served, not from how they were trained: for a
chain of layers :math:`f = g_k \circ \dots \circ g_1`,

.. math::
    \mathrm{Lip}(f) \le \prod_i \mathrm{Lip}(g_i),

with, per layer,

* ``Dense``: the spectral norm :math:`\|W\|_2` of the kernel (largest singular
  value, ``np.linalg.norm(W, 2)``), times the activation's constant;
* ``Conv2D`` / ``Conv2DTranspose`` (any stride, dilation, ``same``/``valid``
  padding): the zero-padded convolution of an ``h x w`` input is a restriction of
  the circular convolution on the ``(h + k - 1) x (w + k - 1)`` grid (then cropped
  and subsampled, which does not increase norms), whose singular values are those
  of the ``c_in x c_out`` matrices of the kernel's 2-D DFT at each frequency
  (Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR
  2019). The bound is the largest of them: exact for the circular operator, an
  upper bound for the padded one;
* parameter-free 1-Lipschitz layers (GroupSort / FullSort / MaxMin, ReLU,
  Flatten, Reshape, non-overlapping max pooling, deel-lip's scaled l2 / average
  poolings): their coefficient.

Any other layer (or a non-chain topology) is refused: a bound that cannot be
proved is not reported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from deel.lip.activations import FullSort, GroupSort, GroupSort2, MaxMin
from deel.lip.layers import (
    ScaledAveragePooling2D,
    ScaledGlobalAveragePooling2D,
    ScaledGlobalL2NormPooling2D,
    ScaledL2NormPooling2D,
)


class LipschitzBoundError(ValueError):
    """The network's Lipschitz constant cannot be bounded (unsupported layer...)."""


#: Lipschitz constants of element-wise activations (``activation=`` of a layer).
_ACTIVATION_LIPSCHITZ: dict[str, float] = {
    "linear": 1.0,
    "relu": 1.0,
    "tanh": 1.0,
    "sigmoid": 0.25,
    "softsign": 1.0,
}

_NO_PARAMETER_1LIP = (
    tf.keras.layers.InputLayer,
    tf.keras.layers.Flatten,
    tf.keras.layers.Reshape,
    tf.keras.layers.GlobalMaxPooling2D,
)
_SORTING = (FullSort, GroupSort, GroupSort2, MaxMin)
_SCALED_POOLS = (ScaledAveragePooling2D, ScaledL2NormPooling2D)
_SCALED_GLOBAL_POOLS = (ScaledGlobalAveragePooling2D, ScaledGlobalL2NormPooling2D)


def activation_lipschitz(activation: Callable | str | None, where: str) -> float:
    """The Lipschitz constant of an element-wise Keras activation.

    Raises:
        LipschitzBoundError: for an activation without a known constant.
    """
    if activation is None:
        return 1.0
    name = (
        activation
        if isinstance(activation, str)
        else tf.keras.activations.serialize(activation)
    )
    if isinstance(name, dict):  # Keras serializes some activations as configs
        name = name.get("config", {}).get("name", name.get("class_name"))
    if name not in _ACTIVATION_LIPSCHITZ:
        raise LipschitzBoundError(
            f"{where}: activation {name!r} has no known Lipschitz constant; "
            f"supported: {sorted(_ACTIVATION_LIPSCHITZ)}"
        )
    return _ACTIVATION_LIPSCHITZ[name]


def dense_kernel_bound(kernel: np.ndarray) -> float:
    """Spectral norm ``||W||_2`` of a dense kernel (its largest singular value)."""
    return float(np.linalg.norm(np.asarray(kernel, dtype=np.float64), ord=2))


def conv2d_kernel_bound(
    kernel: np.ndarray,
    input_hw: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> float:
    r"""Upper bound on the l2 operator norm of a 2-D convolution.

    Largest singular value over the frequencies :math:`\omega` of the
    ``(h + k_h - 1) x (w + k_w - 1)`` grid of the matrices
    :math:`\hat K(\omega) = \sum_{a,b} K_{ab} e^{-2\pi i (a\omega_1/N_1 +
    b\omega_2/N_2)}` (Sedghi et al., ICLR 2019), with ``K`` dilated first. It
    bounds the convolution for any stride and for ``same`` or ``valid`` padding.

    Args:
        kernel: ``(k_h, k_w, c_in, c_out)`` (Keras ``Conv2D`` layout; a
            ``Conv2DTranspose`` kernel has the same singular values).
        input_hw: spatial size of the convolution's (larger) side.
        dilation: dilation rate.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw = kernel.shape[:2]
    dh, dw = (int(d) for d in dilation)
    if (dh, dw) != (1, 1):
        dilated = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, *kernel.shape[2:]))
        dilated[::dh, ::dw] = kernel
        kernel = dilated
        kh, kw = kernel.shape[:2]
    grid = (int(input_hw[0]) + kh - 1, int(input_hw[1]) + kw - 1)
    spectrum = np.fft.fft2(kernel, s=grid, axes=(0, 1))
    return float(np.linalg.svd(spectrum, compute_uv=False).max())


def layer_lipschitz_bound(layer: tf.keras.layers.Layer) -> float:
    """A proven upper bound on one layer's l2 Lipschitz constant.

    Raises:
        LipschitzBoundError: for a layer kocc cannot bound.
    """
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    if isinstance(layer, tf.keras.Model):
        return lipschitz_upper_bound(layer)
    if isinstance(layer, _SORTING):
        return abs(float(layer.k_coef_lip))
    if isinstance(layer, _SCALED_GLOBAL_POOLS):
        return abs(float(layer.k_coef_lip))
    if isinstance(layer, _SCALED_POOLS):
        if tuple(layer.pool_size) != tuple(layer.strides) or layer.padding != "valid":
            raise LipschitzBoundError(
                f"{where}: scaled pooling is 1-Lipschitz only with non-overlapping "
                f"windows (strides == pool_size, padding 'valid'), got pool_size="
                f"{layer.pool_size}, strides={layer.strides}, padding={layer.padding!r}"
            )
        return abs(float(layer.k_coef_lip))
    if isinstance(layer, _NO_PARAMETER_1LIP):
        return 1.0
    if isinstance(layer, tf.keras.layers.MaxPooling2D):
        if any(p > s for p, s in zip(layer.pool_size, layer.strides, strict=True)):
            raise LipschitzBoundError(
                f"{where}: overlapping max pooling (pool_size={layer.pool_size} > "
                f"strides={layer.strides}) is not 1-Lipschitz in l2"
            )
        return 1.0
    if type(layer) is tf.keras.layers.ReLU:
        if float(layer.threshold) != 0.0:
            raise LipschitzBoundError(f"{where}: a non-zero threshold is a jump")
        return max(1.0, abs(float(layer.negative_slope)))
    if type(layer) is tf.keras.layers.Activation:
        return activation_lipschitz(layer.activation, where)
    if type(layer) is tf.keras.layers.Dense:
        return dense_kernel_bound(layer.kernel.numpy()) * activation_lipschitz(
            layer.activation, where
        )
    if type(layer) in (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose):
        if layer.data_format != "channels_last":
            raise LipschitzBoundError(f"{where}: only channels_last is supported")
        transposed = type(layer) is tf.keras.layers.Conv2DTranspose
        spatial = layer.output_shape if transposed else layer.input_shape
        hw = tuple(spatial[1:3])
        if None in hw:
            raise LipschitzBoundError(f"{where}: the spatial input size must be known")
        bound = conv2d_kernel_bound(layer.kernel.numpy(), hw, layer.dilation_rate)
        return bound * activation_lipschitz(layer.activation, where)
    raise LipschitzBoundError(
        f"{where}: no Lipschitz bound is known for this layer type. Supported: "
        "Dense, Conv2D, Conv2DTranspose, deel-lip sorting activations and scaled "
        "poolings, ReLU, Activation, Flatten, Reshape, non-overlapping max pooling"
    )


def _chain(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The model's layers, checked to form a single chain (no branches)."""
    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, tf.keras.layers.InputLayer)
    ]
    if isinstance(model, tf.keras.Sequential):
        return layers
    if not getattr(model, "_is_graph_network", False):
        raise LipschitzBoundError(
            f"model {model.name!r} is a subclassed model: its layer graph cannot be "
            "read, so no Lipschitz bound can be proved"
        )
    previous = model.inputs
    if len(previous) != 1 or len(model.outputs) != 1:
        raise LipschitzBoundError(
            f"model {model.name!r} must have one input and one output"
        )
    for layer in layers:
        nodes = layer.inbound_nodes
        inputs = tf.nest.flatten(nodes[0].input_tensors) if len(nodes) == 1 else []
        if len(inputs) != 1 or inputs[0] is not previous[0]:
            raise LipschitzBoundError(
                f"model {model.name!r} is not a chain of layers (layer "
                f"{layer.name!r} branches or is shared): the per-layer product "
                "bound does not apply"
            )
        previous = tf.nest.flatten(layer.output)
    return layers


def lipschitz_upper_bound(model: tf.keras.Model) -> float:
    r"""A proven upper bound :math:`\prod_i \mathrm{Lip}(g_i)` on ``model``.

    Args:
        model: a built Keras ``Sequential`` or functional chain (e.g. the
            vanilla export of a deel-lip network).

    Returns:
        The bound, a float.

    Raises:
        LipschitzBoundError: if a layer cannot be bounded or the model branches.
    """
    bound = 1.0
    for layer in _chain(model):
        bound *= layer_lipschitz_bound(layer)
    return bound
