"""ServedModel, file inputs/outputs, predict and evaluate (kocc predict/evaluate)."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import export_dir_fixture, run_dir_fixture
from sklearn.metrics import roc_auc_score

from kocc.serving import (
    ServedModel,
    evaluate,
    predict_file,
    read_inputs,
    write_outputs,
)

run_dir = run_dir_fixture(3, 2, 3)
export_dir = export_dir_fixture(threshold=0.05)


def _x(n=50, seed=1):
    return (2.0 * np.random.default_rng(seed).normal(size=(n, 3))).astype(np.float32)


def test_run_and_export_serve_the_same_certified_outputs(run_dir, export_dir):
    from_export = ServedModel.load(export_dir)
    from_run = ServedModel.load(run_dir, threshold=0.05)
    assert from_export.threshold == pytest.approx(0.05)
    a, b = from_export(_x()), from_run(_x())
    for key in ("score", "anomaly_score", "certified_radius"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-6)
    np.testing.assert_array_equal(a["is_normal"], a["score"] >= 0.05)


def test_threshold_override_moves_decisions_and_radii(export_dir):
    served = ServedModel.load(export_dir, threshold=-0.3)
    out = served(_x())
    np.testing.assert_array_equal(out["is_normal"], out["score"] >= -0.3)
    np.testing.assert_allclose(
        out["certified_radius"],
        np.abs(out["score"] + 0.3) / served.lipschitz_constant,
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="finite"):
        served.set_threshold(float("nan"))


def test_batching_does_not_change_the_outputs(export_dir):
    served = ServedModel.load(export_dir)
    whole, pieces = served(_x(101)), served(_x(101), batch_size=7)
    for key in whole:
        np.testing.assert_allclose(whole[key], pieces[key], atol=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".npz"])
def test_predict_file_writes_every_output(export_dir, tmp_path, suffix):
    x = _x()
    header = "a,b,c"
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header=header, comments="")
    served = ServedModel.load(export_dir)
    written = predict_file(served, tmp_path / "x.csv", tmp_path / f"out{suffix}")
    expected = served(x)
    if suffix == ".csv":
        table = np.genfromtxt(tmp_path / "out.csv", delimiter=",", names=True)
    else:
        table = np.load(tmp_path / f"out{suffix}", allow_pickle=False)
    for key, values in expected.items():
        np.testing.assert_allclose(
            np.asarray(table[key], dtype=np.float64),
            values.astype(np.float64),
            rtol=1e-6,
            atol=1e-7,
        )
        np.testing.assert_array_equal(written[key], values)


def test_flat_rows_are_reshaped_to_image_inputs(tmp_path):
    from deel.lip.layers import SpectralConv2D, SpectralDense
    from deel.lip.model import Sequential as LipSequential

    from kocc.export import save_for_serving

    # deel-lip's conv normalization is approximate: with a random
    # initialization its proven bound varied up to 1.044 across runs
    tf.keras.utils.set_random_seed(0)
    network = LipSequential(
        [
            tf.keras.layers.Input((4, 4, 1)),
            SpectralConv2D(2, 3),
            tf.keras.layers.Flatten(),
            SpectralDense(1),
        ]
    )
    save_for_serving(network, tmp_path / "m", lipschitz_tolerance=0.1)
    images = np.random.default_rng(0).normal(size=(6, 4, 4, 1)).astype(np.float32)
    served = ServedModel.load(tmp_path / "m")
    np.testing.assert_allclose(
        served(images.reshape(6, 16))["score"], served(images)["score"]
    )


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("x.txt", "1,2,3\n", ValueError, "expected one of"),
        ("missing.csv", None, FileNotFoundError, "does not exist"),
        ("words.csv", "a,b,c\n1,x,3\n", ValueError, "not a numeric CSV"),
    ],
)
def test_read_inputs_names_the_problem(tmp_path, name, content, error, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(error, match=message):
        read_inputs(tmp_path / name)


def test_served_inputs_are_checked(export_dir):
    served = ServedModel.load(export_dir)
    bad = _x()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        served(bad)
    with pytest.raises(ValueError, match="features"):
        served(np.zeros((2, 4), np.float32))


def test_write_outputs_rejects_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        write_outputs(tmp_path / "out.parquet", {})


def test_load_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.keras"):
        ServedModel.load(tmp_path)


def test_evaluate_reports_auroc_and_certified_auroc(export_dir):
    served = ServedModel.load(export_dir)
    normal = _x(200, seed=3) / 2.0
    anomalous = 2.0 * _x(200, seed=4) + 3.0
    report = evaluate(served, normal, anomalous, epsilons=[0.0, 0.1, 0.5])
    s_n, s_a = served(normal)["score"], served(anomalous)["score"]
    labels = np.r_[np.ones(200), np.zeros(200)]
    assert report["auroc"] == pytest.approx(roc_auc_score(labels, np.r_[s_n, s_a]))
    assert report["certified_auroc"]["0.0"] == report["auroc"]
    lip = served.lipschitz_constant
    # brute force: a normal/anomaly pair stays ordered iff f(x) - Le > f(z) + Le
    margin = (s_n[:, None] - s_a[None, :]).astype(np.float64)
    brute = np.mean(margin > 2 * lip * 0.1) + 0.5 * np.mean(margin == 2 * lip * 0.1)
    assert report["certified_auroc"]["0.1"] == pytest.approx(brute, abs=1e-9)
    assert report["certified_auroc"]["0.5"] <= report["certified_auroc"]["0.1"]
    assert report["normal_accepted"] == pytest.approx(np.mean(s_n >= 0.05))
    assert report["anomalies_rejected"] == pytest.approx(np.mean(s_a < 0.05))
    with pytest.raises(ValueError, match="epsilons"):
        evaluate(served, normal, anomalous, epsilons=[-0.1])
