import numpy as np
import pytest
import tensorflow as tf

from kocc.sampling import Ball, Box, newton_raphson, seed_pair


def _affine(w: np.ndarray, b: float):
    """f(z) = <w, z> + b with ||w|| = 1: 1-Lipschitz, affine everywhere."""
    w = tf.constant(w / np.linalg.norm(w), tf.float32)

    def f(z):
        flat = tf.reshape(z, [tf.shape(z)[0], -1])
        return tf.linalg.matvec(flat, tf.reshape(w, [-1])) + b

    return f


def _box_sdf(z):
    """f(z) = 0.5 - ||z||_inf: 1-Lipschitz (l2) and piecewise affine."""
    return 0.5 - tf.reduce_max(tf.abs(z), axis=1)


def test_newton_step_with_eta_one_lands_on_level_set_of_affine_function():
    rng = np.random.default_rng(0)
    f = _affine(rng.normal(size=5), 0.3)
    z0 = rng.normal(size=(256, 5)) * 3
    z = newton_raphson(f, z0, steps=1, level_set=-0.05, eta=1.0)
    np.testing.assert_allclose(f(z).numpy(), -0.05, atol=1e-5)


def test_newton_step_lands_on_level_set_of_piecewise_affine_function():
    rng = np.random.default_rng(1)
    z0 = rng.uniform(-2, 2, size=(4000, 2)).astype(np.float32)
    target = 0.1  # level 0.5 - ||z||_inf = -0.1 <=> ||z||_inf = 0.6
    # keep starts whose segment to the level set stays in one linear piece:
    # the dominant coordinate stays dominant when moved to +-0.6
    dominant = np.abs(z0).max(1)
    other = np.abs(z0).min(1)
    keep = (other < 0.5) & (dominant > 0.0)
    z0 = z0[keep]
    z = newton_raphson(_box_sdf, z0, steps=1, level_set=-target, eta=1.0)
    np.testing.assert_allclose(_box_sdf(z).numpy(), -target, atol=1e-5)


def test_t_steps_shrink_the_residual_by_one_minus_eta_over_t_each_on_images():
    # Algorithm 1 moves by eta/T of the Newton step T times: on an affine f the
    # residual f - level becomes (1 - eta/T)^T times the initial one
    rng = np.random.default_rng(2)
    f = _affine(rng.normal(size=(4 * 4 * 3,)), -0.2)
    z0 = rng.uniform(-1, 1, size=(32, 4, 4, 3)).astype(np.float32)
    z = newton_raphson(f, z0, steps=4, level_set=0.25, eta=1.0)
    assert z.shape == (32, 4, 4, 3)
    expected = (f(z0).numpy() - 0.25) * (1 - 1 / 4) ** 4
    np.testing.assert_allclose(f(z).numpy() - 0.25, expected, atol=1e-5)


def test_zero_steps_leave_points_unchanged():
    z0 = np.random.default_rng(3).normal(size=(10, 3)).astype(np.float32)
    z = newton_raphson(_affine(np.ones(3), 0.0), z0, steps=0, level_set=0.0)
    np.testing.assert_array_equal(z.numpy(), z0)


@pytest.mark.parametrize(
    "domain", [Box(-1.0, 1.0, shape=(3,)), Ball(1.5, shape=(3,))], ids=repr
)
def test_newton_raphson_samples_never_leave_the_domain(domain):
    # a steep affine f whose level set lies far outside: steps push points out
    f = _affine(np.array([1.0, 2.0, -1.0]), 10.0)
    z0 = domain.sample(500, seed=4)
    z = newton_raphson(f, z0, steps=8, level_set=0.0, domain=domain, seed=5)
    assert bool(tf.reduce_all(domain.contains(z)))
    assert not np.allclose(z.numpy(), z0.numpy())


def test_eta_is_drawn_once_per_sample_in_unit_interval():
    # one step on an affine f moves each point by eta * (f(z0) - level)
    f = _affine(np.array([1.0, 0.0]), 0.0)
    z0 = np.zeros((2000, 2), np.float32)
    z = newton_raphson(f, z0, steps=1, level_set=-1.0, seed=6).numpy()
    eta = -z[:, 0]  # f(z0) - level = 1, gradient (1, 0)
    assert eta.min() > 0 and eta.max() <= 1
    assert abs(eta.mean() - 0.5) < 0.03
    assert len(np.unique(eta)) > 1900


def test_newton_raphson_rejects_bad_arguments():
    f = _affine(np.ones(2), 0.0)
    with pytest.raises(ValueError, match="steps"):
        newton_raphson(f, np.zeros((2, 2)), steps=-1, level_set=0.0)
    with pytest.raises(ValueError, match="eta"):
        newton_raphson(f, np.zeros((2, 2)), steps=1, level_set=0.0, eta=1.5)
    with pytest.raises(ValueError, match="NaN"):
        newton_raphson(f, np.full((2, 2), np.nan), steps=1, level_set=0.0)


def test_box_samples_lie_in_per_feature_bounds_and_cover_them():
    box = Box(low=[0.0, -2.0], high=[1.0, 2.0])
    z = box.sample(20000, seed=0).numpy()
    assert z.shape == (20000, 2)
    assert (z[:, 0] >= 0).all() and (z[:, 0] <= 1).all()
    assert (z[:, 1] >= -2).all() and (z[:, 1] <= 2).all()
    np.testing.assert_allclose(z.mean(0), [0.5, 0.0], atol=0.03)


def test_ball_samples_are_uniform_in_volume():
    d, radius = 3, 2.0
    z = Ball(radius, shape=(d,)).sample(40000, seed=1).numpy()
    r = np.linalg.norm(z, axis=1)
    assert r.max() <= radius + 1e-5
    # P(||z|| <= radius / 2) = (1/2)^d for a uniform ball
    assert abs((r <= radius / 2).mean() - 0.5**d) < 0.01


def test_sampling_is_reproducible_from_the_seed():
    ball = Ball(1.0, shape=(4,))
    np.testing.assert_array_equal(ball.sample(8, 3).numpy(), ball.sample(8, 3).numpy())
    assert not np.allclose(ball.sample(8, 3).numpy(), ball.sample(8, 4).numpy())


def test_domains_reject_bad_parameters_and_shapes():
    with pytest.raises(ValueError, match="high > low"):
        Box(1.0, 0.0)
    with pytest.raises(ValueError, match="radius"):
        Ball(0.0)
    with pytest.raises(ValueError, match="feature shape"):
        Box(0.0, 1.0).sample(3)
    with pytest.raises(ValueError, match="shape"):
        Box([0.0, 0.0], [1.0, 1.0]).sample(3, shape=(3,))
    with pytest.raises(ValueError, match="pair"):
        seed_pair([1, 2, 3])


def test_domain_config_round_trip():
    for domain in (Box([0.0, 1.0], [2.0, 3.0]), Ball(2.5, center=[1.0, 0.0])):
        restored = tf.keras.utils.deserialize_keras_object(
            tf.keras.utils.serialize_keras_object(domain)
        )
        assert type(restored) is type(domain)
        assert restored.get_config() == domain.get_config()
