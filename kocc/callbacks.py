"""Keras callbacks that monitor certified robustness during training.

:class:`CertifiedAUROC` evaluates the certified AUROC of Béthune et al. (ICML 2023,
Proposition 1) on held-out normal and anomalous samples every few epochs, writes
``certified_auroc@<eps>`` into the epoch logs (so ``History`` records them and
later callbacks such as ``EarlyStopping`` or ``ModelCheckpoint`` can monitor them),
and writes them as TensorBoard scalars next to a ``TensorBoard`` callback's logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from kocc.metrics import _as_epsilons, _check_lipschitz, certified_auroc, metric_name
from kocc.validation import check_batch

__all__ = ["CertifiedAUROC", "write_scalar"]

#: Sub-directory of the TensorBoard ``log_dir`` that receives the scalars.
TENSORBOARD_RUN = "certified_auroc"


def _scalar_metadata() -> summary_pb2.SummaryMetadata:
    """Metadata that makes TensorBoard show a summary as a scalar plot.

    Same bytes as ``tensorboard.plugins.scalar.metadata.create_summary_metadata``
    (plugin ``scalars``, empty ``ScalarPluginData`` content), built from core
    TensorFlow protos so that writing needs no ``tensorboard`` package.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.plugin_data.content = b""
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    return metadata


def write_scalar(tag: str, value: float, step: int) -> None:
    """Writes a TensorBoard scalar to the default summary writer.

    Equivalent to ``tf.summary.scalar`` but works with core TensorFlow alone
    (``tf.summary.scalar`` raises when the ``tensorboard`` package is missing).

    Args:
        tag: scalar name, e.g. ``certified_auroc@0.1``.
        value: the value.
        step: global step (the epoch for epoch-level scalars).
    """
    tf.summary.write(
        tag=tag,
        tensor=tf.constant(value, tf.float32),
        step=step,
        metadata=_scalar_metadata(),
    )


def _calling_callback_list(max_depth: int = 8) -> Any:
    """The ``CallbackList`` that is calling the current hook, if any.

    Keras does not give a callback a handle to its siblings; the hook is called
    from a ``CallbackList`` method, so the list is the ``self`` of one of the
    calling frames.
    """
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, tf.keras.callbacks.CallbackList):
            return owner
        frame = frame.f_back
    return None


@tf.keras.utils.register_keras_serializable("kocc")
class CertifiedAUROC(tf.keras.callbacks.Callback):
    r"""Logs the certified AUROC on validation data every ``every_n_epochs``.

    At the end of epochs ``every_n_epochs, 2 * every_n_epochs, ...`` the model
    scores the validation sets with ``model.predict`` and, for each radius
    ``eps``, computes (Béthune et al. 2023, Proposition 1)

    .. math::

        \mathrm{AUROC}_\epsilon = \mathrm{AUROC}\big(f(x) - L\epsilon,\;
        f(z) + L\epsilon\big)

    with :func:`kocc.metrics.certified_auroc`. The values are written

    * into the epoch ``logs`` as ``certified_auroc@<eps>`` (``%g`` format), so
      ``model.fit(...).history`` has them (like Keras' ``validation_freq``,
      skipped epochs have no entry; :attr:`evaluated_epochs` lists the others);
    * as TensorBoard scalars ``epoch_certified_auroc@<eps>`` (step = epoch,
      the tag convention of Keras' ``TensorBoard`` callback) into the run
      ``<log_dir>/certified_auroc`` when a ``tf.keras.callbacks.TensorBoard``
      callback is in the same ``fit`` call (found automatically, in any order)
      or when ``tensorboard`` is given. If the ``TensorBoard`` callback comes
      after this one in the list it also logs the values into its ``train``
      run, under the same tag, so they overlay in one chart.

    Args:
        validation_normal: normal inputs, shape ``(n, *feature_shape)``.
        validation_anomalous: anomalous inputs, shape ``(m, *feature_shape)``.
        epsilons: l2 radii ``>= 0``.
        every_n_epochs: evaluation period in epochs (``>= 1``).
        lipschitz: Lipschitz constant ``L > 0`` of the model.
        batch_size: batch size for ``model.predict``.
        tensorboard: ``None`` to find a ``TensorBoard`` callback of the same
            ``fit`` call automatically, or a ``TensorBoard`` callback, or a log
            directory (str).

    Raises:
        ValueError: on empty, non-finite or mismatched validation inputs,
            invalid radii, ``every_n_epochs < 1`` or ``batch_size < 1``.
    """

    def __init__(
        self,
        validation_normal: Any,
        validation_anomalous: Any,
        epsilons: Sequence[float] | float = (0.0,),
        every_n_epochs: int = 1,
        lipschitz: float = 1.0,
        batch_size: int = 1024,
        tensorboard: tf.keras.callbacks.TensorBoard | str | None = None,
    ) -> None:
        super().__init__()
        self.validation_normal = check_batch(
            validation_normal, name="validation_normal"
        )
        self.validation_anomalous = check_batch(
            validation_anomalous, name="validation_anomalous"
        )
        if self.validation_normal.shape[1:] != self.validation_anomalous.shape[1:]:
            raise ValueError(
                "validation_normal and validation_anomalous must have the same "
                f"feature shape, got {self.validation_normal.shape[1:]} and "
                f"{self.validation_anomalous.shape[1:]}."
            )
        self.epsilons = [float(e) for e in np.atleast_1d(_as_epsilons(epsilons))]
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(
                f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}."
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if tensorboard is not None and not isinstance(
            tensorboard, (str, os.PathLike, tf.keras.callbacks.TensorBoard)
        ):
            raise ValueError(
                "tensorboard must be None, a tf.keras.callbacks.TensorBoard or a "
                f"log directory, got {type(tensorboard).__name__}."
            )
        self.every_n_epochs = int(every_n_epochs)
        self.lipschitz = _check_lipschitz(lipschitz)
        self.batch_size = int(batch_size)
        self.tensorboard = tensorboard
        self.evaluated_epochs: list[int] = []
        self._writer: Any = None
        self._log_dir: str | None = None

    def _tensorboard_log_dir(self) -> str | None:
        if isinstance(self.tensorboard, tf.keras.callbacks.TensorBoard):
            return self.tensorboard.log_dir
        if self.tensorboard is not None:
            return os.fspath(self.tensorboard)
        callback_list = _calling_callback_list()
        if callback_list is None:
            return None
        for callback in callback_list.callbacks:
            if isinstance(callback, tf.keras.callbacks.TensorBoard):
                return callback.log_dir
        return None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.evaluated_epochs = []
        self._log_dir = self._tensorboard_log_dir()
        if self._log_dir is not None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self._log_dir, TENSORBOARD_RUN)
            )

    def _scores(self, x: np.ndarray) -> np.ndarray:
        scores = np.asarray(
            self.model.predict(x, batch_size=self.batch_size, verbose=0),
            dtype=np.float64,
        )
        if scores.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(
                "CertifiedAUROC needs one score per sample from model.predict "
                f"(shape (n,) or (n, 1)); for {x.shape[0]} inputs it returned "
                f"shape {scores.shape}."
            )
        return scores.reshape(-1)

    def compute(self) -> dict[str, float]:
        """Certified AUROC of the current model at every radius.

        Returns:
            ``{"certified_auroc@<eps>": value}`` for each radius.

        Raises:
            ValueError: if the model's scores are not finite or not one per
                sample.
        """
        scores_normal = self._scores(self.validation_normal)
        scores_anomalous = self._scores(self.validation_anomalous)
        values = certified_auroc(
            scores_normal, scores_anomalous, self.epsilons, self.lipschitz
        )
        return {
            metric_name(e): float(v) for e, v in zip(self.epsilons, values, strict=True)
        }

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        values = self.compute()
        self.evaluated_epochs.append(epoch)
        if logs is not None:
            logs.update(values)
        if self._writer is not None:
            with self._writer.as_default():
                for tag, value in values.items():
                    write_scalar(f"epoch_{tag}", value, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self) -> dict[str, Any]:
        """Full configuration (embeds the validation inputs as nested lists)."""
        if isinstance(self.tensorboard, tf.keras.callbacks.TensorBoard):
            tensorboard = self.tensorboard.log_dir
        elif self.tensorboard is not None:
            tensorboard = os.fspath(self.tensorboard)
        else:
            tensorboard = None
        return {
            "validation_normal": self.validation_normal.tolist(),
            "validation_anomalous": self.validation_anomalous.tolist(),
            "epsilons": list(self.epsilons),
            "every_n_epochs": self.every_n_epochs,
            "lipschitz": self.lipschitz,
            "batch_size": self.batch_size,
            "tensorboard": tensorboard,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CertifiedAUROC:
        return cls(**config)
