"""Tests of kocc.attacks: the symmetric l2 PGD attack and the AUROC it leaves.

The trained-model tests check the two facts the certificate rests on:
soundness (on a trained OCSDF the attack never beats the certified AUROC and the
local Lipschitz constant is <= 1.01) and that the attack is real (against the
unconstrained BCE network it drives the AUROC well below its clean value).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model

from kocc.architectures import lipschitz_mlp
from kocc.attacks import attacked_auroc, attacked_scores
from kocc.baselines import bce_network, fit_bce_network
from kocc.datasets.toys import make_toy
from kocc.diagnostics import local_lipschitz
from kocc.metrics import certified_auroc, model_scores
from kocc.models import OCSDF
from kocc.sampling import Ball, Box

RADII = (0.05, 0.1, 0.25, 0.5)
# Negatives from the ball of radius 5 around the standardized data (appendix E).
DOMAIN = Ball(5.0, shape=(2,))
DATASETS = ("two_moons", "two_blobs")


def _split(name):
    """Standardized toy (train, fresh test draw) and uniform anomalies.

    The anomalies are uniform in [-3, 3]^2 (not only far from the data), so
    that some lie near the support and small radii matter.
    """
    normal_train, scaler = make_toy(name, 512, seed=0)
    test_std, test_scaler = make_toy(name, 256, seed=1)
    normal_test = scaler.transform(test_scaler.inverse_transform(test_std))
    rng = np.random.default_rng(2)
    anomalous = rng.uniform(-3.0, 3.0, size=(256, 2)).astype(np.float32)
    return normal_train, normal_test, anomalous


@pytest.fixture(scope="module", params=DATASETS)
def trained_ocsdf(request):
    normal_train, normal_test, anomalous = _split(request.param)
    # deel-lip draws its power-iteration vectors from the global seed.
    tf.keras.utils.set_random_seed(0)
    model = OCSDF(
        lipschitz_mlp(2, (64, 64, 64), activation="groupsort2", seed=0),
        DOMAIN,
        margin=0.05,
        lam=100.0,
        nr_steps=4,
        seed=0,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(5e-3))
    model.fit(normal_train, batch_size=128, epochs=50, verbose=0)
    return request.param, model, normal_test, anomalous


@pytest.fixture(scope="module")
def trained_bce():
    normal_train, normal_test, anomalous = _split("two_moons")
    model = bce_network(2, (128, 128, 128), seed=0)
    fit_bce_network(model, normal_train, DOMAIN, epochs=50, batch_size=128, seed=0)
    return model, normal_test, anomalous


def test_attack_reaches_the_certificate_exactly_on_a_linear_1_lipschitz_model():
    # f(x) = w.x with ||w|| = 1: the best l2 attack moves each score by exactly
    # eps, so PGD must find f(x) - eps (normal) and f(z) + eps (anomaly), and
    # the attacked AUROC equals the certified AUROC.
    model = linear_model([0.6, -0.8])
    rng = np.random.default_rng(0)
    normal = rng.normal(0.5, 1.0, size=(120, 2)).astype(np.float32)
    anomalous = rng.normal(-0.5, 1.0, size=(80, 2)).astype(np.float32)
    x = np.r_[normal, anomalous]
    labels = np.r_[np.ones(120), -np.ones(80)]
    clean = x @ np.array([0.6, -0.8])
    scores = attacked_scores(model, x, labels, RADII, steps=5, restarts=1)
    expected = clean[None, :] - labels[None, :] * np.asarray(RADII)[:, None]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    attacked = attacked_auroc(model, normal, anomalous, RADII, steps=5, restarts=1)
    certified = certified_auroc(clean[:120], clean[120:], RADII)
    np.testing.assert_allclose(attacked, certified, atol=1e-3)


def test_attack_respects_scalar_bounds_and_domains():
    # f(x) = x_1: a normal point at x_1 = -0.95 can only be lowered to the
    # bound -1 by a radius-0.5 attack; an anomaly at 0.9 only raised to 1.
    model = linear_model([1.0, 0.0])
    x = np.array([[-0.95, 0.0], [0.9, 0.3], [0.0, 0.0]], np.float32)
    labels = np.array([1, -1, 1])  # integer labels are fine
    for bounds in ((-1.0, 1.0), Box(-1.0, 1.0, shape=(2,))):
        scores = attacked_scores(
            model, x, labels, 0.5, steps=10, restarts=3, bounds=bounds
        )
        np.testing.assert_allclose(scores, [-1.0, 1.0, -0.5], atol=1e-5)
    # A per-feature box: the first feature in [-0.97, 2], the second free-ish.
    box = Box([-0.97, -5.0], [2.0, 5.0])
    scores = attacked_scores(model, x, labels, 0.5, steps=10, bounds=box)
    np.testing.assert_allclose(scores[0], -0.97, atol=1e-5)


def test_attacked_scores_are_reproducible_with_a_seed():
    model = bce_network(2, (16, 16), seed=3)
    x = np.random.default_rng(1).uniform(-1, 1, size=(40, 2)).astype(np.float32)
    labels = np.r_[np.ones(20), -np.ones(20)]
    first = attacked_scores(model, x, labels, (0.1, 0.3), steps=4, restarts=3, seed=7)
    again = attacked_scores(model, x, labels, (0.1, 0.3), steps=4, restarts=3, seed=7)
    np.testing.assert_array_equal(first, again)
    clean = model_scores(model, x)
    # The worst score is never better for the defender than the clean one.
    assert np.all(first[:, :20] <= clean[:20]) and np.all(first[:, 20:] >= clean[20:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"restarts": 0}, "restarts must be an integer >= 1"),
        ({"rel_stepsize": 0.0}, "rel_stepsize must be > 0"),
        ({"epsilons": [-0.1]}, "epsilons must be finite and >= 0"),
        ({"bounds": (1.0, 0.0)}, "low < high"),
        ({"bounds": "box"}, "bounds must be None"),
        ({"bounds": (-0.1, 0.1)}, "outside the attack bounds"),
        ({"bounds": Box(-0.1, 0.1, shape=(2,))}, "outside the domain"),
        ({"labels": np.ones(3)}, "one entry per sample"),
        ({"x": np.full((4, 2), np.nan)}, "NaN"),
    ],
)
def test_attacked_scores_rejects_bad_input_with_named_error(kwargs, message):
    arguments = {
        "model": linear_model([1.0, 0.0]),
        "x": np.array([[0.5, 0.5], [-0.5, 0.2], [0.3, 0.0], [0.0, 0.9]]),
        "labels": np.array([1, 1, -1, -1]),
        "epsilons": [0.1],
        "steps": 3,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        attacked_scores(**arguments)


def test_attacked_auroc_rejects_mismatched_feature_shapes():
    with pytest.raises(ValueError, match="same feature shape"):
        attacked_auroc(
            linear_model([1.0, 0.0]), np.zeros((3, 2)), np.zeros((3, 3)), 0.1, 2
        )


@pytest.mark.slow
def test_certificate_is_never_beaten_on_trained_ocsdf(trained_ocsdf):
    name, model, normal, anomalous = trained_ocsdf
    clean_normal = model.score_samples(normal)
    clean_anomalous = model.score_samples(anomalous)
    certified = certified_auroc(clean_normal, clean_anomalous, RADII)
    attacked = attacked_auroc(
        model, normal, anomalous, RADII, steps=20, restarts=3, bounds=DOMAIN
    )
    clean = certified_auroc(clean_normal, clean_anomalous, 0.0)
    print(f"{name}: clean {clean:.4f} certified {certified} attacked {attacked}")
    assert clean > 0.8, f"{name}: OCSDF did not train (AUROC {clean})"
    assert np.all(attacked >= certified), (name, attacked, certified)
    assert np.all(attacked <= clean)
    # The attack does something: at the largest radius it lowers the AUROC.
    assert attacked[-1] < clean - 0.05


@pytest.mark.slow
def test_trained_ocsdf_is_1_lipschitz_and_attack_stays_within_radius(trained_ocsdf):
    name, model, normal, anomalous = trained_ocsdf
    probe = np.r_[normal, anomalous, np.asarray(DOMAIN.sample(2000, seed=9))]
    lipschitz = local_lipschitz(model, probe)
    print(f"{name}: OCSDF local Lipschitz {lipschitz:.4f}")
    assert lipschitz <= 1.01
    x = np.r_[normal[:64], anomalous[:64]]
    labels = np.r_[np.ones(64), -np.ones(64)]
    scores = attacked_scores(model, x, labels, RADII, steps=10, restarts=2)
    moved = np.abs(scores - model.score_samples(x)[None, :])
    assert np.all(moved <= 1.01 * np.asarray(RADII)[:, None] + 1e-6)


@pytest.mark.slow
def test_attack_breaks_the_unconstrained_bce_network(trained_bce):
    model, normal, anomalous = trained_bce
    clean = certified_auroc(
        model_scores(model, normal), model_scores(model, anomalous), 0
    )
    attacked = attacked_auroc(
        model, normal, anomalous, RADII, steps=20, restarts=3, bounds=DOMAIN
    )
    probe = np.r_[normal, anomalous, np.asarray(DOMAIN.sample(2000, seed=9))]
    lipschitz = local_lipschitz(model, probe)
    print(f"BCE: clean {clean:.4f} attacked {attacked} local Lipschitz {lipschitz:.1f}")
    assert clean > 0.9
    assert np.all(attacked < clean - 0.02)
    assert attacked[2] < clean - 0.15  # eps = 0.25
    assert lipschitz > 10.0
