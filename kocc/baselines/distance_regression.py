r"""DeepSDF-style supervised baseline: regress nearest-neighbour distances.

The comparison of the OCSDF paper's Table 4 (implicit surfaces): instead of
learning from the points alone, an *unconstrained* MLP g is trained by
regression on distances computed beforehand. Here the targets are the
**unsigned** distances to the point cloud, :math:`d(q) = \min_i \|q - x_i\|_2`
(scipy ``cKDTree``), since a bare point cloud carries no inside/outside
information (DeepSDF regresses *signed* distances to a watertight mesh; this
baseline is its unsigned variant, as allowed for point clouds).

Following DeepSDF (Park et al., 2019, eq. 4) the loss is an L1 on distances
clamped at :math:`\delta`, written here on the *score* :math:`s = -d` (higher on
the surface, as OCSDF's f):

.. math:: \mathcal{L} = |g(q) - \max(s(q), -\delta)| .

DeepSDF also clamps the prediction, which zeroes the gradient of any prediction
below :math:`-\delta` (harmless with its tanh output initialized near 0, but it
freezes a plain linear output that starts below it); only the target is clamped
here, so far queries are regressed to :math:`-\delta`. Queries are drawn as in
DeepSDF: mostly near the surface (the points plus Gaussian noise at two
scales), the rest uniformly in the padded bounding box. The mesh is extracted
exactly as for OCSDF (:func:`kocc.surfaces.extract_mesh`, level = 1st
percentile of the score over the training points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.spatial import cKDTree

from kocc.datasets.pipelines import without_autotuning
from kocc.implicit_surface import (
    ImplicitSurface,
    IsotropicStandardization,
    check_level_rule,
    default_level,
    padded_bounds,
)
from kocc.meshes import check_points
from kocc.validation import check_non_negative, check_positive


@tf.keras.utils.register_keras_serializable("kocc")
class ClampedL1(tf.keras.losses.Loss):
    r"""L1 to the clamped target score: :math:`|p - \max(t, -\delta)|`.

    Args:
        delta: clamp distance :math:`\delta > 0` (scores below ``-delta``, i.e.
            queries farther than ``delta`` from the surface, are regressed to
            ``-delta``).
        reduction: Keras loss reduction.
        name: loss name.

    Raises:
        ValueError: if ``delta <= 0``.
    """

    def __init__(
        self,
        delta: float = 0.1,
        reduction: str = tf.keras.losses.Reduction.AUTO,
        name: str = "clamped_l1",
    ) -> None:
        check_positive(delta=delta)
        super().__init__(reduction=reduction, name=name)
        self.delta = float(delta)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_pred = tf.reshape(tf.convert_to_tensor(y_pred), [-1])
        y_true = tf.reshape(tf.cast(y_true, y_pred.dtype), [-1])
        floor = tf.constant(-self.delta, y_pred.dtype)
        return tf.abs(y_pred - tf.maximum(y_true, floor))

    def get_config(self) -> dict:
        config = super().get_config()
        config["delta"] = self.delta
        return config


def distance_queries(
    x: np.ndarray,
    n_queries: int,
    near_sigmas: Sequence[float],
    uniform_fraction: float,
    bounds: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Query points and their scores ``-min_i ||q - x_i||`` (KD-tree).

    ``(1 - uniform_fraction) * n_queries`` queries are points of ``x`` plus
    isotropic Gaussian noise, split evenly over ``near_sigmas``; the rest are
    uniform in ``bounds``.

    Returns:
        ``(queries, scores)``, float32 ``(n_queries, 3)`` and ``(n_queries,)``.
    """
    rng = np.random.default_rng(int(seed))
    n_uniform = int(round(uniform_fraction * n_queries))
    n_near = n_queries - n_uniform
    per_scale = -(-n_near // len(near_sigmas))
    sigmas = np.repeat(np.asarray(near_sigmas, np.float64), per_scale)[:n_near, None]
    anchors = x[rng.integers(0, len(x), size=n_near)]
    near = anchors + rng.normal(size=(n_near, 3)) * sigmas
    uniform = rng.uniform(bounds[0], bounds[1], size=(n_uniform, 3))
    queries = np.concatenate([near, uniform]).astype(np.float32)
    distance, _ = cKDTree(x).query(queries, k=1)
    return queries, (-distance).astype(np.float32)


def distance_regression_mlp(
    widths: Sequence[int], activation: str, seed: int
) -> tf.keras.Sequential:
    """The unconstrained MLP ``3 -> widths -> 1`` (Glorot init, seeded)."""
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input((3,))]
    for i, width in enumerate(widths):
        layers.append(
            tf.keras.layers.Dense(
                int(width),
                activation=activation,
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed + i),
            )
        )
    layers.append(
        tf.keras.layers.Dense(
            1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 997)
        )
    )
    return tf.keras.Sequential(layers, name="distance_regression_mlp")


def fit_distance_regression(
    points: Any,
    *,
    widths: Sequence[int] = (256, 256, 256, 256),
    activation: str = "relu",
    padding: float = 0.1,
    clamp: float = 0.1,
    n_queries: int = 250_000,
    near_sigmas: Sequence[float] = (0.08, 0.025),
    uniform_fraction: float = 0.2,
    batch_size: int = 1024,
    steps: int = 4000,
    learning_rate: float = 1e-3,
    level_quantile: float = 0.01,
    level_offset: float = 0.0,
    seed: int = 0,
    verbose: int = 0,
) -> ImplicitSurface:
    """Fit the supervised distance-regression baseline to a point cloud.

    Same standardization and extraction box as
    :func:`kocc.surfaces.fit_point_cloud`; all lengths (``clamp``,
    ``near_sigmas``) are in standardized units (unit pooled std).

    Args:
        points: ``(n, 3)`` points, ``n >= 4``, finite.
        widths: hidden widths of the MLP (DeepSDF: 8 x 512).
        activation: hidden activation (DeepSDF: ReLU).
        padding: extraction/uniform-query box margin, fraction of the largest
            extent.
        clamp: DeepSDF's clamp distance delta.
        n_queries: number of precomputed (query, distance) pairs.
        near_sigmas: noise scales of the near-surface queries.
        uniform_fraction: share of uniform queries in the box.
        batch_size: queries per update.
        steps: parameter updates (Adam, cosine-decayed learning rate).
        learning_rate: initial learning rate.
        level_quantile: quantile of the training points' scores used as the
            default extraction level (as for OCSDF).
        level_offset: lowers that level by this many median nearest-neighbour
            spacings of the standardized points
            (:func:`kocc.implicit_surface.default_level`). 0 by default: unlike
            OCSDF's 1-Lipschitz score, the regressed score is nearly flat near
            the surface, so an offset in score units moves the level set much
            farther than the same distance.
        seed: seeds the queries, the initialization and the shuffling.
        verbose: Keras ``fit`` verbosity.

    Returns:
        An :class:`kocc.implicit_surface.ImplicitSurface` whose model outputs the score
        ``-d`` (minus the predicted unsigned distance).

    Raises:
        ValueError: for invalid points or hyper-parameters.
    """
    points = check_points(points)
    if len(widths) == 0 or any(int(w) <= 0 for w in widths):
        raise ValueError(
            f"widths must be a non-empty list of positive ints, got {widths}"
        )
    check_non_negative(padding=padding)
    if int(n_queries) < 1 or int(batch_size) < 1 or int(steps) < 1:
        raise ValueError(
            "n_queries, batch_size and steps must be >= 1, got "
            f"{n_queries!r}, {batch_size!r}, {steps!r}"
        )
    if len(near_sigmas) == 0 or any(not s > 0 for s in near_sigmas):
        raise ValueError(f"near_sigmas must be positive, got {near_sigmas!r}")
    if not 0.0 <= uniform_fraction <= 1.0:
        raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
    check_positive(learning_rate=learning_rate)
    check_level_rule(level_quantile, level_offset)
    standardization = IsotropicStandardization.fit(points)
    x = standardization.transform(points)
    queries, targets = distance_queries(
        x,
        int(n_queries),
        near_sigmas,
        uniform_fraction,
        padded_bounds(x, padding),
        seed,
    )
    tf.keras.utils.set_random_seed(int(seed))
    model = distance_regression_mlp(widths, activation, int(seed))
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        float(learning_rate), decay_steps=int(steps), alpha=0.01
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=ClampedL1(clamp))
    batch_size = min(int(batch_size), len(queries))
    steps_per_epoch = min(int(steps), len(queries) // batch_size)
    epochs = int(np.ceil(int(steps) / steps_per_epoch))
    dataset = without_autotuning(
        tf.data.Dataset.from_tensor_slices((queries, targets))
        .shuffle(len(queries), seed=int(seed), reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
    history = model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose
    )
    scores = model.predict(x, batch_size=4096, verbose=0).reshape(-1)
    return ImplicitSurface(
        model=model,
        standardization=standardization,
        level=default_level(scores, x, level_quantile, level_offset),
        bounds=padded_bounds(points, padding),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        points=x,
        point_scores=scores,
    )
