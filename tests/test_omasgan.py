"""OMASGAN (kocc.baselines.omasgan, Dionelis et al.)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from kocc.baselines import OMASGAN
from kocc.baselines.omasgan import TOY_SETTINGS, dispersion, min_distance
from kocc.datasets.toys import make_toy


@pytest.fixture(scope="module")
def trained():
    x, _ = make_toy("two_moons", 1024, seed=0)
    model = OMASGAN(2, seed=0, **TOY_SETTINGS)
    model.compile()
    histories = model.fit(x, batch_size=128, verbose=0)
    return model, histories, x


def _mean_distance_to(points, data):
    return float(cdist(points, data).min(axis=1).mean())


def test_boundary_samples_lie_between_the_gan_samples_and_uniform_noise(trained):
    model, _, x = trained
    low, high = x.min(axis=0) - 1.0, x.max(axis=0) + 1.0
    noise = np.random.default_rng(0).uniform(low, high, (1000, 2))
    d_g = _mean_distance_to(model.sample_normal(1000, seed=1), x)
    d_b = _mean_distance_to(model.sample_boundary(1000, seed=1), x)
    d_u = _mean_distance_to(noise, x)
    assert 1.5 * d_g < d_b < 0.85 * d_u


def test_all_tasks_ran_and_logged_their_terms(trained):
    _, histories, _ = trained
    assert list(histories) == ["task1", "task2", "task3", "task4"]
    task2 = histories["task2"].history
    assert task2["d"][-1] > 0 and task2["s"][-1] > 0
    # Task 2 spreads B: the dispersion term falls from its start at G's weights
    assert task2["s"][-1] < task2["s"][0]


def test_anomaly_discriminator_separates_the_moons_from_far_points(trained):
    model, _, x = trained
    x_test, _ = make_toy("two_moons", 512, seed=5)
    far = np.random.default_rng(1).uniform(-3, 3, (3000, 2)).astype(np.float32)
    far = far[cdist(far, x).min(axis=1) > 0.5]
    s_in, s_far = model.score_samples(x_test), model.score_samples(far)
    auroc = roc_auc_score(
        np.r_[np.ones(len(s_in)), np.zeros(len(s_far))], np.r_[s_in, s_far]
    )
    assert auroc > 0.9


def test_distance_and_dispersion_terms_match_eq_4_and_5():
    b = tf.constant([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    g = tf.constant([[0.0, 1.0], [3.0, 0.0]])
    np.testing.assert_allclose(min_distance(b, g).numpy(), [1.0, 4.0, 8.544004], 1e-4)
    z = tf.constant([[0.0], [1.0], [2.0]])
    # pairs (i, j): |z_i - z_j| / |b_i - b_j| = 1/5 (adjacent), 2/10
    np.testing.assert_allclose(float(dispersion(b, z)), 0.2, rtol=1e-5)


def test_training_is_reproducible_with_a_seed():
    x, _ = make_toy("two_blobs", 256, seed=0)
    settings = dict(TOY_SETTINGS, task_epochs=(2, 1, 1), num_reference=64)
    scores = []
    for _ in range(2):
        model = OMASGAN(2, seed=4, **settings)
        model.compile()
        model.fit(x, batch_size=64, verbose=0, shuffle=False)
        scores.append(model.score_samples(x[:40]))
    np.testing.assert_array_equal(scores[0], scores[1])


def test_save_and_reload_give_the_same_scores_and_samples(tmp_path):
    x, _ = make_toy("two_blobs", 256, seed=0)
    model = OMASGAN(2, seed=1, **dict(TOY_SETTINGS, task_epochs=(1, 1, 1)))
    model.compile()
    model.fit(x, batch_size=64, verbose=0)
    path = tmp_path / "omasgan.keras"
    model.save(path)
    restored = tf.keras.models.load_model(path)
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored.score_samples(x), model.score_samples(x))
    np.testing.assert_allclose(
        restored.sample_boundary(16, seed=3), model.sample_boundary(16, seed=3)
    )
    assert int(restored.stage.numpy()) == 4


def test_bad_input_gives_named_errors():
    model = OMASGAN(3, task_epochs=(1, 1, 1), num_reference=8)
    model.compile()
    bad = np.zeros((4, 3), np.float32)
    bad[2, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        model.fit(bad, verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        model.score_samples(np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="features"):
        model.fit(np.zeros((4, 5), np.float32), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros((0, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match="normal samples only"):
        model.fit(np.zeros((4, 3), np.float32), np.ones(4), verbose=0)
    with pytest.raises(ValueError, match="task must be"):
        model.fit(np.zeros((4, 3), np.float32), task=5, verbose=0)
    with pytest.raises(ValueError, match="optimizer"):
        model.compile(optimizer="adam")


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="divergence"):
        OMASGAN(2, divergence="wasserstein")
    with pytest.raises(ValueError, match="delta"):
        OMASGAN(2, delta=1.5)
    with pytest.raises(ValueError, match="task_epochs"):
        OMASGAN(2, task_epochs=(1, 2))
    with pytest.raises(ValueError, match="mu"):
        OMASGAN(2, mu=-1.0)
