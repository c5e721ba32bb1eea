"""Tests of kocc.diagnostics: gradient norms, local and pairwise Lipschitz."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model

from kocc.architectures import lipschitz_mlp
from kocc.diagnostics import (
    empirical_lipschitz,
    gradient_norm_stats,
    gradient_norms,
    local_lipschitz,
)
from kocc.models import OCSDF
from kocc.sampling import Box


def half_squared_norm(x):
    """f(x) = ||x||^2 / 2 over all features: grad f(x) = x."""
    axes = list(range(1, len(x.shape)))
    return 0.5 * tf.reduce_sum(x * x, axis=axes)


def test_gradient_norms_of_linear_model_equal_weight_norm():
    model = linear_model([3.0, -4.0], bias=1.0)
    x = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_allclose(gradient_norms(model, x), 5.0, rtol=1e-6)
    assert local_lipschitz(model, x) == pytest.approx(5.0, rel=1e-6)


def test_gradient_norms_per_sample_across_batches_and_image_shapes():
    x = np.random.default_rng(1).normal(size=(37, 4, 4, 1)).astype(np.float32)
    norms = gradient_norms(half_squared_norm, x, batch_size=8)
    np.testing.assert_allclose(norms, np.linalg.norm(x.reshape(37, -1), axis=1), 1e-5)
    assert local_lipschitz(half_squared_norm, x, batch_size=5) == pytest.approx(
        norms.max(), rel=1e-6
    )


def test_gradient_norm_stats_summarise_gradient_norms():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, 0.0]], np.float32)
    stats = gradient_norm_stats(half_squared_norm, x, quantiles=(0.0, 0.5, 1.0))
    norms = np.array([1.0, 2.0, 5.0, 0.0])
    assert stats["mean"] == pytest.approx(norms.mean())
    assert stats["std"] == pytest.approx(norms.std())
    assert stats["min"] == pytest.approx(0.0)
    assert stats["max"] == pytest.approx(5.0)
    assert stats["q0"] == pytest.approx(0.0)
    assert stats["q0.5"] == pytest.approx(1.5)
    assert stats["q1"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"quantiles must be in \[0, 1\]"):
        gradient_norm_stats(half_squared_norm, x, quantiles=(0.5, 95))


def test_empirical_lipschitz_is_a_tight_lower_bound_for_a_linear_model():
    model = linear_model([0.3, 0.4])
    x = np.random.default_rng(2).normal(size=(300, 2))
    estimate = empirical_lipschitz(model, x, n_pairs=20_000, seed=0)
    assert estimate <= 0.5 * (1 + 1e-5)
    assert estimate >= 0.5 * 0.99  # some pair is nearly aligned with w in 2-D
    assert empirical_lipschitz(model, x, n_pairs=500, seed=1) == empirical_lipschitz(
        model, x, n_pairs=500, seed=1
    )


def test_empirical_lipschitz_skips_coincident_points():
    model = linear_model([1.0, 0.0])
    assert empirical_lipschitz(model, np.zeros((5, 2)), n_pairs=10) == 0.0
    x = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    assert empirical_lipschitz(model, x, n_pairs=200) == pytest.approx(1.0)


def test_untrained_lipschitz_network_and_ocsdf_have_local_lipschitz_at_most_one():
    backbone = lipschitz_mlp(3, (32, 32), activation="fullsort", seed=1)
    x = np.random.default_rng(3).uniform(-2, 2, size=(500, 3)).astype(np.float32)
    assert local_lipschitz(backbone, x) <= 1.01
    model = OCSDF(backbone, Box(-2.0, 2.0, shape=(3,)))
    assert local_lipschitz(model, x) <= 1.01
    assert empirical_lipschitz(model, x, n_pairs=2000) <= 1.01
    # An unconstrained network with large weights is much steeper.
    steep = linear_model([30.0, 0.0, 40.0])
    assert local_lipschitz(steep, x) == pytest.approx(50.0, rel=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gradient_norms(half_squared_norm, np.zeros((0, 2))), "empty"),
        (lambda: gradient_norms(half_squared_norm, [[np.nan, 0.0]]), "NaN"),
        (lambda: gradient_norms(half_squared_norm, np.ones((2, 2)), 0), "batch_size"),
        (
            lambda: gradient_norms(
                lambda x: tf.zeros([tf.shape(x)[0]]), np.ones((2, 2))
            ),
            "do not depend on its input",
        ),
        (lambda: empirical_lipschitz(half_squared_norm, np.ones((1, 2))), "at least 2"),
        (
            lambda: empirical_lipschitz(half_squared_norm, np.ones((3, 2)), n_pairs=0),
            "n_pairs must be an integer >= 1",
        ),
    ],
)
def test_diagnostics_reject_bad_input_with_named_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
