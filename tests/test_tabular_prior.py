"""Negative priors for tabular data: data box, covering ball, per-feature Gaussian."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.models import OCSDF
from kocc.sampling import Ball, Box
from kocc.tabular_prior import (
    GaussianPrior,
    data_ball,
    data_box,
    prior_from_statistics,
    tabular_prior,
)


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
    kinds = r"one of \('box', 'ball', 'gaussian'\), got 'laplace'"
    with pytest.raises(ValueError, match=kinds):
        tabular_prior(np.zeros((2, 2)), kind="laplace")


def test_data_ball_is_centered_on_the_mean_and_covers_every_row():
    x = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.0], [2.0, 1.0]], np.float32)
    ball = tabular_prior(x, "ball", pad=0.5)
    assert isinstance(ball, Ball)
    np.testing.assert_allclose(ball.center, [2.0, 1.0])
    # the farthest rows from (2, 1): (0, 0) and (4, 0) at sqrt(5)
    assert ball.radius == pytest.approx(np.sqrt(5.0) + 0.5, rel=1e-6)
    assert data_ball(x).radius == pytest.approx(np.sqrt(5.0), rel=1e-6)
    z = ball.sample(4000, seed=2).numpy()
    distance = np.linalg.norm(z - ball.center, axis=1)
    assert distance.max() <= ball.radius * (1 + 1e-6)
    # uniform in a disc: the share within half the radius is a quarter
    assert np.mean(distance < ball.radius / 2) == pytest.approx(0.25, abs=0.03)
    projected = ball.project(tf.constant([[102.0, 1.0]])).numpy()
    np.testing.assert_allclose(projected, [[2.0 + ball.radius, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("x", "pad", "message"),
    [
        (np.zeros((0, 2)), 0.0, "shape"),
        (np.array([[np.inf, 0.0]]), 0.0, "non-finite"),
        (np.ones((3, 2)), -0.5, "pad must be"),
        (np.ones((3, 2)), float("nan"), "pad must be"),
        (np.ones((3, 2)), 0.0, "radius 0"),
    ],
)
def test_data_ball_rejects_bad_input(x, pad, message):
    with pytest.raises(ValueError, match=message):
        data_ball(x, pad=pad)


def test_streamed_ball_needs_the_largest_row_norm():
    class Statistics:
        mean = np.array([5.0, -1.0, 0.0])
        scale = np.ones(3)

    ball = prior_from_statistics(Statistics(), "ball", pad=1.0, max_norm=2.5)
    assert isinstance(ball, Ball) and ball.radius == 3.5
    np.testing.assert_array_equal(ball.center, np.zeros(3))
    for bad in (None, -1.0, float("nan")):
        with pytest.raises(ValueError, match="needs max_norm"):
            prior_from_statistics(Statistics(), "ball", max_norm=bad)


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
