"""Orthogonalization of deel-lip kernels: once per step, by retraction or chain rule.

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
training-mode call, at the cost of a single orthogonalization
(:data:`CHAIN_RULE`).

The default of :class:`kocc.models.OCSDF` is cheaper (:data:`RETRACTION`): the
free ``kernel`` itself is kept orthogonal (up to the layer's coefficient). The
loss gradient w.r.t. ``wbar`` is applied to the kernel (``wbar = c K``, so
``dL/dK = c dL/dwbar``; :func:`kernel_gradients`), and after the optimizer's
update :func:`retract` maps the kernel back onto the orthogonal matrices by
Newton-Schulz (Björck) steps started from the updated kernel. That kernel is one
small step away from an orthogonal matrix, so one step (rarely two) brings it
back, and no vector-Jacobian product of Björck is ever formed: projected
gradient descent on the orthogonal
group (the authors' code has the same "projection" option, ``pgd``), instead of
gradient descent through the orthogonalization. The network that predicts and
exports is re-orthogonalized by deel-lip's own normalization at the end of
``fit``, so inference, export and the Lipschitz bound
(:mod:`kocc.lipschitz_bound`) are unchanged.

The functions the training step calls (:func:`orthogonalize`, :func:`retract`,
:func:`kernel_gradients`, :func:`sync_constrained_kernels`) branch only on
Python values (layer types, static shapes) and loop with ``tf.while_loop``, so
they are traced as written (``tf.autograph.experimental.do_not_convert``):
autograph's source conversion of them and of the deel-lip normalizers they
call cost every process about 2 CPU seconds at its first fit (the first
``OneClassSDF`` fit of a process: 10.5-11.3 CPU s against 12.8-13.7, with
:mod:`kocc.activations`' sorting functions also unconverted; same weights).
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

#: Orthogonalization settings of :class:`kocc.models.OCSDF`.
RETRACTION = "retraction"
CHAIN_RULE = "chain_rule"
ORTHOGONALIZATIONS = (RETRACTION, CHAIN_RULE)

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

    @tf.autograph.experimental.do_not_convert
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


@tf.autograph.experimental.do_not_convert
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


@tf.autograph.experimental.do_not_convert
def sync_constrained_kernels(layers: list[tf.keras.layers.Layer]) -> None:
    """Recompute every ``wbar`` from the current kernels (after an update).

    The power-iteration state is left as it is, so syncing twice without an
    update in between gives bit-identical kernels (and scores).
    """
    for layer in layers:
        orthogonalize(layer).assign(update_power_iteration=False)


def kernel_coefficient(layer: tf.keras.layers.Layer) -> tf.Tensor:
    """The scalar ``c`` of ``wbar = c * normalize(kernel)`` (deel-lip's ``_get_coef``).

    1 for dense layers; deel-lip's zero-padding correction for convolutions.
    """
    return tf.cast(layer._get_coef(), layer.kernel.dtype)


def _tangent(kernel: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """Project ``grad`` on the tangent space of the Stiefel manifold at ``kernel``.

    ``kernel`` (as a matrix ``K``, flattened like deel-lip's reshaped kernel) has
    orthonormal columns (``K^T K = I``, tall) or rows (``K K^T = I``, wide); the
    projection removes ``K sym(K^T G)`` (resp. ``sym(G K^T) K``), the part of
    the step that only changes the singular values, which the retraction would
    undo anyway.
    """
    k = tf.reshape(kernel, [-1, kernel.shape[-1]])
    g = tf.reshape(grad, tf.shape(k))
    if k.shape[0] >= k.shape[1]:
        inner = tf.matmul(k, g, transpose_a=True)
        g = g - k @ (0.5 * (inner + tf.transpose(inner)))
    else:
        inner = tf.matmul(g, k, transpose_b=True)
        g = g - (0.5 * (inner + tf.transpose(inner))) @ k
    return tf.reshape(g, tf.shape(grad))


def _sphere_tangent(kernel: tf.Tensor, grad: tf.Tensor, axis: int | None) -> tf.Tensor:
    """Project ``grad`` on the tangent space of the unit sphere(s) at ``kernel``.

    Frobenius layers normalize the kernel (per column along ``axis``, or as a
    whole): the radial part ``k <k, g>`` only rescales it and is removed.
    """
    return grad - kernel * tf.reduce_sum(kernel * grad, axis=axis, keepdims=True)


@tf.autograph.experimental.do_not_convert
def kernel_gradients(
    layers: list[tf.keras.layers.Layer],
    wbar_grads: list[tf.Tensor | None],
    tangent: bool = True,
) -> list[tf.Tensor | None]:
    """Projected-gradient step's kernel gradients: ``dL/dK = c dL/dwbar``.

    With the kernel kept orthogonal by :func:`retract`, ``wbar = c K``. With
    ``tangent`` (default) the gradient is projected on the tangent space of the
    orthogonal matrices at ``K`` (the Riemannian gradient, which is also what
    the chain rule through the orthogonalization gives at an orthogonal
    kernel); the retraction that follows the update removes what is left of the
    normal component.
    """
    grads = []
    for layer, g in zip(layers, wbar_grads, strict=True):
        if g is not None:
            g = g * kernel_coefficient(layer)
            if tangent and isinstance(layer, _FROBENIUS):
                g = _sphere_tangent(layer.kernel, g, getattr(layer, "axis_norm", None))
            elif tangent:
                g = _tangent(layer.kernel, g)
        grads.append(g)
    return grads


#: Newton-Schulz (Björck, beta = 1/2) iterations per retraction; more are run
#: only while the kernel is farther than :data:`RETRACTION_TOLERANCE` (Frobenius
#: norm of ``K^T K - I``, measured before a step) from the orthogonal matrices.
#: One step from an updated 512 x 512 kernel (``||K^T K - I||_F`` 0.25-0.36 on
#: average over 100 steps of the benchmark's GroupSort2 network) leaves every
#: ``|sigma^2 - 1|`` under 0.01 (mean of the maximum 0.005-0.009); the
#: predicting and exported network is orthogonalized to deel-lip's own
#: tolerance (:func:`sync_constrained_kernels`). See ``docs/performance.md``.
RETRACTION_ITERATIONS = 1
RETRACTION_TOLERANCE = 0.3
#: The updated kernel is divided by its largest singular value (one
#: warm-started power-iteration step) only above this value: Newton-Schulz
#: converges for singular values in (0, sqrt(3)), and dividing by a value just
#: above 1 would shift every other singular value away from 1 (the first-order
#: deviation the retraction then has to remove: ``||K^T K - I||_F`` 0.85-1.4
#: instead of 0.24-0.35 after a step, measured as above).
RESCALE_ABOVE = 1.25


def _matrix_view(layer: tf.keras.layers.Layer, kernel: tf.Tensor) -> tf.Tensor:
    """The kernel as deel-lip orthogonalizes it: ``(fan_in, fan_out)``."""
    if isinstance(layer, SpectralConv2DTranspose):
        kernel = tf.transpose(kernel, [0, 1, 3, 2])
    return tf.reshape(kernel, [-1, kernel.shape[-1]])


def _from_matrix_view(layer: tf.keras.layers.Layer, matrix: tf.Tensor) -> tf.Tensor:
    shape = layer.kernel.shape
    if isinstance(layer, SpectralConv2DTranspose):
        transposed = (shape[0], shape[1], shape[3], shape[2])
        return tf.transpose(tf.reshape(matrix, transposed), [0, 1, 3, 2])
    return tf.reshape(matrix, shape)


def _newton_schulz(
    w: tf.Tensor, iterations: int, tolerance: float, maxiter: int
) -> tf.Tensor:
    r"""Björck / Newton-Schulz steps :math:`W \leftarrow W - \tfrac12 W (W^TW - I)`.

    (``W - (WW^T - I) W / 2`` for a wide ``W``.) Runs ``iterations`` steps, and
    more (up to ``maxiter``) while :math:`\|W^TW - I\|_F` measured before a
    step exceeds ``tolerance``. Each step costs two products with the Gram
    matrix of the smaller side; from a near-orthogonal ``W`` one step divides
    the deviation of every singular value ``1 + e`` to about ``1.5 e^2``.
    """
    tall = w.shape[0] >= w.shape[1]
    eye = tf.eye(min(w.shape), dtype=w.dtype)

    def body(i, w, _):
        gram = (
            tf.matmul(w, w, transpose_a=True)
            if tall
            else tf.matmul(w, w, transpose_b=True)
        )
        deviation = gram - eye
        w = w - 0.5 * (w @ deviation if tall else deviation @ w)
        return i + 1, w, tf.norm(deviation)

    def cond(i, w, error):
        return tf.logical_or(
            i < iterations, tf.logical_and(error > tolerance, i < maxiter)
        )

    _, w, _ = tf.while_loop(
        cond, body, (tf.constant(0), w, tf.constant(float("inf"), w.dtype))
    )
    return w


def _retract_spectral(layer: tf.keras.layers.Layer, iterations: int) -> None:
    matrix = _matrix_view(layer, layer.kernel)
    # warm-started power iteration: one step tracks the top singular vector
    v = tf.math.l2_normalize(layer.u @ tf.transpose(matrix), axis=-1)
    u = tf.math.l2_normalize(v @ matrix, axis=-1)
    sigma = tf.reduce_sum((v @ matrix) * u)
    # Newton-Schulz converges for singular values in (0, sqrt(3)): rescale only
    # when an update has pushed the largest far above 1 (RESCALE_ABOVE)
    matrix = matrix / tf.where(sigma > RESCALE_ABOVE, sigma, tf.ones_like(sigma))
    matrix = _newton_schulz(
        matrix, iterations, RETRACTION_TOLERANCE, int(layer.maxiter_bjorck)
    )
    kernel = _from_matrix_view(layer, matrix)
    layer.kernel.assign(kernel)
    layer.wbar.assign(kernel * kernel_coefficient(layer))
    layer.u.assign(u)
    layer.sig.assign(tf.reshape(sigma, layer.sig.shape))


@tf.autograph.experimental.do_not_convert
def retract(
    layers: list[tf.keras.layers.Layer],
    iterations: int = RETRACTION_ITERATIONS,
    warm: bool = True,
) -> None:
    """Map every kernel back onto the constraint set and refresh ``wbar``.

    Spectral layers with Björck, ``warm`` (after an optimizer update): the
    updated kernel, a small step away from an orthogonal matrix, is divided by
    its largest singular value when that exceeds :data:`RESCALE_ABOVE` (one
    warm-started power-iteration step) and moved back by ``iterations``
    Newton-Schulz steps (:func:`_newton_schulz`, more while it is farther than
    :data:`RETRACTION_TOLERANCE`); the kernel and the cached ``wbar = c K`` take
    the result. Frobenius layers, spectral layers without Björck, and every
    layer when not ``warm`` (the start of ``fit``, from kernels that may be
    anything) take deel-lip's own normalization (:func:`orthogonalize`: power
    iteration and Björck to the layer's tolerances), kernel set to ``wbar / c``.

    Each Newton-Schulz step squares the deviation one update adds. One step
    (the default) keeps the training kernels within ``|sigma^2 - 1| < 0.01`` of
    orthogonal; two kept them within ~1e-4 and cost two more products per
    kernel and step without a better SDF over seeds (``docs/performance.md``).
    The network that predicts and exports is re-orthogonalized by deel-lip's
    own normalization, run to its tolerance (:func:`sync_constrained_kernels`,
    called by ``OCSDF.fit`` at the end), and its Lipschitz bound is proved from
    those weights (:mod:`kocc.lipschitz_bound`). Not differentiated (call it
    outside any gradient tape).
    """
    for layer in layers:
        bjorck = (
            isinstance(layer, _SUPPORTED)
            and layer.eps_bjorck is not None
            and layer.beta_bjorck is not None
        )
        if warm and bjorck:
            _retract_spectral(layer, iterations)
            continue
        ortho = orthogonalize(layer)
        wbar = tf.stop_gradient(ortho.wbar)
        layer.kernel.assign(wbar / kernel_coefficient(layer))
        ortho.assign()
