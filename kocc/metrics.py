"""Certified metrics: certified AUROC, certified radii and certified accuracy.

A model ``f`` that is ``L``-Lipschitz in the l2 norm cannot move its score by more
than ``L * eps`` under any perturbation ``||delta||_2 <= eps``:

    |f(x + delta) - f(x)| <= L * eps.

For a one-class scorer (positive score = normal) this gives the certified AUROC of
Béthune et al. (ICML 2023), Proposition 1: whatever an attacker of radius ``eps``
does, the AUROC between normal scores and anomaly scores is at least the AUROC of
``f(x) - L*eps`` (normal points pushed down) against ``f(z) + L*eps`` (anomalies
pushed up). For single predictions the same bound gives a certified radius
``|f(x) - threshold| / L``, and for HKR classifiers (Serrurier et al., CVPR 2021)
the margin-based radii ``|f(x)|`` (binary) and ``(top1 - top2) / 2`` or
``/ sqrt(2)`` (multiclass).

Label convention used throughout kocc: ``y > 0`` marks a normal sample (the
positive class of the AUROC), ``y <= 0`` an anomaly (``{+1, -1}`` as in
:class:`kocc.losses.OneClassHKR`, or ``{1, 0}``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.sampling import as_score_fn

__all__ = [
    "CertifiedAUROCMetric",
    "certified_accuracy",
    "certified_auroc",
    "certified_radius",
    "hkr_binary_radius",
    "hkr_multiclass_radius",
    "metric_name",
    "model_scores",
    "score_function",
]


def _as_scores(values: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    """Converts ``values`` to a finite 1-D float64 array or raises; an empty one
    raises too unless ``allow_empty`` (a batch of a stream may be empty)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of scores (or shape (n, 1)), "
            f"got an array of shape {array.shape}."
        )
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: at least one score is needed.")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")
    return array


def _as_epsilons(epsilons: Any) -> np.ndarray:
    """Converts radii to a finite, non-negative float64 array (any shape) or raises."""
    eps = np.asarray(epsilons, dtype=np.float64)
    if eps.size == 0:
        raise ValueError("epsilons is empty: give at least one radius.")
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(
            f"epsilons must be finite and >= 0 (l2 radii), got {eps.tolist()}."
        )
    return eps


def _check_lipschitz(lipschitz: float) -> float:
    value = float(lipschitz)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"lipschitz must be a finite constant > 0, got {lipschitz!r}.")
    return value


def metric_name(epsilon: float) -> str:
    """Name under which the certified AUROC at radius ``epsilon`` is logged.

    Args:
        epsilon: l2 radius.

    Returns:
        ``"certified_auroc@<eps>"`` with ``eps`` in ``%g`` format, e.g.
        ``certified_auroc@0.1``.
    """
    return f"certified_auroc@{float(epsilon):g}"


def certified_auroc(
    scores_normal: Any,
    scores_anomalous: Any,
    epsilons: Any,
    lipschitz: float = 1.0,
) -> np.ndarray | float:
    r"""Certified AUROC at each l2 radius (Béthune et al. 2023, Proposition 1).

    For an ``L``-Lipschitz scorer ``f`` (positive = normal) and radius ``eps``,

    .. math::

        \mathrm{AUROC}_\epsilon = \frac{1}{n_+ n_-} \sum_{i,j}
        \Big[\mathbb{1}\{f(x_i) - L\epsilon > f(z_j) + L\epsilon\}
        + \tfrac12 \mathbb{1}\{f(x_i) - L\epsilon = f(z_j) + L\epsilon\}\Big],

    a lower bound on the AUROC reached under any l2 attack of radius ``eps``
    applied to every normal point ``x_i`` and every anomaly ``z_j``. Ties count
    1/2, exactly like :func:`sklearn.metrics.roc_auc_score`, so ``eps = 0`` gives
    the ordinary AUROC.

    Algorithm: both score sets are sorted once (O(n log n)); then for all radii at
    once, ``np.searchsorted`` of the sorted thresholds ``f(x_i) - 2 L eps`` in the
    sorted anomaly scores with ``side="left"`` counts the strict wins and with
    ``side="right"`` the wins plus ties. The pair count is an exact integer and
    the AUROC is ``(2 * wins + ties) / (2 n_+ n_-)``, a single rounding. The
    comparison is evaluated in float64 as ``f(z_j) < f(x_i) - 2 L eps``.

    Args:
        scores_normal: scores of normal samples (the positive class), 1-D or
            shape ``(n, 1)``.
        scores_anomalous: scores of anomalies, 1-D or shape ``(m, 1)``.
        epsilons: one radius or an array of radii (``>= 0``).
        lipschitz: Lipschitz constant ``L > 0`` of the scorer (1 for kocc's
            1-Lipschitz networks).

    Returns:
        A float when ``epsilons`` is a scalar, otherwise an array of the shape of
        ``epsilons`` with the certified AUROC at each radius.

    Raises:
        ValueError: on empty, non-finite or non-1-D scores, negative or
            non-finite radii, or a non-positive Lipschitz constant.
    """
    positives = _as_scores(scores_normal, "scores_normal")
    negatives = _as_scores(scores_anomalous, "scores_anomalous")
    eps = _as_epsilons(epsilons)
    lip = _check_lipschitz(lipschitz)

    positives = np.sort(positives)
    negatives = np.sort(negatives)
    shifts = 2.0 * lip * eps.reshape(-1)
    thresholds = positives[None, :] - shifts[:, None]
    wins = np.searchsorted(negatives, thresholds, side="left").sum(axis=1)
    wins_and_ties = np.searchsorted(negatives, thresholds, side="right").sum(axis=1)
    auroc = (wins + wins_and_ties) / (2.0 * positives.size * negatives.size)
    if eps.ndim == 0:
        return float(auroc[0])
    return auroc.reshape(eps.shape)


def _certified_auroc_tf(
    positives: tf.Tensor, negatives: tf.Tensor, shift: tf.Tensor
) -> tf.Tensor:
    """Graph version of :func:`certified_auroc` for one total shift ``2 L eps``.

    Returns NaN when one of the two classes is empty (the AUROC is undefined).
    """
    positives = tf.sort(tf.cast(positives, tf.float64))
    negatives = tf.sort(tf.cast(negatives, tf.float64))
    thresholds = positives - tf.cast(shift, tf.float64)
    wins = tf.searchsorted(
        negatives[None, :], thresholds[None, :], side="left", out_type=tf.int64
    )
    wins_and_ties = tf.searchsorted(
        negatives[None, :], thresholds[None, :], side="right", out_type=tf.int64
    )
    pairs2 = tf.cast(tf.reduce_sum(wins) + tf.reduce_sum(wins_and_ties), tf.float64)
    denominator = 2.0 * tf.cast(tf.size(positives), tf.float64)
    denominator *= tf.cast(tf.size(negatives), tf.float64)
    return pairs2 / denominator  # 0 / 0 = NaN when a class is empty


@tf.keras.utils.register_keras_serializable("kocc")
class CertifiedAUROCMetric(tf.keras.metrics.Metric):
    r"""Streaming, exact certified AUROC at one radius, as a Keras metric.

    ``update_state`` appends the batch's scores to two growing variables (normal
    scores where ``y_true > 0``, anomaly scores where ``y_true <= 0``);
    ``result`` evaluates the exact certified AUROC of
    :func:`certified_auroc` on everything seen since the last reset:
    AUROC of ``f(x) - L eps`` against ``f(z) + L eps``, ties counted 1/2.

    Unlike :class:`tf.keras.metrics.AUC`, which bins scores on a fixed grid of
    thresholds and therefore only approximates the AUROC (and cannot shift
    scores by ``L eps`` exactly), this metric is exact; the price is memory
    linear in the number of evaluated samples (8 bytes per sample), and an
    O(n log n) sort each time ``result`` is called. It is meant for
    ``model.evaluate`` or validation data; during ``fit`` on OCSDF its
    "anomalies" are the generated negatives. The result is NaN while one of
    the two classes has not been seen.

    Args:
        epsilon: l2 radius ``eps >= 0``.
        lipschitz: Lipschitz constant ``L > 0`` of the model.
        name: metric name; defaults to ``certified_auroc@<eps>``.
        dtype: dtype of the result.

    Raises:
        ValueError: if ``epsilon`` is negative or not finite, or ``lipschitz``
            is not > 0.
    """

    def __init__(
        self,
        epsilon: float = 0.0,
        lipschitz: float = 1.0,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        if np.ndim(epsilon) != 0:
            raise ValueError(
                f"CertifiedAUROCMetric takes one radius; got {epsilon!r}. Create "
                "one metric per radius."
            )
        eps = float(_as_epsilons(epsilon))
        super().__init__(name=name or metric_name(eps), dtype=dtype)
        self.epsilon = eps
        self.lipschitz = _check_lipschitz(lipschitz)
        self._normal = tf.Variable(
            tf.zeros([0], tf.float64),
            shape=tf.TensorShape([None]),
            trainable=False,
            name="normal_scores",
        )
        self._anomalous = tf.Variable(
            tf.zeros([0], tf.float64),
            shape=tf.TensorShape([None]),
            trainable=False,
            name="anomalous_scores",
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Appends the scores of a batch.

        Args:
            y_true: labels, ``> 0`` for normal samples, ``<= 0`` for anomalies;
                shape ``(n,)`` or ``(n, 1)``.
            y_pred: scores, shape ``(n,)`` or ``(n, 1)``.
            sample_weight: not supported (the AUROC here is unweighted).

        Raises:
            ValueError: if ``sample_weight`` is given.
        """
        if sample_weight is not None:
            raise ValueError(
                "CertifiedAUROCMetric does not support sample_weight: the "
                "certified AUROC is an unweighted pair count."
            )
        scores = tf.reshape(tf.cast(y_pred, tf.float64), [-1])
        labels = tf.reshape(tf.cast(y_true, tf.float64), [-1])
        tf.debugging.assert_equal(
            tf.size(scores),
            tf.size(labels),
            message="CertifiedAUROCMetric: y_true and y_pred sizes differ",
        )
        is_normal = labels > 0
        self._normal.assign(
            tf.concat([self._normal, tf.boolean_mask(scores, is_normal)], axis=0)
        )
        self._anomalous.assign(
            tf.concat([self._anomalous, tf.boolean_mask(scores, ~is_normal)], axis=0)
        )

    def result(self) -> tf.Tensor:
        shift = tf.constant(2.0 * self.lipschitz * self.epsilon, tf.float64)
        value = _certified_auroc_tf(self._normal, self._anomalous, shift)
        return tf.cast(value, self.dtype)

    def reset_state(self) -> None:
        self._normal.assign(tf.zeros([0], tf.float64))
        self._anomalous.assign(tf.zeros([0], tf.float64))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "lipschitz": self.lipschitz})
        return config


def score_function(
    model: Callable[..., Any] | tf.keras.Model,
) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model as a differentiable function ``x -> f(x)`` of shape ``(n,)``.

    Keras models are called in inference mode; for kocc's OCSDF the cached
    constrained kernels are first synchronised with the current parameters
    (``sync_constrained_kernels``), so the function is the model that
    ``predict`` evaluates. Any other callable is used as is.

    Args:
        model: a kocc model, a Keras model or a callable on a batch.

    Returns:
        A function mapping a float32 batch ``(n, ...)`` to scores ``(n,)``.
    """
    if hasattr(model, "sync_constrained_kernels"):
        model.sync_constrained_kernels()
    return as_score_fn(model)


def model_scores(
    model: Callable[..., Any] | tf.keras.Model, x: Any, batch_size: int = 1024
) -> np.ndarray:
    """Scores of ``model`` on ``x`` as a 1-D float64 numpy array.

    Uses ``model.score_samples`` when the model has it (kocc's OCSDF), otherwise
    calls the model on batches of ``batch_size`` (in inference mode for Keras
    models). The model must return one score per sample, shape ``(n,)`` or
    ``(n, 1)``.

    Args:
        model: a kocc model, a Keras model or any callable on a batch.
        x: inputs, shape ``(n, *feature_shape)``.
        batch_size: batch size for the forward passes.

    Returns:
        Array of shape ``(n,)``.

    Raises:
        ValueError: if ``x`` is empty, ``batch_size < 1``, or the model does not
            return one score per sample.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch, got shape {x.shape}.")
    if hasattr(model, "score_samples"):
        scores = np.asarray(model.score_samples(x), dtype=np.float64)
    else:
        is_keras = isinstance(model, tf.keras.Model)
        chunks = []
        for start in range(0, x.shape[0], int(batch_size)):
            batch = tf.constant(x[start : start + int(batch_size)])
            out = model(batch, training=False) if is_keras else model(batch)
            chunks.append(np.asarray(out, dtype=np.float64))
        scores = np.concatenate(chunks, axis=0)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.shape != (x.shape[0],):
        raise ValueError(
            "the model must return one score per sample (shape (n,) or (n, 1)); "
            f"for {x.shape[0]} inputs it returned shape {scores.shape}."
        )
    return scores


def certified_radius(
    model: Callable[..., Any] | tf.keras.Model,
    x: Any,
    threshold: float = 0.0,
    lipschitz: float = 1.0,
    batch_size: int = 1024,
) -> np.ndarray:
    """Certified l2 radius of each decision ``f(x) >= threshold``.

    ``r(x) = |f(x) - threshold| / L``: for an ``L``-Lipschitz scorer no
    perturbation with ``||delta||_2 < r(x)`` can move ``f(x + delta)`` across
    ``threshold``, so the normal/anomalous decision at ``x`` is certified within
    that radius (Béthune et al. 2023, Sec. 4; Serrurier et al. 2021, binary case).

    Args:
        model: kocc model, Keras model or callable returning one score per sample.
        x: inputs, shape ``(n, *feature_shape)``.
        threshold: decision threshold on the score (0 = the learnt boundary).
        lipschitz: Lipschitz constant ``L > 0`` of the model.
        batch_size: batch size for the forward passes.

    Returns:
        Array of radii, shape ``(n,)``.

    Raises:
        ValueError: on a non-finite threshold, ``L <= 0``, or non-finite scores.
    """
    lip = _check_lipschitz(lipschitz)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}.")
    scores = _as_scores(model_scores(model, x, batch_size), "model scores")
    return np.abs(scores - float(threshold)) / lip


def hkr_binary_radius(logits: Any, lipschitz: float = 1.0) -> np.ndarray:
    """Certified radius of a binary HKR classifier (Serrurier et al. 2021).

    The predicted class is ``sign(f(x))``; with ``f`` ``L``-Lipschitz it cannot
    change within ``r(x) = |f(x)| / L``.

    Args:
        logits: scores ``f(x)``, shape ``(n,)`` or ``(n, 1)``.
        lipschitz: Lipschitz constant ``L > 0``.

    Returns:
        Array of radii, shape ``(n,)``.
    """
    lip = _check_lipschitz(lipschitz)
    return np.abs(_as_scores(logits, "logits")) / lip


def hkr_multiclass_radius(
    logits: Any, per_class_normalized: bool, lipschitz: float = 1.0
) -> np.ndarray:
    r"""Certified radius of a multiclass HKR classifier (Serrurier et al. 2021).

    With ``top1`` and ``top2`` the two largest logits, the predicted class is
    certified within

    * ``(top1 - top2) / (2 L)`` when every output ``f_k`` is ``L``-Lipschitz on
      its own (per-class normalized last layer, e.g. deel-lip
      ``FrobeniusDense(disjoint_neurons=True)``): ``f_i - f_j`` is then
      ``2L``-Lipschitz;
    * ``(top1 - top2) / (\sqrt{2} L)`` when the whole vector map ``f`` is
      ``L``-Lipschitz (e.g. a spectrally normalized last layer):
      ``|f_i - f_j| = |(e_i - e_j)^T f| <= \sqrt 2 \|f\|``.

    Args:
        logits: array of shape ``(n, k)`` with ``k >= 2``.
        per_class_normalized: which of the two cases above applies.
        lipschitz: Lipschitz constant ``L > 0``.

    Returns:
        Array of radii, shape ``(n,)``.

    Raises:
        ValueError: if ``logits`` is not 2-D with at least 2 classes, is empty,
            or is not finite.
    """
    lip = _check_lipschitz(lipschitz)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.shape[0] == 0:
        raise ValueError(
            "logits must have shape (n, k) with n >= 1 and k >= 2 classes, got "
            f"shape {logits.shape}."
        )
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain non-finite values (NaN or inf).")
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    factor = 2.0 if per_class_normalized else np.sqrt(2.0)
    return margin / (factor * lip)


def certified_accuracy(
    radii: Any, correct: Any, epsilons: Sequence[float] | float
) -> np.ndarray | float:
    """Certified accuracy: fraction of samples correct AND certified beyond eps.

    For a binary HKR classifier (radii from :func:`hkr_binary_radius`) this is
    :class:`deel.lip.metrics.BinaryProvableRobustAccuracy` (``y f / L > eps``,
    ``tests/test_reuse_deel_lip.py``); kocc keeps its own because deel-lip's is
    a Keras loss on label/logit tensors for one ``eps`` at a time, while the
    benchmarks need radii from any source (also certified AUROC-style scores)
    at many radii in one NumPy pass.

    ``acc_eps = mean(correct_i and r_i > eps)``; a sample whose radius equals
    ``eps`` is not counted (the decision could flip exactly on the boundary).
    At ``eps = 0`` this is the accuracy on samples with a non-zero margin.

    Args:
        radii: certified radii ``r_i``, shape ``(n,)``
            (from :func:`certified_radius`, :func:`hkr_binary_radius` or
            :func:`hkr_multiclass_radius`).
        correct: booleans, whether each prediction is correct, shape ``(n,)``.
        epsilons: one radius or an array of radii (``>= 0``).

    Returns:
        A float for a scalar ``epsilons``, otherwise an array of its shape.

    Raises:
        ValueError: on mismatched or empty inputs, non-finite or negative radii.
    """
    radii = _as_scores(radii, "radii")
    if np.any(radii < 0):
        raise ValueError("radii must be >= 0.")
    correct = np.asarray(correct)
    if correct.shape != radii.shape:
        raise ValueError(
            f"correct must have the shape of radii {radii.shape}, got "
            f"{correct.shape}."
        )
    correct = correct.astype(bool)
    eps = _as_epsilons(epsilons)
    certified = correct[None, :] & (radii[None, :] > eps.reshape(-1)[:, None])
    accuracy = certified.mean(axis=1)
    if eps.ndim == 0:
        return float(accuracy[0])
    return accuracy.reshape(eps.shape)
