"""Explicit, once-per-step orthogonalization of deel-lip kernels.

deel-lip's constrained layers (``SpectralDense``, ``SpectralConv2D``, ...) keep an
unconstrained ``kernel`` and compute the constrained kernel ``wbar`` (spectral
normalization + Björck, or a Frobenius normalization) *at every call* in training
mode, storing it in a non-trainable ``wbar`` variable that inference-mode calls
read. An OCSDF training step calls the network many times (T Newton-Raphson
steps, then the loss on positives and negatives): letting each call
re-orthogonalize would repeat the most expensive computation T + 2 times.

This module computes every ``wbar`` once, differentiably, so the training step
can (1) assign them to the layers' ``wbar`` variables, (2) run all forward passes
in inference mode, which read those variables, and (3) map the gradient of the
loss w.r.t. ``wbar`` back to the ``kernel`` by the chain rule
(``dL/dkernel = (d wbar / d kernel)^T dL/dwbar``, one vector-Jacobian product of
the orthogonalization). The result is the same gradient as deel-lip's own
training-mode call, at the cost of a single orthogonalization.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from deel.lip.layers import (
    FrobeniusConv2D,
    FrobeniusDense,
    SpectralConv2D,
    SpectralConv2DTranspose,
    SpectralDense,
)
from deel.lip.normalizers import reshaped_kernel_orthogonalization

_SPECTRAL = (SpectralDense, SpectralConv2D)
_SUPPORTED = (SpectralDense, SpectralConv2D, SpectralConv2DTranspose)
_FROBENIUS = (FrobeniusDense, FrobeniusConv2D)

#: Layers whose behaviour depends on ``training`` in a way OCSDF cannot honour.
_TRAINING_DEPENDENT = (
    tf.keras.layers.Dropout,
    tf.keras.layers.BatchNormalization,
    tf.keras.layers.GaussianNoise,
)


@dataclass
class Orthogonalized:
    """The constrained kernel of one layer and the state updates that go with it."""

    layer: tf.keras.layers.Layer
    wbar: tf.Tensor
    u: tf.Tensor | None = None
    sigma: tf.Tensor | None = None

    def assign(self, update_power_iteration: bool = True) -> None:
        """Write ``wbar`` (and, by default, the power-iteration state) into the layer.

        Args:
            update_power_iteration: also advance the layer's power-iteration
                vector ``u`` and ``sigma`` (training does; re-synchronising
                for inference does not, so repeated syncs give the same kernel).
        """
        self.layer.wbar.assign(tf.stop_gradient(self.wbar))
        if self.u is not None and update_power_iteration:
            self.layer.u.assign(tf.stop_gradient(self.u))
            self.layer.sig.assign(tf.stop_gradient(self.sigma))


def constrained_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """All deel-lip layers of ``model`` that hold a ``kernel`` and a ``wbar``.

    Raises:
        ValueError: if the model contains a layer whose output depends on the
            ``training`` flag (dropout, batch normalization, noise), which the
            once-per-step scheme runs in inference mode.
    """
    found = []
    for layer in model.submodules:
        if isinstance(layer, _TRAINING_DEPENDENT):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) behaves differently "
                "in training and inference; OCSDF backbones must not contain "
                "dropout, batch normalization or noise layers"
            )
        if isinstance(layer, _SUPPORTED + _FROBENIUS):
            found.append(layer)
    return found


def orthogonalize(layer: tf.keras.layers.Layer) -> Orthogonalized:
    """Compute a layer's constrained kernel exactly as its training call does.

    Differentiable w.r.t. ``layer.kernel``; does not modify the layer.
    """
    if isinstance(layer, _SPECTRAL) or isinstance(layer, SpectralConv2DTranspose):
        kernel = layer.kernel
        transposed = isinstance(layer, SpectralConv2DTranspose)
        if transposed:
            kernel = tf.transpose(kernel, [0, 1, 3, 2])
        wbar, u, sigma = reshaped_kernel_orthogonalization(
            kernel,
            layer.u,
            layer._get_coef(),
            layer.eps_spectral,
            layer.eps_bjorck,
            layer.beta_bjorck,
            layer.maxiter_spectral,
            layer.maxiter_bjorck,
        )
        if transposed:
            wbar = tf.transpose(wbar, [0, 1, 3, 2])
        return Orthogonalized(layer, wbar, u, sigma)
    if isinstance(layer, FrobeniusDense):
        wbar = layer.kernel / tf.norm(layer.kernel, axis=layer.axis_norm)
        return Orthogonalized(layer, wbar * layer._get_coef())
    if isinstance(layer, FrobeniusConv2D):
        wbar = layer.kernel / tf.norm(layer.kernel)
        return Orthogonalized(layer, wbar * layer._get_coef())
    raise TypeError(f"no orthogonalization known for {type(layer).__name__}")


def sync_constrained_kernels(layers: list[tf.keras.layers.Layer]) -> None:
    """Recompute every ``wbar`` from the current kernels (after an update).

    The power-iteration state is left as it is, so syncing twice without an
    update in between gives bit-identical kernels (and scores).
    """
    for layer in layers:
        orthogonalize(layer).assign(update_power_iteration=False)
