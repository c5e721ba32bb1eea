"""One table of scikit-learn detectors, one score convention (higher = more normal)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kocc.baselines.detectors import DETECTORS, Detector, fit_detector


def _cluster_and_outliers(seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(200, 3))
    # isolated points far from the cluster and from each other
    directions = rng.normal(size=(10, 3))
    outliers = 12.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    outliers *= np.arange(1, 11)[:, None]
    return normal, outliers


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_scores_normal_rows_higher(name):
    normal, outliers = _cluster_and_outliers()
    score = fit_detector(name, normal, seed=0)
    labels = np.r_[np.ones(len(normal)), np.zeros(len(outliers))]
    scores = np.r_[score(normal), score(outliers)]
    assert roc_auc_score(labels, scores) > 0.99


@pytest.mark.parametrize("name", ["knn", "local_outlier_factor"])
def test_fitted_rows_are_scored_transductively(name):
    normal, outliers = _cluster_and_outliers()
    x = np.r_[normal, outliers]
    detector = Detector(name, n_neighbors=5).fit(x, novelty=False)
    scores = detector.scores(x, fitted_rows=True)
    assert scores.shape == (len(x),)
    assert roc_auc_score(np.r_[np.ones(200), np.zeros(10)], scores) > 0.99
    if name == "knn":  # a row is not its own neighbour: no zero distance
        assert np.all(scores < 0)


def test_names_options_and_subsets_are_checked():
    with pytest.raises(ValueError, match="unknown detector 'svdd'"):
        Detector("svdd")
    with pytest.raises(ValueError, match="bad options for detector 'knn'"):
        Detector("knn", n_neighbours=3)
    with pytest.raises(ValueError, match="novelty is set by the protocol"):
        Detector("local_outlier_factor", novelty=True)
    with pytest.raises(ValueError, match="max_fit_rows must be a positive integer"):
        Detector("one_class_svm", max_fit_rows=0)
    assert Detector("ocsvm").name == "one_class_svm"
    svm = Detector("one_class_svm", max_fit_rows=50)
    assert svm.is_randomized(51) and not svm.is_randomized(50)
    assert Detector("isolation_forest").is_randomized(10)
    assert svm.fit(np.random.default_rng(0).normal(size=(80, 2))).fitted_.shape_fit_[
        0
    ] == (50)
