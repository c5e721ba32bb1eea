"""IOCN and its FLOW baseline (kocc.baselines.iocn, Schmier et al.)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from kocc.baselines import IOCN, FlowBaseline
from kocc.baselines.iocn import (
    AffineCoupling,
    InvertibleNetwork,
    StopOnInverseError,
    block_permutation,
    cube_signed_distance,
)
from kocc.datasets.toys import make_toy


def _two_blobs_split():
    """Training blobs, held-out blob points, and uniform points far from the data."""
    x, scaler = make_toy("two_blobs", 1024, seed=0)
    x_test, _ = make_toy("two_blobs", 512, seed=5)
    x_test = scaler.transform(scaler.inverse_transform(x_test))
    far = np.random.default_rng(1).uniform(-3, 3, (3000, 2)).astype(np.float32)
    far = far[cdist(far, x).min(axis=1) > 0.5]
    return x, x_test, far


@pytest.fixture(scope="module")
def trained_iocn():
    x, x_test, far = _two_blobs_split()
    # Adam at 1e-3 oscillates (the inlier region grows and shrinks), 3e-4
    # converges; seeds 0-4 gave AUROC 0.953-0.978 here: docs/competitors.md
    model = IOCN(2, num_blocks=8, hidden_units=64, seed=0)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-4))
    history = model.fit(x, batch_size=128, epochs=120, verbose=0)
    return model, history, x, x_test, far


def test_inverse_is_exact_both_ways_after_training(trained_iocn):
    model, _, x, _, _ = trained_iocn
    z = np.random.default_rng(2).uniform(-1, 1, (256, 2)).astype(np.float32)
    np.testing.assert_allclose(
        model.transform(model.inverse_transform(z)), z, atol=1e-4
    )
    np.testing.assert_allclose(
        model.inverse_transform(model.transform(x)), x, atol=1e-4
    )


def _perturbed_network(dim, num_blocks, hidden_units, seed, rng, scale):
    """An :class:`InvertibleNetwork` whose weights are moved by ``scale`` times a
    normal draw: random (non-zero) scale-and-shift layers, so a test of it is not
    a test of the identity."""
    inn = InvertibleNetwork(
        dim, num_blocks=num_blocks, hidden_units=hidden_units, seed=seed
    )
    inn.build((None, dim))
    inn.set_weights([w + scale * rng.normal(size=w.shape) for w in inn.get_weights()])
    return inn


def test_inverse_is_exact_in_high_dimension_with_random_weights():
    rng = np.random.default_rng(0)
    inn = _perturbed_network(33, 6, 32, seed=3, rng=rng, scale=0.05)
    x = tf.constant(rng.normal(size=(128, 33)), tf.float32)
    y = inn(x)
    assert float(tf.reduce_max(tf.abs(y - x))) > 0.1
    np.testing.assert_allclose(inn.inverse(y).numpy(), x.numpy(), atol=1e-4)


def test_log_determinant_matches_the_jacobian():
    rng = np.random.default_rng(1)
    inn = _perturbed_network(4, 3, 8, seed=1, rng=rng, scale=0.2)
    x = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, log_det = inn.forward(x)
    jac = tape.batch_jacobian(y, x).numpy()
    np.testing.assert_allclose(
        log_det.numpy(), np.linalg.slogdet(jac.astype(np.float64))[1], atol=1e-4
    )


def test_permutations_are_seeded_and_never_the_identity():
    assert list(block_permutation(2, 0)) == [1, 0]
    np.testing.assert_array_equal(block_permutation(10, 4), block_permutation(10, 4))
    for seed in range(20):
        assert not np.array_equal(block_permutation(3, seed), np.arange(3))


def test_cube_signed_distance_is_eq_2_to_4():
    z = tf.constant([[0.0, 0.0], [0.5, -0.2], [1.5, 0.0], [2.0, -3.0]])
    np.testing.assert_allclose(
        cube_signed_distance(z).numpy(), [-1.0, -0.5, 0.5, 3.0], atol=1e-6
    )


def test_iocn_maps_data_into_the_cube_and_scores_two_blobs(trained_iocn):
    model, history, _, x_test, far = trained_iocn
    assert history.history["inside"][-1] > 0.8
    s_in, s_far = model.score_samples(x_test), model.score_samples(far)
    assert np.mean(s_in > 0) > 0.75  # held-out normals inside the learned support
    assert np.mean(s_far < 0) > 0.8  # negative outside the support
    auroc = roc_auc_score(
        np.r_[np.ones(len(s_in)), np.zeros(len(s_far))], np.r_[s_in, s_far]
    )
    assert auroc >= 0.95


def test_training_is_reproducible_with_a_seed():
    x, _, _ = _two_blobs_split()
    scores = []
    for _ in range(2):
        model = IOCN(2, num_blocks=2, hidden_units=16, seed=7)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        model.fit(x, batch_size=256, epochs=2, verbose=0, shuffle=False)
        scores.append(model.score_samples(x[:50]))
    np.testing.assert_array_equal(scores[0], scores[1])


def test_flow_trains_and_its_likelihood_orders_in_and_out_points():
    x, x_test, far = _two_blobs_split()
    # fit's shuffling draws from TensorFlow's global seed: fixed here, so the
    # result does not depend on the tests that ran before
    tf.keras.utils.set_random_seed(0)
    model = FlowBaseline(2, num_blocks=6, hidden_units=64, seed=0)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    history = model.fit(x, batch_size=128, epochs=30, verbose=0)
    losses = history.history["loss"]
    # mean NLL 1.421 after the first epoch; after the 30th 1.170-1.182 for
    # shuffle seeds 0, 1, 3, 4, 5 and 1.322 for seed 2 (a plateau, with
    # AUROC 0.995 and mass 1.000 there): the unseeded test failed once in CI
    # on that plateau against a drop of 0.1
    assert losses[-1] < losses[0] - 0.05
    s_in, s_far = model.score_samples(x_test), model.score_samples(far)
    auroc = roc_auc_score(
        np.r_[np.ones(len(s_in)), np.zeros(len(s_far))], np.r_[s_in, s_far]
    )
    assert auroc >= 0.95
    # a density: exp(log p) integrates to about 1 over a grid covering the data
    grid = np.stack(np.meshgrid(*[np.linspace(-5, 5, 201)] * 2), -1).reshape(-1, 2)
    mass = np.exp(model.score_samples(grid)).sum() * (10 / 200) ** 2
    assert 0.8 < mass < 1.1


@pytest.mark.parametrize("cls", [IOCN, FlowBaseline])
def test_save_and_reload_give_the_same_scores(cls, tmp_path):
    x, _, _ = _two_blobs_split()
    model = cls(2, num_blocks=3, hidden_units=16, seed=2)
    model.compile(optimizer="adam")
    model.fit(x, batch_size=256, epochs=1, verbose=0)
    path = tmp_path / "inn.keras"
    model.save(path)
    restored = tf.keras.models.load_model(path)
    assert isinstance(restored, cls)
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored.score_samples(x), model.score_samples(x))
    clone = cls.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.score_samples(x), model.score_samples(x))


def test_coupling_config_round_trip():
    layer = AffineCoupling(5, hidden_units=7, clamp=1.5, seed=3)
    clone = AffineCoupling.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("cls", [IOCN, FlowBaseline])
def test_bad_input_gives_named_errors(cls):
    model = cls(3, num_blocks=1, hidden_units=4)
    model.compile(optimizer="adam")
    bad = np.zeros((4, 3), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, verbose=0)
    with pytest.raises(ValueError, match="features"):
        model.fit(np.zeros((4, 2), np.float32), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.score_samples(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="rank"):
        model.score_samples(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="normal samples only"):
        model.fit(np.zeros((4, 3), np.float32), np.ones(4), verbose=0)


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="input_dim"):
        IOCN(1)
    with pytest.raises(ValueError, match="num_blocks"):
        IOCN(2, num_blocks=0)
    with pytest.raises(ValueError, match="clamp"):
        IOCN(2, clamp=0.0)
    with pytest.raises(ValueError, match="hidden_units"):
        FlowBaseline(2, hidden_units=0)


def test_inverse_error_guard_restores_the_last_good_weights_and_stops():
    model = IOCN(2, num_blocks=1, hidden_units=4, seed=0)
    guard = StopOnInverseError(1e-2)
    guard.set_model(model)
    good = [w.copy() for w in model.get_weights()]
    guard.on_epoch_end(0, {"inverse_error": 1e-6})
    model.set_weights([w + 1.0 for w in good])
    guard.on_epoch_end(1, {"inverse_error": 3.0})
    assert model.stop_training and guard.stopped_epoch == 1
    for restored, expected in zip(model.get_weights(), good, strict=True):
        np.testing.assert_array_equal(restored, expected)
    with pytest.raises(ValueError, match="threshold"):
        StopOnInverseError(0.0)
    with pytest.raises(ValueError, match="noise_std"):
        IOCN(2, noise_std=-1.0)
