"""Tests of kocc.metrics: certified AUROC, its Keras metric, certified radii."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from kocc.metrics import (
    CertifiedAUROCMetric,
    certified_accuracy,
    certified_auroc,
    certified_radius,
    hkr_binary_radius,
    hkr_multiclass_radius,
    metric_name,
    model_scores,
)


def bruteforce_certified_auroc(normal, anomalous, eps, lipschitz=1.0):
    """O(n m) pair count of f(x) - L eps against f(z) + L eps, as a Fraction."""
    shifted_normal = np.asarray(normal, np.float64)[:, None] - lipschitz * eps
    shifted_anomalous = np.asarray(anomalous, np.float64)[None, :] + lipschitz * eps
    wins = int(np.sum(shifted_normal > shifted_anomalous))
    ties = int(np.sum(shifted_normal == shifted_anomalous))
    return Fraction(2 * wins + ties, 2 * len(normal) * len(anomalous))


# Scores and radii on a dyadic grid (multiples of 1/8, radii multiples of 1/16):
# every shift and comparison is exact in float64, so ties are real ties and the
# brute force is the ground truth with no rounding question.
dyadic_scores = st.lists(
    st.integers(min_value=-40, max_value=40).map(lambda k: k / 8.0),
    min_size=1,
    max_size=40,
)
dyadic_radii = st.lists(
    st.integers(min_value=0, max_value=200).map(lambda k: k / 16.0),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(normal=dyadic_scores, anomalous=dyadic_scores, radii=dyadic_radii)
def test_certified_auroc_matches_bruteforce_with_ties(normal, anomalous, radii):
    got = certified_auroc(normal, anomalous, radii)
    expected = [float(bruteforce_certified_auroc(normal, anomalous, e)) for e in radii]
    # Exact: the pair count is an integer and the ratio is rounded once.
    assert got.tolist() == expected


@settings(max_examples=100, deadline=None)
@given(
    normal=dyadic_scores,
    anomalous=dyadic_scores,
    radii=dyadic_radii,
    lipschitz=st.sampled_from([0.25, 0.5, 2.0, 4.0]),
)
def test_certified_auroc_with_lipschitz_constant_matches_bruteforce(
    normal, anomalous, radii, lipschitz
):
    got = certified_auroc(normal, anomalous, radii, lipschitz=lipschitz)
    expected = [
        float(bruteforce_certified_auroc(normal, anomalous, e, lipschitz))
        for e in radii
    ]
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", range(20))
def test_certified_auroc_at_zero_equals_sklearn_roc_auc_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 400, size=2)
    levels = int(rng.integers(2, 30))
    normal = rng.integers(0, levels, size=n) / 3.0  # many ties
    anomalous = rng.integers(0, levels, size=m) / 3.0 - 1.0 / 3.0
    labels = np.r_[np.ones(n), np.zeros(m)]
    expected = roc_auc_score(labels, np.r_[normal, anomalous])
    got = certified_auroc(normal, anomalous, 0.0)
    # sklearn integrates the ROC curve with the trapezoid rule in floating point;
    # ours is the exactly counted (2 wins + ties) / (2 n m), rounded once. They
    # agree to the last bits, and ours equals the exact rational.
    assert got == pytest.approx(expected, abs=1e-14, rel=0)
    assert got == float(bruteforce_certified_auroc(normal, anomalous, 0.0))


@pytest.mark.parametrize("seed", range(5))
def test_certified_auroc_equals_sklearn_on_shifted_scores(seed):
    rng = np.random.default_rng(100 + seed)
    normal = rng.normal(1.0, 1.0, size=300)
    anomalous = rng.normal(0.0, 1.0, size=200)
    radii = np.array([0.0, 0.05, 0.3, 1.0])
    labels = np.r_[np.ones(normal.size), np.zeros(anomalous.size)]
    expected = [
        roc_auc_score(labels, np.r_[normal - 0.7 * e, anomalous + 0.7 * e])
        for e in radii
    ]
    got = certified_auroc(normal, anomalous, radii, lipschitz=0.7)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_certified_auroc_is_zero_when_radius_exceeds_score_range():
    normal = np.array([0.5, 1.0, 3.0])
    anomalous = np.array([-2.0, 0.0, 2.5])
    # 2 eps > max(normal) - min(anomalous) = 5: every pair is lost.
    assert certified_auroc(normal, anomalous, [2.6, 10.0, 1e9]).tolist() == [0, 0, 0]
    # 2 eps == 5 exactly: the best pair becomes a tie, worth 1/2.
    assert certified_auroc(normal, anomalous, 2.5) == 0.5 / 9


def test_certified_auroc_is_non_increasing_in_radius():
    rng = np.random.default_rng(7)
    radii = np.linspace(0.0, 3.0, 61)
    values = certified_auroc(rng.normal(1, 1, 500), rng.normal(0, 1, 400), radii)
    assert values[0] > 0.7
    assert np.all(np.diff(values) <= 0)
    assert values[-1] < values[0]


def test_certified_auroc_keeps_shape_of_radii_and_accepts_column_scores():
    normal = np.array([[1.0], [2.0]])
    anomalous = np.array([[0.0], [1.5]])
    radii = np.array([[0.0, 0.1], [0.2, 0.3]])
    got = certified_auroc(normal, anomalous, radii)
    assert got.shape == (2, 2)
    assert isinstance(certified_auroc(normal, anomalous, 0.1), float)
    assert got[0, 0] == 0.75


@pytest.mark.parametrize(
    ("normal", "anomalous", "radii", "lipschitz", "message"),
    [
        ([], [1.0], [0.0], 1.0, "scores_normal is empty"),
        ([1.0], [], [0.0], 1.0, "scores_anomalous is empty"),
        ([1.0, np.nan], [0.0], [0.0], 1.0, "non-finite"),
        ([1.0], [np.inf], [0.0], 1.0, "non-finite"),
        (np.ones((2, 2)), [0.0], [0.0], 1.0, "1-D array"),
        ([1.0], [0.0], [-0.1], 1.0, "epsilons must be finite and >= 0"),
        ([1.0], [0.0], [np.nan], 1.0, "epsilons must be finite and >= 0"),
        ([1.0], [0.0], [], 1.0, "epsilons is empty"),
        ([1.0], [0.0], [0.1], 0.0, "lipschitz must be a finite constant > 0"),
        ([1.0], [0.0], [0.1], -1.0, "lipschitz must be a finite constant > 0"),
    ],
)
def test_certified_auroc_rejects_bad_input_with_named_error(
    normal, anomalous, radii, lipschitz, message
):
    with pytest.raises(ValueError, match=message):
        certified_auroc(normal, anomalous, radii, lipschitz=lipschitz)


def test_metric_name_formats_radius():
    assert metric_name(0.1) == "certified_auroc@0.1"
    assert metric_name(0) == "certified_auroc@0"
    assert metric_name(0.25) == "certified_auroc@0.25"


def test_streaming_metric_equals_certified_auroc_over_batches():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=257), 1)  # ties across batches
    labels = (rng.uniform(size=257) < 0.4).astype(np.float32) * 2 - 1  # +-1
    metric = CertifiedAUROCMetric(epsilon=0.1, lipschitz=2.0)
    for start in range(0, 257, 50):
        metric.update_state(
            labels[start : start + 50, None], scores[start : start + 50, None]
        )
    expected = certified_auroc(scores[labels > 0], scores[labels <= 0], 0.1, 2.0)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-7)
    metric.reset_state()
    assert np.isnan(float(metric.result()))
    metric.update_state(np.ones(3), np.ones(3))
    assert np.isnan(float(metric.result()))  # no anomaly seen yet


def test_streaming_metric_in_model_evaluate_and_config_roundtrip():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    labels = np.r_[np.ones(150), np.zeros(150)].astype(np.float32)
    model = tf.keras.Sequential(
        [tf.keras.layers.Dense(1, input_shape=(3,), kernel_initializer="ones")]
    )
    metric = CertifiedAUROCMetric(epsilon=0.2)
    model.compile(loss="mse", metrics=[metric])
    logs = model.evaluate(x, labels, batch_size=64, verbose=0, return_dict=True)
    scores = x.sum(axis=1)
    expected = certified_auroc(scores[:150], scores[150:], 0.2)
    assert logs["certified_auroc@0.2"] == pytest.approx(expected, abs=1e-6)

    clone = CertifiedAUROCMetric.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    assert clone.epsilon == 0.2 and clone.lipschitz == 1.0
    restored = tf.keras.metrics.deserialize(tf.keras.metrics.serialize(metric))
    assert isinstance(restored, CertifiedAUROCMetric)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": -1.0}, "epsilons must be finite and >= 0"),
        ({"epsilon": [0.1, 0.2]}, "takes one radius"),
        ({"epsilon": 0.1, "lipschitz": 0.0}, "lipschitz must be"),
    ],
)
def test_streaming_metric_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CertifiedAUROCMetric(**kwargs)


def test_streaming_metric_rejects_sample_weight():
    with pytest.raises(ValueError, match="sample_weight"):
        CertifiedAUROCMetric(0.1).update_state([1.0], [0.5], sample_weight=[1.0])


def test_certified_radius_is_distance_to_threshold_level_set_oflinear_model():
    # f(x) = w.x + b with ||w|| = 2: f is 2-Lipschitz and the distance from x to
    # the hyperplane {f = t} is |f(x) - t| / ||w||, exactly the certified radius.
    model = linear_model([1.2, -1.6], bias=0.3)
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    radii = certified_radius(model, x, threshold=0.5, lipschitz=2.0)
    scores = x @ np.array([1.2, -1.6]) + 0.3
    np.testing.assert_allclose(radii, np.abs(scores - 0.5) / 2.0, atol=1e-6)
    # Moving every point by its radius along -sign * w lands on the level set.
    direction = np.array([1.2, -1.6]) / 2.0
    moved = x - (np.sign(scores - 0.5) * radii)[:, None] * direction
    np.testing.assert_allclose(model_scores(model, moved), 0.5, atol=1e-5)


def test_model_scores_uses_score_samples_and_checks_output_shape():
    class Scorer:
        def score_samples(self, x):
            return -np.linalg.norm(x, axis=1)

    x = np.array([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(model_scores(Scorer(), x), [-5.0, -1.0])
    np.testing.assert_allclose(certified_radius(Scorer(), x, threshold=-2.0), [3, 1])
    with pytest.raises(ValueError, match="one score per sample"):
        model_scores(lambda batch: tf.concat([batch, batch], axis=1), x)
    with pytest.raises(ValueError, match="non-empty batch"):
        model_scores(Scorer(), np.zeros((0, 2)))


def test_hkr_binary_and_multiclass_radii():
    np.testing.assert_allclose(hkr_binary_radius([[-0.5], [2.0]], 2.0), [0.25, 1.0])
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 0.0, -1.0]])
    np.testing.assert_allclose(hkr_multiclass_radius(logits, True), [0.5, 0.0])
    np.testing.assert_allclose(
        hkr_multiclass_radius(logits, False), [1.0 / np.sqrt(2.0), 0.0]
    )
    with pytest.raises(ValueError, match="k >= 2 classes"):
        hkr_multiclass_radius(np.ones((3, 1)), True)


def test_hkr_multiclass_radius_certifies_a_spectrally_normalized_linear_map():
    # f(x) = W x with spectral norm 1: within the sqrt(2) radius no random
    # perturbation changes the argmax; the per-class radius (/2) is smaller.
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(4, 6))
    weights /= np.linalg.norm(weights, ord=2)
    x = rng.normal(size=(200, 6))
    logits = x @ weights.T
    radii = hkr_multiclass_radius(logits, per_class_normalized=False)
    directions = rng.normal(size=(200, 6))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    perturbed = (x + 0.999 * radii[:, None] * directions) @ weights.T
    assert np.all(perturbed.argmax(axis=1) == logits.argmax(axis=1))
    assert np.all(hkr_multiclass_radius(logits, True) <= radii)


def test_certified_accuracy_counts_correct_and_certified_beyond_radius():
    radii = np.array([0.0, 0.1, 0.3, 0.5])
    correct = np.array([True, True, False, True])
    got = certified_accuracy(radii, correct, [0.0, 0.1, 0.2, 0.5])
    np.testing.assert_allclose(got, [0.5, 0.25, 0.25, 0.0])
    assert certified_accuracy(radii, correct, 0.0) == 0.5
    with pytest.raises(ValueError, match="shape of radii"):
        certified_accuracy(radii, correct[:2], 0.1)
