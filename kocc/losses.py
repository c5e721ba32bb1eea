"""Losses for one-class training of 1-Lipschitz networks."""

from __future__ import annotations

import tensorflow as tf

from kocc.validation import check_positive


@tf.keras.utils.register_keras_serializable("kocc")
class OneClassHKR(tf.keras.losses.Loss):
    r"""Hinge Kantorovich-Rubinstein loss for one-class learning (OCSDF).

    For a score :math:`f(x)` and a label :math:`y \in \{+1, -1\}` (+1 = normal
    sample, -1 = negative sample),

    .. math::
        \mathcal{L}(y f) = \lambda \max(0, m - y f) - y f,

    averaged over the batch. Minimising it over 1-Lipschitz functions, with the
    negatives placed by Newton-Raphson sampling, yields :math:`f^* = S + m` where
    :math:`S` is the signed distance to the support of the normal data
    (Béthune et al., ICML 2023, Theorem 1).

    Relation to deel-lip: on a batch with as many +1 as -1 samples (OCSDF's
    batches), ``OneClassHKR(margin=m, lam=l)`` equals one half of
    ``deel.lip.losses.HKR(alpha=2 * l, min_margin=2 * m)`` (Serrurier et al.,
    CVPR 2021; tested in ``tests/test_losses_hkr_relation.py``). kocc keeps its
    own class because it is per sample (so Keras reductions and
    ``tf.distribute``'s global-batch scaling apply; deel-lip averages the KR
    term per class, which differs on unbalanced batches), holds plain floats
    in its config (no ``tf.Variable``), and takes the margin ``m`` of the
    paper's equation rather than deel-lip's ``min_margin = 2m``.

    Args:
        margin: the hinge margin :math:`m > 0`.
        lam: the hinge weight :math:`\lambda > 0`.
        reduction: Keras loss reduction (default: mean over the batch).
        name: loss name.

    Raises:
        ValueError: if ``margin <= 0`` or ``lam <= 0``.
    """

    def __init__(
        self,
        margin: float = 0.05,
        lam: float = 100.0,
        reduction: str = tf.keras.losses.Reduction.AUTO,
        name: str = "one_class_hkr",
    ) -> None:
        check_positive(margin=margin, lam=lam)
        super().__init__(reduction=reduction, name=name)
        self.margin = float(margin)
        self.lam = float(lam)

    @property
    def negative_level(self) -> float:
        """The level ``-margin`` that Newton-Raphson moves negatives to (Alg. 1)."""
        return -self.margin

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """Per-sample loss ``lam * relu(margin - y f) - y f`` (labels in {+1, -1})."""
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        y_true = tf.reshape(y_true, tf.shape(y_pred))
        yf = y_true * y_pred
        per_sample = self.lam * tf.nn.relu(self.margin - yf) - yf
        if per_sample.shape.rank is not None and per_sample.shape.rank > 1:
            # one value per sample, as Keras losses return (the output axis is 1)
            per_sample = tf.reduce_mean(per_sample, axis=-1)
        return per_sample

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"margin": self.margin, "lam": self.lam})
        return config
