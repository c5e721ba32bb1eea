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

from kocc.sampling import Domain, newton_raphson
from kocc.validation import check_batch

__all__ = ["bce_network", "fit_bce_network"]


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

    Every epoch draws ``round(negatives_ratio * n)`` negatives uniformly from
    ``domain`` (seed ``(seed, epoch)``), moves them by ``nr_steps``
    Newton-Raphson steps toward the level set ``f = level_set`` of the current
    network (paper Algorithm 1, as for OCSDF; 0 = plain uniform negatives), and
    runs one epoch of ``model.fit`` on the shuffled union with the BCE on
    logits. Shuffling, negatives and initialization are seeded; on one CPU
    thread a run reproduces exactly.

    The model is compiled here (loss ``BinaryCrossentropy(from_logits=True)``)
    with ``optimizer`` (default Adam, learning rate 1e-3) unless it is already
    compiled, in which case its optimizer and loss are kept.

    Args:
        model: a Keras model mapping inputs to one logit per sample (e.g.
            :func:`bce_network`).
        x_normal: normal samples ``(n, *feature_shape)``.
        domain: where negatives are drawn (a :class:`kocc.sampling.Domain`).
        epochs: number of epochs (``>= 1``).
        batch_size: mini-batch size (``>= 1``).
        negatives_ratio: negatives per normal sample per epoch (``> 0``).
        nr_steps: Newton-Raphson steps on the negatives (``>= 0``).
        level_set: target level of the Newton-Raphson steps.
        optimizer: Keras optimizer or its name; ``None`` = Adam(1e-3).
        seed: seed of negatives and shuffling.
        verbose: Keras verbosity of each epoch.

    Returns:
        The history, ``{"loss": [one value per epoch]}`` (plus any compiled
        metrics).

    Raises:
        ValueError: on invalid hyper-parameters, a domain that is not a kocc
            Domain, or invalid ``x_normal`` (empty, NaN, wrong feature shape).
    """
    if not isinstance(domain, Domain):
        raise ValueError(f"domain must be a kocc.sampling Domain, got {domain!r}.")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if int(nr_steps) != nr_steps or nr_steps < 0:
        raise ValueError(f"nr_steps must be an integer >= 0, got {nr_steps!r}.")
    if not float(negatives_ratio) > 0:
        raise ValueError(f"negatives_ratio must be > 0, got {negatives_ratio!r}.")
    feature_shape = tuple(int(s) for s in model.input_shape[1:])
    x_normal = check_batch(x_normal, feature_shape, "x_normal")
    domain.resolve_shape(feature_shape)
    if model.optimizer is None:
        model.compile(
            optimizer=optimizer or tf.keras.optimizers.Adam(1e-3),
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        )

    n_neg = max(1, int(round(float(negatives_ratio) * len(x_normal))))
    labels = np.r_[np.ones(len(x_normal)), np.zeros(n_neg)].astype(np.float32)[:, None]
    history: dict[str, list[float]] = {}
    for epoch in range(int(epochs)):
        negatives = domain.sample(
            n_neg, seed=[int(seed), 2 * epoch], shape=feature_shape
        )
        if nr_steps > 0:
            negatives = newton_raphson(
                model,
                negatives,
                steps=int(nr_steps),
                level_set=float(level_set),
                domain=domain,
                seed=[int(seed), 2 * epoch + 1],
            )
        inputs = np.concatenate([x_normal, np.asarray(negatives)], axis=0)
        order = np.random.default_rng([int(seed), epoch]).permutation(len(inputs))
        logs = model.fit(
            inputs[order],
            labels[order],
            batch_size=int(batch_size),
            epochs=1,
            shuffle=False,
            verbose=verbose,
        ).history
        for key, values in logs.items():
            history.setdefault(key, []).extend(values)
    return history
