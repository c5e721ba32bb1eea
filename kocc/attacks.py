"""Empirical robustness: the symmetric l2 attack on one-class scores (foolbox 3).

The certified AUROC (Béthune et al., ICML 2023, Proposition 1) lower-bounds the
AUROC that any l2 attacker of radius ``eps`` can leave: the worst attacker moves
each normal point so that its score drops and each anomaly so that its score
rises. :func:`attacked_auroc` runs exactly that attacker with projected gradient
descent (foolbox 3's ``L2ProjectedGradientDescentAttack``) and reports the AUROC
it leaves. For a 1-Lipschitz model it can never go below the certificate; for an
unconstrained network it typically falls far below the clean AUROC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.extras import require
from kocc.metrics import _as_epsilons, certified_auroc, score_function
from kocc.sampling import Domain, seed_pair
from kocc.validation import check_batch

ep = require("eagerpy")
fb = require("foolbox")

__all__ = ["SymmetricScoreAttack", "attacked_auroc", "attacked_scores"]

BoundsLike = tuple[float, float] | Domain | None


class SymmetricScoreAttack(fb.attacks.L2ProjectedGradientDescentAttack):
    r"""l2 PGD that lowers normal scores and raises anomaly scores.

    With labels :math:`y_i = +1` (normal) or :math:`-1` (anomaly), each step
    ascends :math:`\sum_i -y_i f(x_i)` along the l2-normalized gradient,

    .. math::

        x \leftarrow \Pi\Big(x + \alpha \frac{\nabla_x(-y f(x))}
        {\|\nabla_x(-y f(x))\|_2}\Big),\qquad \alpha = \text{rel\_stepsize}
        \cdot \epsilon,

    where :math:`\Pi` projects onto the l2 ball of radius :math:`\epsilon`
    around the clean point and then onto the data domain (foolbox's bounds, or a
    :class:`kocc.sampling.Domain`). Unlike the misclassification attack it never
    stops early: it pushes every score as far as ``steps`` allow, which is the
    attacker of Proposition 1.

    The random start (uniform in the l2 ball) is drawn with TensorFlow's
    stateless generator from ``start_seed`` so attacks reproduce; with
    ``start_seed=None`` the attack starts at the clean point.

    Args:
        steps: number of PGD steps (``>= 1``).
        rel_stepsize: step length relative to ``epsilon`` (``> 0``).
        domain: optional convex domain containing the clean points; iterates are
            projected onto it after the l2-ball projection (both projections
            are non-expansive around the clean point, so iterates stay in the
            ball).
    """

    def __init__(
        self, *, steps: int, rel_stepsize: float, domain: Domain | None = None
    ) -> None:
        super().__init__(rel_stepsize=rel_stepsize, steps=steps, random_start=True)
        self.domain = domain
        self.start_seed: tf.Tensor | None = None

    def get_loss_fn(
        self, model: fb.Model, labels: ep.Tensor
    ) -> Callable[[ep.Tensor], ep.Tensor]:
        def loss_fn(inputs: ep.Tensor) -> ep.Tensor:
            scores = model(inputs).reshape((-1,))
            return (-labels * scores).sum()

        return loss_fn

    def get_random_start(self, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        if self.start_seed is None:
            return x0
        raw = x0.raw
        n = tf.shape(raw)[0]
        flat = tf.reshape(raw, [n, -1])
        dim = flat.shape[1]
        seeds = tf.random.experimental.stateless_split(self.start_seed, 2)
        direction = tf.random.stateless_normal(tf.shape(flat), seed=seeds[0])
        direction /= tf.maximum(tf.norm(direction, axis=1, keepdims=True), 1e-12)
        radius = tf.random.stateless_uniform([n, 1], seed=seeds[1]) ** (1.0 / dim)
        start = raw + tf.reshape(epsilon * radius * direction, tf.shape(raw))
        if self.domain is not None:
            start = self.domain.project(start)
        return ep.astensor(start)

    def project(self, x: ep.Tensor, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        x = super().project(x, x0, epsilon)
        if self.domain is not None:
            x = ep.astensor(self.domain.project(x.raw))
        return x


def _foolbox_bounds(bounds: BoundsLike) -> tuple[tuple[float, float], Domain | None]:
    if bounds is None:
        return (-np.inf, np.inf), None
    if isinstance(bounds, Domain):
        return (-np.inf, np.inf), bounds
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "bounds must be None, a (low, high) pair of floats or a "
            f"kocc.sampling Domain, got {bounds!r}."
        ) from err
    if not low < high:
        raise ValueError(f"bounds must satisfy low < high, got {bounds!r}.")
    return (low, high), None


def _check_inside(
    x: np.ndarray, bounds: tuple[float, float], domain: Domain | None, name: str
) -> None:
    if x.min() < bounds[0] or x.max() > bounds[1]:
        raise ValueError(
            f"{name} has values in [{x.min():g}, {x.max():g}], outside the attack "
            f"bounds {bounds}: the clean points must lie in the data domain."
        )
    if domain is not None:
        inside = np.asarray(domain.contains(tf.constant(x), atol=1e-4))
        if not inside.all():
            raise ValueError(
                f"{int((~inside).sum())} sample(s) of {name} lie outside the domain "
                f"{domain!r}: the clean points must lie in the data domain."
            )


def attacked_scores(
    model: Callable[..., Any] | tf.keras.Model,
    x: Any,
    labels: Any,
    epsilons: Sequence[float] | float,
    steps: int,
    restarts: int = 3,
    rel_stepsize: float = 0.25,
    bounds: BoundsLike = None,
    batch_size: int = 512,
    seed: int = 0,
) -> np.ndarray:
    """Worst scores found by the symmetric l2 PGD attack, per radius and sample.

    For each radius ``eps`` and sample ``x_i`` with label ``y_i = +1`` (normal)
    or ``-1`` (anomaly), the attack searches ``||delta||_2 <= eps`` (inside the
    domain) to minimize ``y_i f(x_i + delta)``; the returned score is the worst
    one over the clean point and ``restarts`` PGD runs (the first from the clean
    point, the others from seeded uniform starts in the ball). An attack can
    only lower normal scores and raise anomaly scores, so the result is
    ``<= f(x_i)`` for normals and ``>= f(x_i)`` for anomalies; for an
    ``L``-Lipschitz model it stays within ``L * eps`` of ``f(x_i)``.

    Args:
        model: kocc model, Keras model or callable returning one score per sample.
        x: inputs ``(n, *feature_shape)``.
        labels: ``(n,)`` with ``> 0`` for normal samples, ``<= 0`` for anomalies.
        epsilons: l2 radii (``>= 0``); 0 gives the clean scores.
        steps: PGD steps per run (``>= 1``).
        restarts: PGD runs per radius (``>= 1``).
        rel_stepsize: step length relative to ``eps`` (``> 0``).
        bounds: ``None`` (unbounded), a ``(low, high)`` pair of scalars (foolbox
            bounds, e.g. ``(0, 1)`` for images), or a convex
            :class:`kocc.sampling.Domain` (e.g. a per-feature ``Box``).
        batch_size: samples attacked at once.
        seed: seed of the random starts.

    Returns:
        Array of shape ``(len(epsilons), n)`` (``(n,)`` for a scalar radius).

    Raises:
        ValueError: on invalid hyper-parameters, inputs (empty, NaN, shape),
            labels of the wrong length, or inputs outside the bounds.
    """
    x = check_batch(x, name="x")
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if labels.shape != (x.shape[0],):
        raise ValueError(
            f"labels must have one entry per sample ({x.shape[0]}), got shape "
            f"{labels.shape}."
        )
    eps = _as_epsilons(epsilons)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}.")
    if not float(rel_stepsize) > 0:
        raise ValueError(f"rel_stepsize must be > 0, got {rel_stepsize!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    fb_bounds, domain = _foolbox_bounds(bounds)
    _check_inside(x, fb_bounds, domain, "x")

    score_fn = score_function(model)
    feature_shape = x.shape[1:]

    @tf.function(
        input_signature=[tf.TensorSpec((None, *feature_shape), tf.float32)],
        reduce_retracing=True,
    )
    def scores_graph(inputs: tf.Tensor) -> tf.Tensor:
        return tf.reshape(score_fn(inputs), [-1])

    # foolbox compares and multiplies labels with scores: keep both float32
    # (mixing dtypes sends eagerpy into numpy functions that numpy 2 removed).
    fmodel = fb.TensorFlowModel(scores_graph, bounds=fb_bounds, device="/CPU:0")
    attack = SymmetricScoreAttack(
        steps=int(steps), rel_stepsize=float(rel_stepsize), domain=domain
    )
    signs = np.where(labels > 0, 1.0, -1.0).astype(np.float32)
    base_seed = seed_pair(int(seed))

    def scores_of(inputs: np.ndarray | tf.Tensor) -> np.ndarray:
        return np.asarray(scores_graph(tf.convert_to_tensor(inputs)), np.float64)

    clean = np.concatenate(
        [
            scores_of(x[start : start + int(batch_size)])
            for start in range(0, x.shape[0], int(batch_size))
        ]
    )
    flat_eps = eps.reshape(-1)
    result = np.empty((flat_eps.size, x.shape[0]), dtype=np.float64)
    for k, radius in enumerate(flat_eps):
        worst = signs * clean  # y * f: the attacker minimizes it
        if radius > 0:
            for start in range(0, x.shape[0], int(batch_size)):
                stop = start + int(batch_size)
                inputs = tf.constant(x[start:stop])
                batch_labels = tf.constant(signs[start:stop])
                for restart in range(int(restarts)):
                    attack.start_seed = (
                        None
                        if restart == 0
                        else tf.random.experimental.stateless_fold_in(
                            base_seed, k * 1_000_003 + start * 101 + restart
                        )
                    )
                    adversarial = attack.run(
                        fmodel, inputs, batch_labels, epsilon=float(radius)
                    )
                    signed = signs[start:stop] * scores_of(adversarial)
                    worst[start:stop] = np.minimum(worst[start:stop], signed)
        result[k] = signs * worst
    if eps.ndim == 0:
        return result[0]
    return result.reshape((*eps.shape, x.shape[0]))


def attacked_auroc(
    model: Callable[..., Any] | tf.keras.Model,
    x_normal: Any,
    x_anomalous: Any,
    epsilons: Sequence[float] | float,
    steps: int,
    restarts: int = 3,
    rel_stepsize: float = 0.25,
    bounds: BoundsLike = None,
    batch_size: int = 512,
    seed: int = 0,
) -> np.ndarray | float:
    """AUROC left by the symmetric l2 PGD attack at each radius.

    ``AUROC(f(x_adv), f(z_adv))`` where every normal point ``x`` is attacked to
    lower its score and every anomaly ``z`` to raise it, within
    ``||delta||_2 <= eps`` and the data domain (see :func:`attacked_scores`).
    For a model that is ``L``-Lipschitz this is never below
    :func:`kocc.metrics.certified_auroc` at the same radius (Béthune et al.
    2023, Proposition 1): the certificate holds against this and every other
    attack, the attack only gives an upper bound on the true robust AUROC.

    Args:
        model: kocc model, Keras model or callable returning one score per sample.
        x_normal: normal inputs ``(n, *feature_shape)``.
        x_anomalous: anomalous inputs ``(m, *feature_shape)``.
        epsilons: l2 radii (``>= 0``).
        steps: PGD steps per run (``>= 1``).
        restarts: PGD runs per radius; the worst score per sample is kept.
        rel_stepsize: step length relative to ``eps``.
        bounds: ``None``, a ``(low, high)`` scalar pair or a convex
            :class:`kocc.sampling.Domain` to clip the attacked inputs to.
        batch_size: samples attacked at once.
        seed: seed of the random starts.

    Returns:
        A float for a scalar ``epsilons``, otherwise an array of its shape.

    Raises:
        ValueError: as :func:`attacked_scores`, or if the two input sets have
            different feature shapes.
    """
    x_normal = check_batch(x_normal, name="x_normal")
    x_anomalous = check_batch(x_anomalous, name="x_anomalous")
    if x_normal.shape[1:] != x_anomalous.shape[1:]:
        raise ValueError(
            "x_normal and x_anomalous must have the same feature shape, got "
            f"{x_normal.shape[1:]} and {x_anomalous.shape[1:]}."
        )
    eps = _as_epsilons(epsilons)
    x = np.concatenate([x_normal, x_anomalous], axis=0)
    labels = np.r_[np.ones(len(x_normal)), -np.ones(len(x_anomalous))]
    scores = attacked_scores(
        model,
        x,
        labels,
        eps.reshape(-1),
        steps=steps,
        restarts=restarts,
        rel_stepsize=rel_stepsize,
        bounds=bounds,
        batch_size=batch_size,
        seed=seed,
    )
    n = len(x_normal)
    values = np.array([certified_auroc(row[:n], row[n:], 0.0) for row in scores])
    if eps.ndim == 0:
        return float(values[0])
    return values.reshape(eps.shape)
