"""Image synthesis by Newton-Raphson from noise (kocc.generation)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

from kocc.architectures import lipschitz_vgg
from kocc.generation import (
    LOW_REACH,
    image_grid,
    mean_score,
    noise_starts,
    save_image_grid,
    synthesis_reach,
    synthesize,
)
from kocc.models import OCSDF
from kocc.sampling import Box, Domain


@pytest.fixture(scope="module")
def tiny_ocsdf():
    tf.keras.utils.set_random_seed(0)
    backbone = lipschitz_vgg((8, 8, 1), widths=((4,), (4,)), seed=0)
    model = OCSDF(backbone, Box(-1.0, 1.0, shape=(8, 8, 1)), margin=0.1, nr_steps=2)
    model.compile(optimizer=tf.keras.optimizers.RMSprop(1e-3))
    x = np.clip(np.random.default_rng(0).normal(-0.5, 0.2, (64, 8, 8, 1)), -1, 1)
    model.fit(x.astype(np.float32), batch_size=32, epochs=2, verbose=0)
    return model, x.astype(np.float32)


class _NoProjection(Domain):
    """Uniform noise in [-1, 1]^(4x4x1), projection = identity."""

    shape = (4, 4, 1)

    def _sample(self, n, seed, shape):
        return tf.random.stateless_uniform((n, *shape), seed, minval=-1.0)

    def project(self, z):
        return z


def _linear_model(weights):
    inputs = tf.keras.layers.Input((4, 4, 1))
    flat = tf.keras.layers.Flatten()(inputs)
    dense = tf.keras.layers.Dense(1, use_bias=True)
    model = tf.keras.Model(inputs, dense(flat))
    dense.set_weights([weights.reshape(16, 1), np.array([0.3], np.float32)])
    return model


def test_synthesized_images_are_in_the_domain_and_reproducible(tiny_ocsdf):
    model, x = tiny_ocsdf
    images = synthesize(model, 6, steps=8, x_reference=x, seed=3)
    assert images.shape == (6, 8, 8, 1) and images.dtype == np.float32
    assert np.all(images >= -1.0) and np.all(images <= 1.0)
    # equal up to float noise: every predict re-runs deel-lip's power iteration
    np.testing.assert_allclose(
        images, synthesize(model, 6, steps=8, x_reference=x, seed=3), atol=1e-5
    )
    assert not np.array_equal(
        images, synthesize(model, 6, steps=8, x_reference=x, seed=4)
    )


def test_default_level_is_the_mean_training_score(tiny_ocsdf):
    model, x = tiny_ocsdf
    level = float(np.mean(model.score_samples(x)))
    assert mean_score(model, x) == pytest.approx(level)
    np.testing.assert_allclose(
        synthesize(model, 4, steps=4, x_reference=x, seed=1),
        synthesize(model, 4, steps=4, level_set=level, seed=1),
        atol=1e-6,
    )


def test_eta_one_contracts_the_gap_to_the_level_set_like_newton():
    """For an affine f and no active projection, each step with eta = 1 removes
    1/T of the gap: after T steps it is (1 - 1/T)^T of the initial one."""
    weights = np.random.default_rng(0).normal(size=16).astype(np.float32)
    model = _linear_model(weights)
    domain = _NoProjection()
    steps, level = 8, 0.5
    z0 = domain.sample(5, 2, shape=(4, 4, 1)).numpy()
    z = synthesize(model, 5, steps=steps, level_set=level, domain=domain, seed=2)
    gap0 = model(z0).numpy()[:, 0] - level
    gap = model(z).numpy()[:, 0] - level
    np.testing.assert_allclose(gap, gap0 * (1 - 1 / steps) ** steps, rtol=1e-3)


def test_synthesize_rejects_missing_reference_domain_and_bad_counts(tiny_ocsdf):
    model, x = tiny_ocsdf
    with pytest.raises(ValueError, match="x_reference"):
        synthesize(model, 2)
    with pytest.raises(ValueError, match="Domain"):
        synthesize(_linear_model(np.ones(16, np.float32)), 2, level_set=0.0)
    with pytest.raises(ValueError, match="n must be"):
        synthesize(model, 0, x_reference=x)
    with pytest.raises(ValueError, match="steps must be"):
        synthesize(model, 2, steps=0, x_reference=x)
    with pytest.raises(ValueError, match="finite"):
        synthesize(model, 2, level_set=float("nan"))


def test_noise_starts_are_where_synthesize_starts_from():
    """For an affine f every step moves along its weight vector w, so the
    synthesized z minus the start must be parallel to w, sample by sample."""
    weights = np.random.default_rng(1).normal(size=16).astype(np.float32)
    model = _linear_model(weights)
    domain = _NoProjection()
    z0 = noise_starts(model, 5, domain=domain, seed=7)
    np.testing.assert_array_equal(z0, domain.sample(5, 7, shape=(4, 4, 1)).numpy())
    z = synthesize(model, 5, steps=4, level_set=5.0, domain=domain, seed=7)
    moves = (z - z0).reshape(5, 16)
    unit = weights / np.linalg.norm(weights)
    residual = moves - np.outer(moves @ unit, unit)
    assert np.linalg.norm(moves, axis=1).min() > 0.1
    np.testing.assert_allclose(residual, 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="n must be"):
        noise_starts(model, 0, domain=domain)


def test_synthesis_reach_measures_the_way_from_noise_to_the_data():
    reference = np.zeros((3, 4, 4, 1), np.float32)
    reference[1] = 5.0  # farther from the starts than reference[0]
    starts = np.ones((2, 4, 4, 1), np.float32)  # distance 4 to reference[0]
    halfway = 0.5 * starts
    reach = synthesis_reach(starts, halfway, reference)
    assert reach.moved == pytest.approx(2.0)
    assert reach.start_distance == pytest.approx(4.0)
    assert reach.end_distance == pytest.approx(2.0)
    assert reach.closed == pytest.approx(0.5) and not reach.low
    assert reach.to_dict()["closed"] == pytest.approx(0.5)
    stuck = synthesis_reach(starts, starts + 0.1 * (halfway - starts), reference)
    assert stuck.moved == pytest.approx(0.2)
    assert stuck.closed == pytest.approx(0.05) and stuck.closed < LOW_REACH
    assert stuck.low


def test_synthesis_reach_rejects_mismatched_or_non_finite_batches():
    reference = np.zeros((3, 4, 4, 1), np.float32)
    starts = np.ones((2, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="same number"):
        synthesis_reach(starts, starts[:1], reference)
    with pytest.raises(ValueError, match="samples"):
        synthesis_reach(starts, np.ones((2, 16), np.float32), reference)
    with pytest.raises(ValueError, match="x_reference"):
        synthesis_reach(starts, starts, np.zeros((3, 16), np.float32))
    bad = starts.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        synthesis_reach(starts, bad, reference)


def test_image_grid_tiles_row_by_row_and_saves_a_png(tmp_path):
    images = np.stack([np.full((2, 3, 1), v, np.float32) for v in (-1.0, 0.0, 1.0)])
    grid = image_grid(images, ncols=2, padding=1)
    assert grid.shape == (2 * 3 - 1, 2 * 4 - 1)
    assert grid[0, 0] == 0 and grid[0, 4] == 128 and grid[3, 0] == 255
    assert grid[0, 3] == 0  # padding column
    path = save_image_grid(images, tmp_path / "grid.png", ncols=2)
    picture = imread(path)
    assert picture.shape[:2] == grid.shape
    rgb = image_grid(np.zeros((2, 4, 4, 3), np.float32))
    assert rgb.shape == (4, 9, 3)
    with pytest.raises(ValueError, match="non-empty batch"):
        image_grid(np.zeros((2, 4, 4), np.float32))
