"""GradedBox, the random-intensity pixel prior (kocc.image_prior)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest
import tensorflow as tf

from kocc.image_prior import GradedBox
from kocc.sampling import Box


def test_samples_stay_in_the_box_and_cover_all_intensities():
    domain = GradedBox(-1.0, 1.0, shape=(28, 28, 1))
    z = domain.sample(2000, seed=0).numpy()
    assert z.shape == (2000, 28, 28, 1)
    assert z.min() >= -1.0 and z.max() <= 1.0
    assert bool(tf.reduce_all(domain.contains(z)))
    # per-sample mean pixel = -1 + s (up to u's average): s ~ U(0, 1)
    means = z.reshape(2000, -1).mean(axis=1)
    assert np.quantile(means, 0.05) < -0.85 and np.quantile(means, 0.95) > -0.15
    # the paper's uniform box never comes near the blank image
    uniform = Box(-1.0, 1.0, shape=(28, 28, 1)).sample(2000, seed=0).numpy()
    assert np.abs(uniform.reshape(2000, -1).mean(axis=1)).max() < 0.2


def test_sampling_is_seeded_and_projection_is_the_box_clip():
    domain = GradedBox(-1.0, 1.0, shape=(4,))
    np.testing.assert_array_equal(domain.sample(5, 3), domain.sample(5, 3))
    assert not np.array_equal(domain.sample(5, 3), domain.sample(5, 4))
    z = tf.constant([[-3.0, 0.5, 2.0, 1.0]])
    np.testing.assert_array_equal(domain.project(z), [[-1.0, 0.5, 1.0, 1.0]])


def test_graded_box_serializes_and_validates_like_box():
    domain = GradedBox(-1.0, 1.0, shape=(2, 2, 1))
    config = tf.keras.utils.serialize_keras_object(domain)
    restored = tf.keras.utils.deserialize_keras_object(config)
    assert isinstance(restored, GradedBox) and restored.shape == (2, 2, 1)
    np.testing.assert_array_equal(restored.sample(3, 1), domain.sample(3, 1))
    with pytest.raises(ValueError, match="high > low"):
        GradedBox(1.0, -1.0)
