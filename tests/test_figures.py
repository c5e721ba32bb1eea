"""Figures written beside run results (kocc/experiments/plotting.py)."""

import csv

import numpy as np
import pytest
from conftest import assert_png

pytest.importorskip("matplotlib", reason="the plots extra is not installed")

from kocc.experiments.plotting import (  # noqa: E402
    plot_average_ranks,
    plot_certified_auroc,
    plot_training_curves,
)


def test_training_curves_plot_the_history_and_write_its_data(tmp_path):
    rng = np.random.default_rng(0)
    history = {
        "loss": list(rng.normal(size=6)),
        "f_pos": list(rng.normal(size=6)),
        "f_neg": list(rng.normal(size=6)),
        "grad_norm_neg": list(rng.uniform(size=6)),
        "learning_rate": [1e-3] * 6,  # not a training curve
    }
    path = tmp_path / "training_curves.png"
    curves = plot_training_curves(history, path, "two moons")
    assert list(curves) == ["loss", "f_pos", "f_neg", "grad_norm_neg"]
    for name, values in curves.items():
        assert values == [float(v) for v in history[name]]
    assert_png(path)
    with open(tmp_path / "training_curves.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["f_neg"]) for r in rows] == curves["f_neg"]


def test_training_curves_without_any_known_entry_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no training curve to plot"):
        plot_training_curves({"accuracy": [0.5]}, tmp_path / "c.png")


def test_rank_plot_orders_methods_best_first(tmp_path):
    ranks = {"ocsdf": 2.5, "isolation_forest": 1.5, "one_class_svm": 2.0}
    path = tmp_path / "ranks.png"
    plotted = plot_average_ranks(ranks, path, {"ocsdf": "OCSDF"})
    assert list(plotted.items()) == [
        ("isolation_forest", 1.5),
        ("one_class_svm", 2.0),
        ("ocsdf", 2.5),
    ]
    assert_png(path, min_bytes=3000, min_side=150)


def test_certified_auroc_curve_is_plotted_by_increasing_radius(tmp_path):
    path = tmp_path / "curve.png"
    points = plot_certified_auroc({"0.5": 0.7, 0.0: 0.99, "0.1": 0.95}, path)
    assert list(points.items()) == [(0.0, 0.99), (0.1, 0.95), (0.5, 0.7)]
    assert_png(path, min_bytes=3000, min_side=150)
