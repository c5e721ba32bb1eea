"""Whole-model save/load of OCSDF and resumable training.

Runs of the same steps from the same state are compared with ``rtol=1e-5``, not
bit for bit: TensorFlow's multi-threaded CPU kernels may sum in a different
order from one call to the next (with one intra-op thread they are identical).
"""

import numpy as np
import pytest
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.models import OCSDF
from kocc.sampling import Ball

RTOL = 1e-5


def _data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(192, 3)).astype(np.float32)


def _model(warmup_epochs: int = 0) -> OCSDF:
    model = OCSDF(
        lipschitz_mlp(3, (16, 16), seed=4),
        Ball(4.0, shape=(3,)),
        margin=0.1,
        nr_steps=2,
        warmup_epochs=warmup_epochs,
        seed=5,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    return model


def _fit(model: OCSDF, epochs: int, **kwargs) -> tf.keras.callbacks.History:
    return model.fit(
        _data(), batch_size=64, epochs=epochs, shuffle=False, verbose=0, **kwargs
    )


@pytest.fixture
def saved_mid_training(tmp_path):
    """A model trained for 2 epochs and its ``.keras`` file, nothing run since."""
    model = _model()
    _fit(model, 2)
    path = tmp_path / "ocsdf.keras"
    model.save(path)
    return model, path


def test_load_model_needs_no_custom_objects_and_restores_everything(
    saved_mid_training,
):
    model, path = saved_mid_training
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded, OCSDF)
    assert type(loaded.domain) is Ball and loaded.domain.radius == 4.0
    assert (loaded.margin, loaded.nr_steps, loaded.seed) == (0.1, 2, 5)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 6
    assert isinstance(loaded.optimizer, tf.keras.optimizers.Adam)
    np.testing.assert_allclose(
        float(loaded.optimizer.learning_rate), float(model.optimizer.learning_rate)
    )
    # Adam's moments land on the same variables (saved by position)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = _data()
    np.testing.assert_array_equal(loaded.score_samples(x), model.score_samples(x))


def test_reloaded_model_continues_with_the_same_next_step_loss(saved_mid_training):
    model, path = saved_mid_training
    loaded = tf.keras.models.load_model(path)
    # one more step each, from the same state: same negatives, same update
    original = model.fit(_data()[:64], batch_size=64, epochs=1, verbose=0)
    resumed = loaded.fit(_data()[:64], batch_size=64, epochs=1, verbose=0)
    for key in ("loss", "f_pos", "f_neg"):
        np.testing.assert_allclose(
            resumed.history[key], original.history[key], rtol=RTOL
        )
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-6)


class _Interrupt(tf.keras.callbacks.Callback):
    """Raise at the start of epoch ``epoch``, as a killed job would stop."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


class _EpochLog(tf.keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.model_epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.model_epochs.append(int(self.model._epoch.numpy()))


def test_backup_and_restore_resumes_an_interrupted_fit_at_the_right_epoch(tmp_path):
    epochs, stop_at = 4, 2
    backup = tf.keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))

    uninterrupted = _model(warmup_epochs=stop_at + 1)
    reference = _fit(uninterrupted, epochs)

    interrupted = _model(warmup_epochs=stop_at + 1)
    with pytest.raises(KeyboardInterrupt):
        _fit(interrupted, epochs, callbacks=[backup, _Interrupt(stop_at)])
    # a fresh process would rebuild the model from scratch
    restarted = _model(warmup_epochs=stop_at + 1)
    log = _EpochLog()
    resumed = _fit(restarted, epochs, callbacks=[backup, log])

    assert log.epochs == list(range(stop_at, epochs))
    # the warm-up counter (T = 0 before epoch 3) follows the resumed epoch
    assert log.model_epochs == list(range(stop_at, epochs))
    assert int(restarted.optimizer.iterations) == int(
        uninterrupted.optimizer.iterations
    )
    np.testing.assert_allclose(
        resumed.history["loss"], reference.history["loss"][stop_at:], rtol=RTOL
    )
    # parameters and constrained kernels (deel-lip's power-iteration vectors are
    # drawn unseeded at construction and only defined up to sign)
    for a, b in zip(
        _served_state(uninterrupted), _served_state(restarted), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-6)


def _served_state(model: OCSDF) -> list[np.ndarray]:
    wbars = [layer.wbar for layer in model.backbone.layers if hasattr(layer, "wbar")]
    return [v.numpy() for v in [*model.trainable_variables, *wbars]]
