r"""A conventional one-class baseline: an unconstrained ReLU network trained with BCE.

The comparison point of Béthune et al. (ICML 2023), Table 1: the same negatives
as OCSDF (uniform in a domain, optionally moved by Newton-Raphson steps,
Algorithm 1), but an ordinary ReLU MLP and the binary cross-entropy

.. math::

    \mathcal{L} = -\frac{1}{N}\sum_i \big[y_i \log\sigma(f(x_i))
    + (1 - y_i)\log(1 - \sigma(f(x_i)))\big],

with ``y = 1`` for normal samples and ``y = 0`` for negatives. The logit ``f``
is the normality score (positive = normal), as for OCSDF. Nothing bounds its
Lipschitz constant: BCE rewards ever larger logits, so the network grows steep
near the data and an attack of small radius moves its scores a lot, which
:mod:`kocc.diagnostics` and :mod:`kocc.attacks` measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.datasets.pipelines import without_autotuning
from kocc.models import OCSDF
from kocc.sampling import Domain
from kocc.validation import check_batch

__all__ = ["OneClassBCE", "bce_network", "fit_bce_network"]


@tf.keras.utils.register_keras_serializable("kocc")
class OneClassBCE(tf.keras.losses.Loss):
    r"""Binary cross-entropy on logits with OCSDF's labels (+1 normal, -1 negative).

    :math:`\mathcal{L}(y, f) = \log(1 + e^{-y f})`, i.e. the BCE of
    :math:`\sigma(f)` against the 0/1 label :math:`(1 + y) / 2`, so that
    :class:`kocc.models.OCSDF` trains the baseline with its own ``train_step``
    (``OCSDF(network, domain, loss=OneClassBCE())``).

    Args:
        level_set: the level the Newton-Raphson steps move negatives to
            (:attr:`negative_level`; 0 = the decision boundary).
        reduction: Keras loss reduction (default: mean over the batch).
        name: loss name.

    Raises:
        ValueError: if ``level_set`` is not finite.
    """

    def __init__(
        self,
        level_set: float = 0.0,
        reduction: str = tf.keras.losses.Reduction.AUTO,
        name: str = "one_class_bce",
    ) -> None:
        if not np.isfinite(float(level_set)):
            raise ValueError(f"level_set must be finite, got {level_set!r}")
        super().__init__(reduction=reduction, name=name)
        self.level_set = float(level_set)

    @property
    def negative_level(self) -> float:
        return self.level_set

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred))
        labels = 0.5 * (1.0 + y_true)
        per_sample = tf.nn.sigmoid_cross_entropy_with_logits(labels, y_pred)
        if per_sample.shape.rank is not None and per_sample.shape.rank > 1:
            per_sample = tf.reduce_mean(per_sample, axis=-1)
        return per_sample

    def get_config(self) -> dict:
        config = super().get_config()
        config["level_set"] = self.level_set
        return config


def bce_network(
    input_dim: int,
    widths: Sequence[int] = (256, 256, 256),
    seed: int = 0,
    name: str = "bce_network",
) -> tf.keras.Sequential:
    """An unconstrained MLP ``d -> widths (ReLU) -> 1`` that outputs a logit.

    Args:
        input_dim: number of input features (``> 0``).
        widths: hidden layer widths (``> 0`` each).
        seed: seed of the Glorot-uniform kernel initializers (layer ``i`` uses
            ``seed * 1000 + i``), so the network is reproducible.
        name: model name.

    Returns:
        A built ``tf.keras.Sequential`` mapping ``(n, input_dim)`` to ``(n, 1)``.

    Raises:
        ValueError: on a non-positive ``input_dim`` or width.
    """
    if int(input_dim) != input_dim or input_dim <= 0:
        raise ValueError(f"input_dim must be an integer > 0, got {input_dim!r}.")
    widths = [int(w) for w in widths]
    if any(w <= 0 for w in widths):
        raise ValueError(f"widths must all be > 0, got {widths}.")

    def initializer(index: int) -> tf.keras.initializers.Initializer:
        return tf.keras.initializers.GlorotUniform(seed=int(seed) * 1000 + index)

    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input((int(input_dim),))]
    for i, width in enumerate(widths):
        layers.append(
            tf.keras.layers.Dense(
                width, activation="relu", kernel_initializer=initializer(i)
            )
        )
    layers.append(tf.keras.layers.Dense(1, kernel_initializer=initializer(len(widths))))
    return tf.keras.Sequential(layers, name=name)


def fit_bce_network(
    model: tf.keras.Model,
    x_normal: Any,
    domain: Domain,
    epochs: int = 50,
    batch_size: int = 128,
    negatives_ratio: float = 1.0,
    nr_steps: int = 0,
    level_set: float = 0.0,
    optimizer: tf.keras.optimizers.Optimizer | str | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> dict[str, list[float]]:
    """Trains ``model`` with BCE: normal samples (y=1) against fresh negatives (y=0).

    The training is OCSDF's own ``train_step`` with the :class:`OneClassBCE`
    loss (:class:`kocc.models.OCSDF` ``(model, domain, loss=OneClassBCE(level_set))``):
    every update draws its negatives uniformly from ``domain`` and moves them by
    ``nr_steps`` Newton-Raphson steps toward the level set ``f = level_set`` of
    the current network (paper Algorithm 1, as for OCSDF; 0 = plain uniform
    negatives). An update sees ``batch_size`` samples:
    ``round(batch_size / (1 + negatives_ratio))`` normal ones and the rest
    negatives, so an epoch (one pass over the normal samples) makes about
    ``(1 + negatives_ratio) n / batch_size`` updates. Shuffling, negatives and
    initialization are seeded; on one CPU thread a run reproduces exactly.

    Args:
        model: a Keras model mapping inputs to one logit per sample (e.g.
            :func:`bce_network`); trained in place.
        x_normal: normal samples ``(n, *feature_shape)``.
        domain: where negatives are drawn (a :class:`kocc.sampling.Domain`).
        epochs: number of epochs (``>= 1``).
        batch_size: samples per update, normal and negative (``>= 2``).
        negatives_ratio: negatives per normal sample (``> 0``).
        nr_steps: Newton-Raphson steps on the negatives (``>= 0``).
        level_set: target level of the Newton-Raphson steps.
        optimizer: Keras optimizer or its name; ``None`` = Adam(1e-3).
        seed: seed of negatives and shuffling.
        verbose: Keras verbosity.

    Returns:
        The history, ``{"loss": [one value per epoch], ...}`` (OCSDF's logs:
        also ``f_pos``, ``f_neg``, ``grad_norm_neg``).

    Raises:
        ValueError: on invalid hyper-parameters, a domain that is not a kocc
            Domain, or invalid ``x_normal`` (empty, NaN, wrong feature shape).
    """
    if not isinstance(domain, Domain):
        raise ValueError(f"domain must be a kocc.sampling Domain, got {domain!r}.")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if int(nr_steps) != nr_steps or nr_steps < 0:
        raise ValueError(f"nr_steps must be an integer >= 0, got {nr_steps!r}.")
    if not float(negatives_ratio) > 0:
        raise ValueError(f"negatives_ratio must be > 0, got {negatives_ratio!r}.")
    feature_shape = tuple(int(s) for s in model.input_shape[1:])
    x_normal = check_batch(x_normal, feature_shape, "x_normal")
    domain.resolve_shape(feature_shape)

    n_pos = min(
        len(x_normal),
        max(1, int(round(int(batch_size) / (1.0 + float(negatives_ratio))))),
    )
    n_neg = max(1, int(batch_size) - n_pos)
    trainer = OCSDF(
        model,
        domain,
        loss=OneClassBCE(level_set),
        nr_steps=int(nr_steps),
        negatives_per_batch=n_neg,
        seed=int(seed),
        name=f"{model.name}_bce",
    )
    trainer.compile(optimizer=optimizer or tf.keras.optimizers.Adam(1e-3))
    data = without_autotuning(
        tf.data.Dataset.from_tensor_slices(x_normal)
        .shuffle(len(x_normal), seed=int(seed), reshuffle_each_iteration=True)
        .batch(n_pos)
    )
    logs = trainer.fit(data, epochs=int(epochs), verbose=verbose).history
    return {key: [float(v) for v in values] for key, values in logs.items()}
