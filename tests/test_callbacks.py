"""Tests of kocc.callbacks.CertifiedAUROC."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from kocc.callbacks import TENSORBOARD_RUN, CertifiedAUROC
from kocc.metrics import certified_auroc

EPSILONS = (0.0, 0.1, 0.5)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(1.0, 1.0, size=(96, 2)).astype(np.float32)
    anomalous = rng.normal(-1.0, 1.0, size=(64, 2)).astype(np.float32)
    x = np.r_[normal, anomalous]
    y = np.r_[np.ones(96), -np.ones(64)].astype(np.float32)
    return normal, anomalous, x, y


def _model():
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Dense(
                1,
                input_shape=(2,),
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1),
            )
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    return model


def _scalars(log_dir):
    """{(run, tag): [(step, value), ...]} read back from the event files."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events*"), recursive=True):
        run = os.path.relpath(os.path.dirname(path), log_dir)
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                scalar = float(tf.make_ndarray(value.tensor))
                found.setdefault((run, value.tag), []).append((event.step, scalar))
    return found


class EpochMetricsOffTensorBoard(tf.keras.callbacks.TensorBoard):
    """A TensorBoard callback that writes nothing itself.

    Keras' TensorBoard writes its epoch scalars with ``tf.summary.scalar``, which
    needs the ``tensorboard`` package; this stand-in lets the discovery of its
    ``log_dir`` be tested without that package.
    """

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


def test_certified_auroc_callback_writes_history_every_n_epochs():
    normal, anomalous, x, y = _data()
    model = _model()
    callback = CertifiedAUROC(normal, anomalous, EPSILONS, every_n_epochs=2)
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[callback])
    assert callback.evaluated_epochs == [1, 3]
    for eps in ("0", "0.1", "0.5"):
        assert len(history.history[f"certified_auroc@{eps}"]) == 2
    # compute() is certified_auroc on model.predict of the validation sets.
    scores_n = model.predict(normal, verbose=0)[:, 0]
    scores_a = model.predict(anomalous, verbose=0)[:, 0]
    expected = certified_auroc(scores_n, scores_a, EPSILONS)
    got = callback.compute()
    np.testing.assert_allclose(
        [
            got["certified_auroc@0"],
            got["certified_auroc@0.1"],
            got["certified_auroc@0.5"],
        ],
        expected,
        atol=1e-12,
    )
    values = history.history["certified_auroc@0.5"]
    assert all(0.0 <= v <= 1.0 for v in values)
    # Radius 0.5 certifies less than radius 0.
    assert np.all(np.array(values) <= np.array(history.history["certified_auroc@0"]))


def test_certified_auroc_callback_values_equal_those_of_the_model_at_that_epoch():
    normal, anomalous, x, y = _data(1)
    model = _model()
    callback = CertifiedAUROC(normal, anomalous, EPSILONS, every_n_epochs=1)
    history = model.fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[callback])
    scores_n = model.predict(normal, verbose=0)[:, 0]
    scores_a = model.predict(anomalous, verbose=0)[:, 0]
    expected = certified_auroc(scores_n, scores_a, EPSILONS)
    last = [history.history[f"certified_auroc@{e:g}"][-1] for e in EPSILONS]
    np.testing.assert_allclose(last, expected, atol=1e-12)


@pytest.mark.parametrize("tensorboard_first", [True, False])
def test_certified_auroc_callback_finds_tensorboard_callback_and_writes_scalars(
    tmp_path, tensorboard_first
):
    normal, anomalous, x, y = _data(2)
    model = _model()
    board = EpochMetricsOffTensorBoard(log_dir=str(tmp_path), write_graph=False)
    callback = CertifiedAUROC(normal, anomalous, (0.0, 0.25), every_n_epochs=2)
    callbacks = [board, callback] if tensorboard_first else [callback, board]
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=callbacks)
    scalars = _scalars(str(tmp_path))
    for eps in ("0", "0.25"):
        written = scalars[(TENSORBOARD_RUN, f"epoch_certified_auroc@{eps}")]
        assert [step for step, _ in written] == [1, 3]
        np.testing.assert_allclose(
            [value for _, value in written],
            history.history[f"certified_auroc@{eps}"],
            rtol=1e-6,
        )


def test_certified_auroc_callback_writes_to_explicit_log_dir(tmp_path):
    normal, anomalous, x, y = _data(3)
    callback = CertifiedAUROC(
        normal, anomalous, 0.1, every_n_epochs=1, tensorboard=str(tmp_path)
    )
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    written = _scalars(str(tmp_path))[(TENSORBOARD_RUN, "epoch_certified_auroc@0.1")]
    assert [step for step, _ in written] == [0, 1]


def test_certified_auroc_callback_writes_nothing_without_tensorboard(
    tmp_path, monkeypatch
):
    normal, anomalous, x, y = _data(4)
    callback = CertifiedAUROC(normal, anomalous, 0.1)
    monkeypatch.chdir(tmp_path)
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert not glob.glob(os.path.join(str(tmp_path), "**", "events*"), recursive=True)


def test_certified_auroc_callback_with_real_tensorboard_callback(tmp_path):
    normal, anomalous, x, y = _data(5)
    board = tf.keras.callbacks.TensorBoard(log_dir=str(tmp_path), write_graph=False)
    callback = CertifiedAUROC(normal, anomalous, (0.0, 0.1))
    # The certified callback after TensorBoard: only its own run has the values.
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[board, callback])
    scalars = _scalars(str(tmp_path))
    assert len(scalars[(TENSORBOARD_RUN, "epoch_certified_auroc@0.1")]) == 2
    assert len(scalars[("train", "epoch_loss")]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_normal": np.zeros((0, 2))}, "validation_normal is empty"),
        ({"validation_anomalous": np.zeros(5)}, "validation_anomalous must be a batch"),
        ({"validation_anomalous": np.zeros((4, 3))}, "same feature shape"),
        ({"validation_normal": np.full((4, 2), np.nan)}, "NaN"),
        ({"epsilons": [-0.1]}, "epsilons must be finite and >= 0"),
        ({"every_n_epochs": 0}, "every_n_epochs must be an integer >= 1"),
        ({"every_n_epochs": 1.5}, "every_n_epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"lipschitz": 0.0}, "lipschitz must be"),
        ({"tensorboard": 3}, "tensorboard must be None"),
    ],
)
def test_certified_auroc_callback_rejects_bad_arguments(kwargs, message):
    arguments = {
        "validation_normal": np.zeros((4, 2)),
        "validation_anomalous": np.ones((4, 2)),
        "epsilons": (0.1,),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        CertifiedAUROC(**arguments)


def test_certified_auroc_callback_rejects_model_with_several_outputs():
    normal, anomalous, x, _ = _data(6)
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(2,))])
    model.compile(loss="mse")
    callback = CertifiedAUROC(normal, anomalous, 0.1)
    with pytest.raises(ValueError, match="one score per sample"):
        model.fit(
            x, np.zeros((x.shape[0], 2)), epochs=1, verbose=0, callbacks=[callback]
        )


def test_certified_auroc_callback_config_roundtrip(tmp_path):
    normal, anomalous, _, _ = _data(7)
    callback = CertifiedAUROC(
        normal,
        anomalous,
        (0.0, 0.2),
        every_n_epochs=3,
        lipschitz=2.0,
        tensorboard=str(tmp_path),
    )
    clone = CertifiedAUROC.from_config(callback.get_config())
    assert clone.get_config() == callback.get_config()
    np.testing.assert_array_equal(clone.validation_normal, normal)
    assert clone.epsilons == [0.0, 0.2] and clone.every_n_epochs == 3
