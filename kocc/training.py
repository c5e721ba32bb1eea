"""The one training path: network + domain + loss + optimizer + schedule -> fit.

Every caller that trains OCSDF goes through here: the scikit-learn estimator
(:class:`kocc.estimator.OneClassSDF`), :func:`kocc.surfaces.fit_point_cloud`
and the paper experiments (:mod:`kocc.experiments`, which turn a recipe into
these plain arguments). The steps are

1. :func:`make_optimizer`: RMSprop (the paper's choice), Adam or SGD, at a
   constant rate or decaying linearly to ``final_learning_rate`` (the paper's
   MNIST schedule);
2. :func:`compile_ocsdf`: the :class:`kocc.models.OCSDF` of a backbone and a
   negatives' domain with the hinge-KR settings (margin m, weight lambda) and
   the Newton-Raphson settings (T steps, warm-up), compiled with that
   optimizer;
3. :func:`fit_ocsdf`: a timed ``model.fit`` on a dataset, for a number of epochs
   (of ``steps_per_epoch`` updates each when the data repeat:
   :func:`repeated_batches`).

:func:`train_ocsdf` runs the three.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.datasets.pipelines import without_autotuning
from kocc.models import OCSDF
from kocc.sampling import Domain

#: Optimizer name -> Keras class; the choices of every recipe and of the estimator.
OPTIMIZERS: dict[str, type[tf.keras.optimizers.Optimizer]] = {
    "rmsprop": tf.keras.optimizers.RMSprop,
    "adam": tf.keras.optimizers.Adam,
    "sgd": tf.keras.optimizers.SGD,
}


def make_optimizer(
    name: str = "rmsprop",
    learning_rate: float = 1e-3,
    *,
    final_learning_rate: float | None = None,
    decay_steps: int | None = None,
) -> tf.keras.optimizers.Optimizer:
    """A Keras optimizer of :data:`OPTIMIZERS` at ``learning_rate``.

    With ``final_learning_rate`` set, the rate decays linearly from
    ``learning_rate`` to it over ``decay_steps`` updates
    (``PolynomialDecay(power=1)``) and stays there.

    Raises:
        ValueError: unknown ``name``, a rate that is not finite and > 0 (>= 0
            for the final rate), or a decay without ``decay_steps >= 1``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}: expected one of {sorted(OPTIMIZERS)}"
        )
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate!r}")
    if final_learning_rate is not None and not (
        math.isfinite(final_learning_rate) and final_learning_rate >= 0
    ):
        raise ValueError(
            f"final_learning_rate must be finite and >= 0, got {final_learning_rate!r}"
        )
    rate: Any = float(learning_rate)
    if final_learning_rate is not None:
        if decay_steps is None or int(decay_steps) < 1:
            raise ValueError(
                f"a decaying learning rate needs decay_steps >= 1, got {decay_steps!r}"
            )
        rate = tf.keras.optimizers.schedules.PolynomialDecay(
            learning_rate, int(decay_steps), final_learning_rate, power=1.0
        )
    return OPTIMIZERS[name](learning_rate=rate)


def negatives_per_batch_for(batch_size: int, updates_per_sampling: int) -> int | None:
    """The ``negatives_per_batch`` of :class:`OCSDF` for batches of ``batch_size``.

    ``None`` (as many negatives as each batch has points) when every update
    samples; ``batch_size`` when a sampling serves ``updates_per_sampling > 1``
    updates, since the lazy scheme keeps a fixed number of negatives.
    """
    return int(batch_size) if int(updates_per_sampling) > 1 else None


def compile_ocsdf(
    backbone: tf.keras.Model,
    domain: Domain,
    *,
    optimizer: str | tf.keras.optimizers.Optimizer = "rmsprop",
    learning_rate: float = 1e-3,
    final_learning_rate: float | None = None,
    decay_steps: int | None = None,
    jit_compile: bool = False,
    **ocsdf_settings: Any,
) -> OCSDF:
    """The compiled :class:`kocc.models.OCSDF` of ``backbone`` and ``domain``.

    Args:
        backbone: the 1-Lipschitz network f.
        domain: where negatives are drawn (:class:`kocc.sampling.Domain`).
        optimizer: a name of :data:`OPTIMIZERS` (built by :func:`make_optimizer`
            with the rate arguments) or a Keras optimizer.
        learning_rate, final_learning_rate, decay_steps: see
            :func:`make_optimizer`.
        jit_compile: compile the update (Newton-Raphson sampling, loss,
            gradient, optimizer step and retraction) into one XLA program
            (:meth:`kocc.models.OCSDF.compile`). It removes TensorFlow's per-op
            dispatch, which dominates the step of a small network: faster for
            the 3 x 64 FullSort tabular network, slower for a 4 x 512 one or a
            convolutional one, whose matrix products and convolutions oneDNN
            runs faster than XLA (docs/training.md). Same model, loss and certificate,
            but XLA draws the seeded negatives from another random stream than
            TensorFlow's kernels, so the run differs from the plain one (and
            reproduces with the same seed). One replica only.
        **ocsdf_settings: the keyword arguments of :class:`OCSDF`, validated
            there: ``margin``, ``lam`` (hinge-KR margin m and weight lambda),
            ``nr_steps``, ``warmup_epochs`` (Newton-Raphson steps T, first
            epochs with T = 0), ``updates_per_sampling``,
            ``negatives_per_batch``, ``seed`` (of the negatives).
    """
    model = OCSDF(backbone, domain, **ocsdf_settings)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(
            optimizer,
            learning_rate,
            final_learning_rate=final_learning_rate,
            decay_steps=decay_steps,
        )
    model.compile(optimizer=optimizer, jit_compile=bool(jit_compile))
    return model


def repeated_batches(x: np.ndarray, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Endless batches of ``x``: shuffled (seeded) every pass, full batches only.

    Without tf.data autotuning (:func:`without_autotuning`): a ``fit`` call on
    these batches ends when its last step does.

    ``batch_size`` is capped at ``len(x)``, so a small data set still gives
    batches; fit it with ``steps_per_epoch``.
    """
    batch = min(int(batch_size), len(x))
    if batch < 1:
        raise ValueError(
            f"repeated_batches needs data and batch_size >= 1, got {batch}"
        )
    return without_autotuning(
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(1)
    )


@dataclass
class FitReport:
    """What a timed fit measured."""

    steps: int
    seconds: float
    steps_per_second: float
    history: dict


def fit_ocsdf(
    model: OCSDF,
    data: Any,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    verbose: str | int = 0,
    callbacks: list | None = None,
    **fit_kwargs: Any,
) -> FitReport:
    """Timed ``model.fit(data, epochs, steps_per_epoch)``.

    ``data`` is anything Keras fits on (a ``tf.data.Dataset``, or an array
    with ``batch_size``/``shuffle`` in ``fit_kwargs``). The optimizer's
    variables are created before the first step (otherwise TensorFlow traces
    the training step twice).

    Returns:
        A :class:`FitReport`; ``steps`` counts the updates when
        ``steps_per_epoch`` is given, else the batches Keras reported.
    """
    if int(epochs) < 1 or (steps_per_epoch is not None and int(steps_per_epoch) < 1):
        raise ValueError(
            f"fit needs epochs >= 1 and steps_per_epoch >= 1, got {epochs} and "
            f"{steps_per_epoch}"
        )
    with model.distribute_strategy.scope():  # slots mirrored like the weights
        model.optimizer.build(model.optimized_variables())
    start = time.perf_counter()
    history = model.fit(
        data,
        epochs=int(epochs),
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        callbacks=callbacks,
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start
    if steps_per_epoch is not None:
        steps = int(steps_per_epoch) * int(epochs)
    else:
        steps = int(model.optimizer.iterations.numpy())
    return FitReport(steps, seconds, steps / seconds, history.history)


def steps_per_epoch_for(steps: int, epochs: int) -> int:
    """``ceil(steps / epochs)``: a budget of updates shown as ``epochs`` epochs."""
    if int(steps) < 1 or int(epochs) < 1:
        raise ValueError(f"steps and epochs must be >= 1, got {steps} and {epochs}")
    return math.ceil(int(steps) / int(epochs))


#: Keyword arguments of :func:`train_ocsdf` that go to :func:`fit_ocsdf`.
FIT_KEYS = (
    "epochs",
    "steps_per_epoch",
    "verbose",
    "callbacks",
    "batch_size",
    "shuffle",
)


def train_ocsdf(
    backbone: tf.keras.Model, domain: Domain, data: Any, **settings: Any
) -> tuple[OCSDF, FitReport]:
    """:func:`compile_ocsdf` then :func:`fit_ocsdf` on ``data``.

    ``settings`` of :data:`FIT_KEYS` (``epochs`` is required) go to
    :func:`fit_ocsdf`, the others to :func:`compile_ocsdf`.

    Returns:
        The fitted model and its :class:`FitReport`.
    """
    fit = {key: settings.pop(key) for key in FIT_KEYS if key in settings}
    model = compile_ocsdf(backbone, domain, **settings)
    return model, fit_ocsdf(model, data, **fit)
