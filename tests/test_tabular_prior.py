"""Negative priors for tabular data: data box and per-feature Gaussian."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.models import OCSDF
from kocc.sampling import Box
from kocc.tabular_prior import GaussianPrior, data_box, tabular_prior


def test_data_box_bounds_are_min_minus_pad_and_max_plus_pad():
    x = np.array([[0.0, -2.0], [1.0, 3.0], [0.5, 0.0]], np.float32)
    box = data_box(x, pad=0.5)
    assert isinstance(box, Box)
    np.testing.assert_allclose(box.low, [-0.5, -2.5])
    np.testing.assert_allclose(box.high, [1.5, 3.5])
    z = box.sample(1000, seed=1).numpy()
    assert z.shape == (1000, 2)
    assert np.all(z >= box.low) and np.all(z <= box.high)


def test_data_box_constant_feature_needs_positive_pad():
    x = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    assert data_box(x, pad=0.1).low[0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="flat on feature"):
        data_box(x, pad=0.0)


@pytest.mark.parametrize(
    ("x", "pad", "message"),
    [
        (np.zeros((0, 2)), 1.0, "shape"),
        (np.array([[np.nan, 0.0]]), 1.0, "non-finite"),
        (np.zeros((2, 2)), -1.0, "pad must be"),
    ],
)
def test_data_box_rejects_bad_input(x, pad, message):
    with pytest.raises(ValueError, match=message):
        data_box(x, pad=pad)


def test_gaussian_prior_matches_fitted_moments_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -3.0], [0.5, 2.0], size=(4000, 2)).astype(np.float32)
    prior = GaussianPrior.from_data(x, scale=2.0)
    z = prior.sample(40000, seed=3).numpy()
    np.testing.assert_allclose(z.mean(axis=0), x.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), 2.0 * x.std(axis=0), rtol=0.03)
    np.testing.assert_array_equal(z, prior.sample(40000, seed=3).numpy())
    assert not np.array_equal(z, prior.sample(40000, seed=4).numpy())


def test_gaussian_prior_projection_is_identity():
    prior = GaussianPrior([0.0, 0.0], [1.0, 1.0])
    z = tf.constant([[100.0, -100.0]])
    np.testing.assert_array_equal(prior.project(z).numpy(), z.numpy())


def test_gaussian_prior_round_trips_through_keras_serialization():
    prior = GaussianPrior([0.5, 1.0], [2.0, 3.0], scale=1.5)
    restored = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(prior)
    )
    assert isinstance(restored, GaussianPrior)
    np.testing.assert_array_equal(restored.mean, prior.mean)
    np.testing.assert_array_equal(restored.std, prior.std)
    assert restored.scale == 1.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": [0.0], "std": [1.0, 1.0]}, "same number"),
        ({"mean": [0.0], "std": [0.0]}, "std must be > 0"),
        ({"mean": [np.nan], "std": [1.0]}, "finite"),
        ({"mean": [0.0], "std": [1.0], "scale": 0.0}, "scale must be"),
    ],
)
def test_gaussian_prior_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianPrior(**kwargs)


def test_tabular_prior_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'box' or 'gaussian'"):
        tabular_prior(np.zeros((2, 2)), kind="laplace")


@pytest.mark.slow
def test_gaussian_prior_serves_as_ocsdf_domain_in_training():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    model = OCSDF(
        lipschitz_mlp(3, widths=(8,), seed=0),
        GaussianPrior.from_data(x, scale=2.0),
        margin=0.05,
        nr_steps=2,
    )
    model.compile(optimizer=tf.keras.optimizers.RMSprop(1e-3))
    history = model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert np.all(np.isfinite(model.score_samples(x)))
