"""Deep SVDD baseline (kocc.baselines.DeepSVDD, Ruff et al. 2018)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from kocc.baselines import DeepSVDD
from kocc.baselines.deep_svdd import lenet_decoder


def _images(n, pattern, seed):
    """Noisy copies of one of two 28x28 patterns (a bar or a ring)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    if pattern == "bar":
        base = np.where(np.abs(xx - 14) < 3, 1.0, -1.0)
    else:
        base = np.where(np.abs(np.hypot(xx - 14, yy - 14) - 8) < 2, 1.0, -1.0)
    noisy = base + rng.normal(0, 0.3, (n, 28, 28))
    return np.clip(noisy, -1, 1)[..., None].astype(np.float32)


def test_center_coordinates_near_zero_are_pushed_to_plus_minus_eps():
    model = DeepSVDD((28, 28, 1), center_eps=0.1)
    x = _images(16, "bar", 0)
    center = model.set_center(x)
    assert np.all(np.abs(center) >= 0.1 - 1e-7)
    code = model.encoder.predict(x, verbose=0).mean(axis=0)
    far = np.abs(code) >= 0.1
    np.testing.assert_allclose(center[far], code[far], rtol=1e-5)
    np.testing.assert_array_equal(
        np.sign(center[~far & (code != 0)]), np.sign(code[~far & (code != 0)])
    )


def test_encoder_has_no_bias_terms():
    for architecture, shape in (("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))):
        model = DeepSVDD(shape, architecture=architecture)
        for layer in model.encoder.layers:
            assert not getattr(layer, "use_bias", False), layer.name
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                assert not layer.center and not layer.scale
        assert model.encoder.output_shape[-1] == (
            32 if architecture == "mnist" else 128
        )


def test_training_lowers_the_objective_and_separates_two_patterns():
    tf.keras.utils.set_random_seed(0)
    x_normal = _images(256, "bar", 1)
    model = DeepSVDD((28, 28, 1), seed=0)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    history = model.fit(x_normal, batch_size=64, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    scores_normal = model.score_samples(_images(64, "bar", 2))
    scores_anomalous = model.score_samples(_images(64, "ring", 3))
    assert np.all(scores_normal <= 0)  # -||phi(x) - c||^2
    auroc = roc_auc_score(
        np.r_[np.ones(64), np.zeros(64)], np.r_[scores_normal, scores_anomalous]
    )
    assert auroc > 0.9


def test_pretraining_resets_the_center_and_decoder_mirrors_the_shape():
    model = DeepSVDD((28, 28, 1), seed=0)
    x = _images(32, "bar", 4)
    model.set_center(x)
    model.pretrain(x, epochs=1, batch_size=16)
    assert not bool(model.center_is_set.numpy())
    decoder = lenet_decoder((28, 28, 1))
    assert decoder.output_shape == (None, 28, 28, 1)


def test_serialization_keeps_the_center_and_the_scores(tmp_path):
    model = DeepSVDD((28, 28, 1), seed=3)
    model.compile(optimizer="adam")
    x = _images(32, "bar", 5)
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "svdd.keras"
    model.save(path)
    restored = tf.keras.models.load_model(path)
    np.testing.assert_allclose(restored.score_samples(x), model.score_samples(x))
    assert restored.get_config() == model.get_config()


def test_errors_name_the_problem():
    model = DeepSVDD((28, 28, 1))
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score_samples(_images(2, "bar", 0))
    with pytest.raises(ValueError, match="normal images only"):
        model.fit(_images(2, "bar", 0), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        model.fit(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="unknown architecture"):
        DeepSVDD((28, 28, 1), architecture="resnet")
    with pytest.raises(ValueError, match="divisible"):
        DeepSVDD((30, 30, 1), architecture="cifar10")
    with pytest.raises(ValueError, match="epochs"):
        model.pretrain(_images(2, "bar", 0), epochs=0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1.0"):
        DeepSVDD((28, 28, 1), weight_decay=-1)
    with pytest.raises(ValueError, match="center_eps must be >= 0, got nan"):
        DeepSVDD((28, 28, 1), center_eps=float("nan"))
