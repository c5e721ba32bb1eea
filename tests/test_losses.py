import numpy as np
import pytest
import tensorflow as tf

from kocc.losses import OneClassHKR


def test_hkr_matches_formula_on_both_labels():
    loss = OneClassHKR(margin=0.1, lam=10.0)
    f = np.array([[0.5], [0.05], [-0.2], [0.3]], np.float32)
    y = np.array([[1.0], [1.0], [-1.0], [-1.0]], np.float32)
    yf = (y * f).ravel()
    expected = np.mean(10.0 * np.maximum(0.0, 0.1 - yf) - yf)
    assert float(loss(y, f)) == pytest.approx(expected, rel=1e-6)


def test_hkr_accepts_flat_scores():
    loss = OneClassHKR(margin=1.0, lam=2.0)
    f = tf.constant([2.0, -3.0])
    y = tf.constant([1.0, -1.0])
    # 2*max(0, 1-2) - 2 = -2 ; 2*max(0, 1-3) - 3 = -3 -> mean -2.5
    assert float(loss(y, f)) == pytest.approx(-2.5)


@pytest.mark.parametrize("kwargs", [{"margin": 0.0}, {"margin": -1}, {"lam": 0.0}])
def test_hkr_rejects_non_positive_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="must be > 0"):
        OneClassHKR(**kwargs)


def test_hkr_config_round_trip_through_keras_registry():
    loss = OneClassHKR(margin=0.3, lam=7.0)
    restored = tf.keras.losses.deserialize(tf.keras.losses.serialize(loss))
    assert isinstance(restored, OneClassHKR)
    assert (restored.margin, restored.lam) == (0.3, 7.0)
