"""Tests of kocc.baselines: the unconstrained BCE network."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kocc.baselines import bce_network, fit_bce_network
from kocc.metrics import certified_auroc, model_scores
from kocc.sampling import Ball, Box


def _disk(n, seed):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = 0.5 * np.sqrt(rng.uniform(0.0, 1.0, n))
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)].astype(np.float32)


def test_bce_network_is_a_seeded_relu_mlp_with_one_logit():
    model = bce_network(3, widths=(8, 4), seed=2)
    assert model.output_shape == (None, 1)
    dense = [
        layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)
    ]
    assert [layer.units for layer in dense] == [8, 4, 1]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "linear"]
    same = bce_network(3, widths=(8, 4), seed=2)
    other = bce_network(3, widths=(8, 4), seed=3)
    for a, b in zip(model.weights, same.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(model.weights[0].numpy(), other.weights[0].numpy())


def test_fit_bce_network_separates_data_from_uniform_negatives_reproducibly():
    x = _disk(256, 0)
    domain = Box(-2.0, 2.0, shape=(2,))
    runs = []
    for _ in range(2):
        model = bce_network(2, widths=(32, 32), seed=0)
        history = fit_bce_network(model, x, domain, epochs=15, batch_size=64, seed=4)
        runs.append((model, history))
    (model, history), (_, history_again) = runs
    assert len(history["loss"]) == 15
    np.testing.assert_allclose(history["loss"], history_again["loss"], rtol=1e-5)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    anomalous = np.asarray(Ball(2.0, shape=(2,)).sample(400, seed=1))
    anomalous = anomalous[np.linalg.norm(anomalous, axis=1) > 0.8]
    auroc = certified_auroc(
        model_scores(model, _disk(200, 1)), model_scores(model, anomalous), 0
    )
    assert auroc > 0.95


def test_fit_bce_network_with_newton_raphson_negatives_trains():
    x = _disk(128, 2)
    model = bce_network(2, widths=(16, 16), seed=1)
    history = fit_bce_network(
        model, x, Box(-2.0, 2.0, shape=(2,)), epochs=3, nr_steps=2, negatives_ratio=2.0
    )
    assert np.all(np.isfinite(history["loss"]))
    assert len(history["loss"]) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bce_network(0), "input_dim must be an integer > 0"),
        (lambda: bce_network(2, widths=(4, 0)), "widths must all be > 0"),
        (
            lambda: fit_bce_network(bce_network(2), _disk(8, 0), "box"),
            "domain must be a kocc.sampling Domain",
        ),
        (
            lambda: fit_bce_network(bce_network(2), _disk(8, 0), Box(), epochs=0),
            "epochs must be an integer >= 1",
        ),
        (
            lambda: fit_bce_network(bce_network(2), _disk(8, 0), Box(), nr_steps=-1),
            "nr_steps must be an integer >= 0",
        ),
        (
            lambda: fit_bce_network(
                bce_network(2), _disk(8, 0), Box(), negatives_ratio=0.0
            ),
            "negatives_ratio must be > 0",
        ),
        (
            lambda: fit_bce_network(bce_network(3), _disk(8, 0), Box()),
            "has 2 features but the model was built for 3",
        ),
    ],
)
def test_bce_baseline_rejects_bad_arguments_with_named_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_one_class_bce_is_keras_bce_on_zero_one_labels_and_serializes():
    from kocc.baselines import OneClassBCE

    logits = tf.constant([2.0, -1.0, 0.5, -3.0])
    y = tf.constant([1.0, -1.0, -1.0, 1.0])
    keras_bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    expected = keras_bce(
        tf.reshape((1.0 + y) / 2.0, [-1, 1]), tf.reshape(logits, [-1, 1])
    )
    assert float(OneClassBCE()(y, logits)) == pytest.approx(float(expected), rel=1e-6)
    loss = OneClassBCE(level_set=0.5)
    restored = tf.keras.losses.deserialize(tf.keras.losses.serialize(loss))
    assert isinstance(restored, OneClassBCE) and restored.negative_level == 0.5
    with pytest.raises(ValueError, match="level_set must be finite"):
        OneClassBCE(level_set=float("nan"))


def test_fit_bce_network_trains_through_ocsdf_with_negatives_redrawn_every_step():
    from kocc.baselines import OneClassBCE
    from kocc.models import OCSDF

    x = _disk(64, 5)
    model = bce_network(2, widths=(8,), seed=0)
    history = fit_bce_network(model, x, Box(-2.0, 2.0, shape=(2,)), epochs=1)
    assert {"loss", "f_pos", "f_neg", "grad_norm_neg"} <= set(history)
    # the same train_step: negatives of consecutive steps differ (seeded by step)
    trainer = OCSDF(model, Box(-2.0, 2.0, shape=(2,)), loss=OneClassBCE(), nr_steps=0)
    first = trainer.sample_negatives(16, tf.constant([0, 0], tf.int64))
    second = trainer.sample_negatives(16, tf.constant([0, 1], tf.int64))
    assert not np.allclose(first.numpy(), second.numpy())
