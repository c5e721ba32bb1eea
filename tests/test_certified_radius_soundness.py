"""Certified radii of the served SavedModel: no attack inside them changes a
decision, and the attacker is strong enough to change decisions just outside."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_run_dir

from kocc.export import export_run, save_for_serving
from kocc.serving import ServedModel, audit_certified_radii


@pytest.fixture(scope="module")
def served_ocsdf(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("run"), 2, 0, 1)
    path = tmp_path_factory.mktemp("export") / "served"
    export_run(run, path)
    model = ServedModel.load(path)
    # threshold at the median probe score: half the probe on each side
    model.set_threshold(float(np.median(model(_probe())["score"])))
    return model


@pytest.fixture(scope="module")
def served_linear(tmp_path_factory):
    """f(x) = w.x + b with |w| = 1: the radius is exact, so an attack of
    1.01 x the radius along -w flips every decision."""
    network = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    network.layers[0].kernel.assign([[0.6], [-0.8]])
    network.layers[0].bias.assign([0.1])
    path = tmp_path_factory.mktemp("linear") / "served"
    save_for_serving(network, path)
    return ServedModel.load(path)


def _probe(n=400, seed=3):
    return (2.0 * np.random.default_rng(seed).normal(size=(n, 2))).astype(np.float32)


def test_no_attack_inside_the_certified_radius_changes_a_decision(served_ocsdf):
    report = audit_certified_radii(served_ocsdf, _probe(), fraction=0.99)
    assert report["samples"] >= 390  # few margins within float32 resolution
    assert report["perturbations"] == 5 * report["samples"]
    assert report["flipped"] == 0
    # float32 scores: the rate carries rounding of ~1e-7 |f| / |delta|
    lip = served_ocsdf.lipschitz_constant
    assert report["max_score_change_per_unit"] <= lip * (1 + 1e-3)


def test_audit_finds_the_flips_just_outside_an_exact_radius(served_linear):
    inside = audit_certified_radii(served_linear, _probe(), fraction=0.99)
    outside = audit_certified_radii(served_linear, _probe(), fraction=1.01)
    assert inside["flipped"] == 0
    # the PGD path of every sample crosses the threshold (random directions
    # mostly do not); the gradient attacker is tight
    assert outside["flipped"] >= outside["samples"]
    assert inside["max_score_change_per_unit"] == pytest.approx(1.0, abs=1e-3)


def test_audit_rejects_bad_arguments(served_linear):
    with pytest.raises(ValueError, match="fraction"):
        audit_certified_radii(served_linear, _probe(), fraction=0.0)
    with pytest.raises(ValueError, match="steps"):
        audit_certified_radii(served_linear, _probe(), steps=0)
    with pytest.raises(ValueError, match="NaN"):
        audit_certified_radii(served_linear, np.full((2, 2), np.nan, np.float32))
