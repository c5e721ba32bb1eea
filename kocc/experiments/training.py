"""From a recipe's sections to the arguments of the one training path.

:mod:`kocc.training` compiles and fits OCSDF from plain arguments; this module
turns a recipe's ``model``/``domain``/``training`` sections into them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.distribute import is_chief, make_strategy
from kocc.experiments.recipes import (
    DistributeConfig,
    DomainConfig,
    MLPConfig,
    TrainingConfig,
)
from kocc.models import OCSDF
from kocc.sampling import Ball, Box, Domain
from kocc.score_shards import certified_auroc_from_shards, write_score_shards
from kocc.training import (
    FitReport,
    compile_ocsdf,
    fit_ocsdf,
    make_optimizer,
    negatives_per_batch_for,
    repeated_batches,
    steps_per_epoch_for,
)

#: The ``training:`` keys that are :class:`kocc.models.OCSDF` arguments of the
#: same names (hinge-KR margin and weight, Newton-Raphson steps and warm-up).
OCSDF_TRAINING_KEYS = (
    "margin",
    "lam",
    "nr_steps",
    "warmup_epochs",
    "updates_per_sampling",
)


def section_arguments(section: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` fields of a recipe section, as keyword arguments of the same
    names (of :func:`kocc.training.compile_ocsdf`, of a fit function ...)."""
    return {key: getattr(section, key) for key in keys}


def build_domain(config: DomainConfig, feature_shape: tuple[int, ...]) -> Domain:
    """The negatives' domain: a ball of ``radius`` around 0 or a box."""
    if config.kind == "ball":
        return Ball(config.radius, shape=feature_shape)
    if config.kind == "box":
        return Box(config.low, config.high, shape=feature_shape)
    raise ValueError(f"unknown domain kind {config.kind!r}: expected 'ball' or 'box'")


def strategy_of(config: DistributeConfig) -> tf.distribute.Strategy:
    """The recipe's ``distribute`` strategy (:func:`kocc.distribute.make_strategy`).

    Build and compile the model in its ``scope()``; ``training.batch_size`` is
    the global batch.
    """
    return make_strategy(config.strategy, config.devices or None, config.communication)


def run_directory(strategy: tf.distribute.Strategy, out_dir: str | Path) -> Path:
    """Where this process writes a run, created: ``out_dir`` on the chief (or
    the lone process), ``out_dir/worker_<i>`` on another worker of a
    multi-worker strategy, so that only the chief writes the run itself."""
    out = Path(out_dir)
    if not is_chief(strategy):
        out = out / f"worker_{strategy.cluster_resolver.task_id}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    """The recipe's optimizer (:func:`kocc.training.make_optimizer`).

    With ``final_learning_rate`` set, the rate decays linearly from
    ``learning_rate`` to it over ``steps`` updates (the paper's MNIST schedule).
    """
    return make_optimizer(
        config.optimizer,
        config.learning_rate,
        final_learning_rate=config.final_learning_rate,
        decay_steps=config.steps,
    )


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
    return compile_ocsdf(
        backbone,
        build_domain(domain, (input_dim,)),
        **section_arguments(training, OCSDF_TRAINING_KEYS),
        negatives_per_batch=negatives_per_batch_for(
            training.batch_size, training.updates_per_sampling
        ),
        optimizer=build_optimizer(training),
        seed=seed,
    )


def fit_for_steps(
    model: OCSDF,
    x: np.ndarray,
    training: TrainingConfig,
    seed: int = 0,
    verbose: str | int = "auto",
    callbacks: list | None = None,
) -> FitReport:
    """Fit for ``training.steps`` parameter updates, shown as ``training.epochs``.

    The data are shuffled (seeded) and repeated
    (:func:`kocc.training.repeated_batches`), so an "epoch" is
    ``ceil(steps / epochs)`` updates regardless of the data size.
    """
    if training.steps < 1 or training.epochs < 1 or training.batch_size < 1:
        raise ValueError("training.steps, epochs and batch_size must be >= 1")
    return fit_ocsdf(
        model,
        repeated_batches(x, training.batch_size, seed=seed),
        epochs=training.epochs,
        steps_per_epoch=steps_per_epoch_for(training.steps, training.epochs),
        verbose=verbose,
        callbacks=callbacks,
    )


def certified_auroc_on_disk(
    model: Any,
    x: np.ndarray,
    is_normal: np.ndarray,
    epsilons: Any,
    work_dir: str | os.PathLike | None = None,
    batch_size: int = 65536,
) -> np.ndarray | float:
    """Certified AUROC of a model's scores through sorted score shards on disk.

    The samples are scored ``batch_size`` at a time; normal and anomalous
    scores go to sorted ``.npy`` shards (:func:`kocc.score_shards.write_score_shards`,
    a temporary ``scores-*`` folder in ``work_dir``, removed after) merged by
    :func:`kocc.score_shards.certified_auroc_from_shards`: the same pair counts
    as :func:`kocc.metrics.certified_auroc` on the scores in memory, so the
    same value (at ``eps = 0`` the AUROC, ties counted one half, as
    ``roc_auc_score(is_normal, f)``).

    Returns:
        A float for a scalar ``epsilons``, else an array of its shape.
    """
    is_normal = np.asarray(is_normal, dtype=bool)

    def scores(normal: bool):
        for start in range(0, len(x), batch_size):
            keep = is_normal[start : start + batch_size] == normal
            if keep.any():
                rows = x[start : start + batch_size][keep]
                yield np.asarray(model.score_samples(rows)).reshape(-1)

    with tempfile.TemporaryDirectory(prefix="scores-", dir=work_dir) as folder:
        normal = write_score_shards(scores(True), folder, "normal")
        anomalous = write_score_shards(scores(False), folder, "anomalous")
        return certified_auroc_from_shards(normal, anomalous, epsilons)
