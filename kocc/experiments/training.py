"""From a recipe's sections to a compiled OCSDF, and a timed ``fit``.

Shared by every command that trains (toys, tabular, surfaces): one place turns
``model``/``domain``/``training`` settings into Keras objects.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.experiments.recipes import DomainConfig, MLPConfig, TrainingConfig
from kocc.models import OCSDF
from kocc.sampling import Ball, Box, Domain


def build_domain(config: DomainConfig, feature_shape: tuple[int, ...]) -> Domain:
    """The negatives' domain: a ball of ``radius`` around 0 or a box."""
    if config.kind == "ball":
        return Ball(config.radius, shape=feature_shape)
    if config.kind == "box":
        return Box(config.low, config.high, shape=feature_shape)
    raise ValueError(f"unknown domain kind {config.kind!r}: expected 'ball' or 'box'")


def build_optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    """RMSprop (the paper's choice), Adam or SGD at ``learning_rate``.

    With ``final_learning_rate`` set, the rate decays linearly from
    ``learning_rate`` to it over ``steps`` updates (the paper's MNIST schedule).
    """
    optimizers = {
        "rmsprop": tf.keras.optimizers.RMSprop,
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
    }
    if config.optimizer not in optimizers:
        raise ValueError(
            f"unknown optimizer {config.optimizer!r}: expected one of "
            f"{sorted(optimizers)}"
        )
    rate = config.learning_rate
    if config.final_learning_rate is not None:
        rate = tf.keras.optimizers.schedules.PolynomialDecay(
            config.learning_rate, config.steps, config.final_learning_rate, power=1.0
        )
    return optimizers[config.optimizer](learning_rate=rate)


def build_mlp_ocsdf(
    input_dim: int,
    model: MLPConfig,
    domain: DomainConfig,
    training: TrainingConfig,
    seed: int = 0,
) -> OCSDF:
    """A compiled OCSDF around :func:`kocc.architectures.lipschitz_mlp`."""
    backbone = lipschitz_mlp(
        input_dim, widths=model.widths, activation=model.activation, seed=seed
    )
    ocsdf = OCSDF(
        backbone,
        build_domain(domain, (input_dim,)),
        margin=training.margin,
        lam=training.lam,
        nr_steps=training.nr_steps,
        warmup_epochs=training.warmup_epochs,
        updates_per_sampling=training.updates_per_sampling,
        negatives_per_batch=(
            training.batch_size if training.updates_per_sampling > 1 else None
        ),
        seed=seed,
    )
    ocsdf.compile(optimizer=build_optimizer(training))
    return ocsdf


@dataclass
class FitReport:
    """What a timed fit measured."""

    steps: int
    seconds: float
    steps_per_second: float
    history: dict


def fit_for_steps(
    model: OCSDF,
    x: np.ndarray,
    training: TrainingConfig,
    seed: int = 0,
    verbose: str | int = "auto",
    callbacks: list | None = None,
) -> FitReport:
    """Fit for ``training.steps`` parameter updates, shown as ``training.epochs``.

    The data are shuffled (seeded) and repeated, so an "epoch" is
    ``ceil(steps / epochs)`` updates regardless of the data size.
    """
    if training.steps < 1 or training.epochs < 1 or training.batch_size < 1:
        raise ValueError("training.steps, epochs and batch_size must be >= 1")
    steps_per_epoch = math.ceil(training.steps / training.epochs)
    batch = min(training.batch_size, len(x))
    dataset = (
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    start = time.perf_counter()
    history = model.fit(
        dataset,
        epochs=training.epochs,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    steps = steps_per_epoch * training.epochs
    return FitReport(steps, seconds, steps / seconds, history.history)
