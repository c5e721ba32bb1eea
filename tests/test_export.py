"""Serving export: SavedModel with certified radii, loadable without kocc/deel-lip."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from deel.lip.layers import SpectralConv2D, SpectralDense
from deel.lip.model import Sequential as LipSequential

from kocc.architectures import lipschitz_mlp
from kocc.export import (
    METADATA_PATH,
    OUTPUT_KEYS,
    SIGNATURE_KEY,
    CertificateError,
    read_serving_metadata,
    save_for_serving,
    vanilla_network,
)
from kocc.models import OCSDF
from kocc.safe_output import OutputExistsError, is_complete
from kocc.sampling import Ball

SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")


@pytest.fixture(scope="module")
def trained_model() -> OCSDF:
    """A small OCSDF trained for a few steps on a 2-D Gaussian blob."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    model = OCSDF(
        lipschitz_mlp(2, (32, 32), seed=0),
        Ball(4.0, shape=(2,)),
        margin=0.1,
        nr_steps=2,
        seed=1,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    model.fit(x, batch_size=64, epochs=2, verbose=0)
    return model


def _probe() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (3.0 * rng.normal(size=(300, 2))).astype(np.float32)


@pytest.fixture(scope="module")
def threshold(trained_model) -> float:
    """The median probe score: half the probe is normal, half anomalous."""
    return float(np.median(trained_model.score_samples(_probe())))


@pytest.fixture(scope="module")
def exported(trained_model, threshold, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("served") / "model"
    save_for_serving(trained_model, path, threshold=threshold)
    return path


_LOADER = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(sys.argv[1])
    x = np.load(sys.argv[2])
    out = served.signatures["serving_default"](inputs=tf.constant(x))
    leaked = sorted(
        m for m in sys.modules if m.split(".")[0] in ("kocc", "deel")
    )
    assert not leaked, f"modules imported: {leaked}"
    np.savez(
        sys.argv[3],
        threshold=served.threshold.numpy(),
        lipschitz=served.lipschitz_constant.numpy(),
        **{k: v.numpy() for k, v in out.items()},
    )
    """)


@pytest.mark.parametrize("legacy_keras", [None, "1"], ids=["keras-default", "tf-keras"])
def test_saved_model_loads_without_kocc_and_matches_in_memory_model(
    trained_model, exported, threshold, tmp_path, legacy_keras
):
    x = _probe()
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy_keras is not None:
        env["TF_USE_LEGACY_KERAS"] = legacy_keras
    env["PYTHONPATH"] = ""  # the fresh process must not even find kocc first
    script = tmp_path / "load.py"
    script.write_text(_LOADER)
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(exported),
            str(tmp_path / "x.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    out = np.load(tmp_path / "out.npz")
    f = trained_model.score_samples(x)
    lipschitz = float(out["lipschitz"])
    assert float(out["threshold"]) == pytest.approx(threshold)
    assert 1.0 <= lipschitz <= 1.0 + 1e-3
    np.testing.assert_allclose(out["score"], f, atol=1e-5)
    np.testing.assert_allclose(out["anomaly_score"], -f, atol=1e-5)
    np.testing.assert_allclose(
        out["certified_radius"], np.abs(f - threshold) / lipschitz, atol=1e-5
    )
    decided = np.abs(f - threshold) > 1e-5
    np.testing.assert_array_equal(out["is_normal"][decided], (f >= threshold)[decided])
    assert out["is_normal"].any() and not out["is_normal"].all()


def test_saved_model_cli_lists_the_serving_signature(exported):
    result = subprocess.run(
        [
            str(SAVED_MODEL_CLI),
            "show",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            SIGNATURE_KEY,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    text = result.stdout
    assert "inputs['inputs']" in text
    assert "shape: (-1, 2)" in text
    for key in OUTPUT_KEYS:
        assert f"outputs['{key}']" in text
    assert "DT_BOOL" in text  # is_normal


def test_metadata_records_threshold_and_proven_lipschitz_bound(exported, threshold):
    metadata = read_serving_metadata(exported)
    assert metadata.threshold == threshold
    assert metadata.feature_shape == (2,)
    assert metadata.lipschitz_constant == max(1.0, metadata.lipschitz_bound)
    assert abs(metadata.lipschitz_bound - 1.0) < 1e-3
    assert json.loads((exported / METADATA_PATH).read_text())["signature"] == (
        SIGNATURE_KEY
    )


def test_exported_network_holds_only_plain_dense_kernels(trained_model):
    network = vanilla_network(trained_model)
    kernels = [type(layer) for layer in network.layers if layer.weights]
    assert kernels and all(k is tf.keras.layers.Dense for k in kernels)
    x = _probe()
    np.testing.assert_allclose(
        network(x).numpy().ravel(), trained_model.score_samples(x), atol=1e-6
    )


def test_certified_radius_is_never_crossed_by_perturbations(exported):
    served = tf.saved_model.load(str(exported)).signatures[SIGNATURE_KEY]
    rng = np.random.default_rng(3)
    x = _probe()
    out = served(inputs=tf.constant(x))
    radius = out["certified_radius"].numpy()
    # perturbations of norm 0.999 r in random directions and along the gradient
    direction = rng.normal(size=x.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    moved = x + 0.999 * radius[:, None] * direction
    after = served(inputs=tf.constant(moved.astype(np.float32)))
    np.testing.assert_array_equal(after["is_normal"].numpy(), out["is_normal"].numpy())


def test_default_threshold_is_zero(trained_model, tmp_path):
    metadata = save_for_serving(trained_model, tmp_path / "m")
    assert metadata.threshold == 0.0
    assert float(tf.saved_model.load(str(tmp_path / "m")).threshold.numpy()) == 0.0


def test_export_refuses_a_network_that_is_not_1_lipschitz(tmp_path):
    network = tf.keras.Sequential(
        [
            tf.keras.layers.Input((3,)),
            tf.keras.layers.Dense(8),
            tf.keras.layers.Dense(1),
        ]
    )
    network.layers[0].kernel.assign(3.0 * np.eye(3, 8, dtype=np.float32))
    with pytest.raises(CertificateError, match="not 1-Lipschitz"):
        save_for_serving(network, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_export_refuses_a_layer_without_a_lipschitz_bound(tmp_path):
    network = LipSequential(
        [
            tf.keras.layers.Input((3,)),
            SpectralDense(4),
            tf.keras.layers.LayerNormalization(),
            SpectralDense(1),
        ]
    )
    with pytest.raises(CertificateError, match="LayerNormalization"):
        save_for_serving(network, tmp_path / "m")


def test_convolutional_network_exports_with_proven_bound(tmp_path):
    init = tf.keras.initializers.Orthogonal(seed=0)
    network = LipSequential(
        [
            tf.keras.layers.Input((8, 8, 2)),
            SpectralConv2D(4, 3, padding="same", kernel_initializer=init),
            tf.keras.layers.Flatten(),
            SpectralDense(1, kernel_initializer=init),
        ]
    )
    metadata = save_for_serving(network, tmp_path / "m")
    assert metadata.feature_shape == (8, 8, 2)
    assert metadata.lipschitz_bound <= 1.0 + 1e-3
    served = tf.saved_model.load(str(tmp_path / "m")).signatures[SIGNATURE_KEY]
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(
        served(inputs=tf.constant(x))["score"].numpy(),
        network(x, training=False).numpy().ravel(),
        atol=1e-5,
    )


def test_export_refuses_a_convolution_that_is_not_1_lipschitz(tmp_path):
    conv = tf.keras.layers.Conv2D(2, 3, padding="same")
    network = tf.keras.Sequential(
        [
            tf.keras.layers.Input((5, 5, 1)),
            conv,
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(1, kernel_initializer="zeros"),
        ]
    )
    network.layers[-1].kernel.assign(np.full((50, 1), 0.2, np.float32))
    conv.kernel.assign(np.ones((3, 3, 1, 2), np.float32))
    with pytest.raises(CertificateError, match="not 1-Lipschitz"):
        save_for_serving(network, tmp_path / "m")


@pytest.mark.parametrize(
    "bad, message",
    [(float("nan"), "finite"), (float("inf"), "finite"), ("high", "number")],
)
def test_export_rejects_bad_thresholds(trained_model, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        save_for_serving(trained_model, tmp_path / "m", threshold=bad)


def test_export_refuses_to_overwrite_a_directory(trained_model, exported):
    before = sorted(p.relative_to(exported) for p in exported.rglob("*"))
    with pytest.raises(OutputExistsError, match="already exists and is not empty"):
        save_for_serving(trained_model, exported)
    assert sorted(p.relative_to(exported) for p in exported.rglob("*")) == before


def test_export_overwrite_replaces_an_export_whole(trained_model, tmp_path):
    path = tmp_path / "served"
    save_for_serving(trained_model, path, threshold=0.0)
    (path / "stray.txt").write_text("from an older export")
    metadata = save_for_serving(trained_model, path, threshold=0.5, overwrite=True)
    assert metadata.threshold == 0.5
    assert read_serving_metadata(path).threshold == 0.5
    assert not (path / "stray.txt").exists()
    assert is_complete(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_export_rejects_a_negative_tolerance(trained_model, tmp_path):
    with pytest.raises(ValueError, match="lipschitz_tolerance"):
        save_for_serving(trained_model, tmp_path / "m", lipschitz_tolerance=-1.0)
