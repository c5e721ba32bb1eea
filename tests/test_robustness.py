"""Hostile-but-fair probes of the library (issue 14): each gets a named error
whose message names the problem, and nothing is lost or silently wrong."""

import zipfile

import numpy as np
import pytest
import tensorflow as tf
from conftest import export_dir_fixture, run_dir_fixture

from kocc import OneClassSDF
from kocc.export import (
    METADATA_PATH,
    OUTPUT_KEYS,
    SIGNATURE_KEY,
    CertificateError,
    ModelFileError,
    certify_network,
    export_run,
    load_saved_model,
    load_trained_model,
)
from kocc.meshes import load_mesh, load_point_cloud
from kocc.safe_output import (
    OutputExistsError,
    OutputIsInputError,
    OutputPathError,
    is_complete,
)
from kocc.serving import ServedModel, predict_file, read_inputs

N_FEATURES = 3


run_dir = run_dir_fixture(N_FEATURES, 4, 5)
export_dir = export_dir_fixture(threshold=0.0)


def _x(n=40, seed=2):
    rng = np.random.default_rng(seed)
    return (2.0 * rng.normal(size=(n, N_FEATURES))).astype(np.float32)


def _copy_tree(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------- the served model


def test_served_model_flags_non_finite_rows_and_answers_the_others(export_dir):
    """Through tf.saved_model.load, as TF Serving sees it: the bad rows are
    flagged invalid (no decision, no certificate), the good rows unchanged."""
    serve = tf.saved_model.load(str(export_dir)).signatures[SIGNATURE_KEY]
    clean = _x(6)
    bad = clean.copy()
    bad[1, 0] = np.nan
    bad[3, 2] = np.inf
    bad[4, :] = -np.inf
    out = {k: v.numpy() for k, v in serve(inputs=tf.constant(bad)).items()}
    ref = {k: v.numpy() for k, v in serve(inputs=tf.constant(clean)).items()}
    assert set(out) == set(OUTPUT_KEYS)
    invalid = np.array([False, True, False, True, True, False])
    np.testing.assert_array_equal(out["valid"], ~invalid)
    assert np.isnan(out["score"][invalid]).all()
    assert np.isnan(out["anomaly_score"][invalid]).all()
    np.testing.assert_array_equal(out["certified_radius"][invalid], 0.0)
    assert not out["is_normal"][invalid].any()
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(out[key][~invalid], ref[key][~invalid])
    assert ref["valid"].all() and np.isfinite(ref["score"]).all()


def test_served_model_flags_a_batch_of_only_bad_rows(export_dir):
    serve = tf.saved_model.load(str(export_dir)).signatures[SIGNATURE_KEY]
    out = serve(inputs=tf.fill([2, N_FEATURES], float("nan")))
    assert not out["valid"].numpy().any()
    assert not out["is_normal"].numpy().any()


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_estimator_refuses_non_finite_samples(value, kind):
    x = _x(200)
    est = OneClassSDF(widths=(8,), epochs=1, random_state=0).fit(x)
    bad = x[:5].copy()
    bad[2, 1] = value
    for method in ("predict", "score_samples", "decision_function"):
        with pytest.raises(ValueError, match=f"Input X contains {kind}"):
            getattr(est, method)(bad)
    with pytest.raises(ValueError, match=f"Input X contains {kind}"):
        est.certified_radius(bad)


def test_estimator_names_overflowing_data_instead_of_a_linalg_error():
    x = _x(200)
    with pytest.raises(ValueError, match="training diverged.*standardize X"):
        OneClassSDF(widths=(8,), epochs=2, random_state=0).fit(x * 1e30)
    # a domain beyond float32's range is refused before any training
    huge = x * np.float32(1e38 / np.abs(x).max())
    with pytest.raises(ValueError, match="does not fit in float32.*Standardize"):
        OneClassSDF(widths=(8,), epochs=2, random_state=0).fit(huge)


# --------------------------------------------------------- model loaders


@pytest.mark.parametrize("damage", ["empty", "truncated", "not_zip", "other_zip"])
def test_damaged_model_keras_gets_a_named_error(run_dir, tmp_path, damage):
    path = tmp_path / "model.keras"
    if damage == "empty":
        path.write_bytes(b"")
        message = "is empty"
    elif damage == "truncated":
        path.write_bytes((run_dir / "model.keras").read_bytes())
        _truncate(path)
        message = "not a .keras archive"
    elif damage == "not_zip":
        path.write_text("hello")
        message = "not a .keras archive"
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "not a model")
        message = "cannot load"
    for load in (load_trained_model, ServedModel.load):
        with pytest.raises(ModelFileError, match=message) as err:
            load(path)
        assert str(path) in str(err.value)
    with pytest.raises(ModelFileError, match=message):
        ServedModel.load(tmp_path)  # as a run directory


@pytest.mark.parametrize("part", ["saved_model.pb", "variables"])
def test_truncated_saved_model_gets_a_named_error(export_dir, tmp_path, part):
    path = _copy_tree(export_dir, tmp_path / "served")
    if part == "saved_model.pb":
        _truncate(path / "saved_model.pb")
    else:
        (data,) = (path / "variables").glob("variables.data-*")
        _truncate(data)
    with pytest.raises(ModelFileError, match="cannot load the SavedModel") as err:
        ServedModel.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(ModelFileError):
        load_saved_model(path)


def test_saved_model_without_its_pb_is_named(export_dir, tmp_path):
    path = _copy_tree(export_dir, tmp_path / "served")
    (path / "saved_model.pb").unlink()
    with pytest.raises(ModelFileError, match="holds no saved_model.pb"):
        ServedModel.load(path)


def test_export_missing_its_metadata_is_named(export_dir, tmp_path):
    path = _copy_tree(export_dir, tmp_path / "served")
    (path / METADATA_PATH).unlink()
    with pytest.raises(ModelFileError, match="kocc_serving.json is missing"):
        ServedModel.load(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"threshold": 0.0}', "lacks feature_shape, lipschitz_bound"),
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (
            '{"threshold": 0, "lipschitz_constant": 1, "lipschitz_bound": 1,'
            ' "feature_shape": [0]}',
            "impossible values",
        ),
    ],
)
def test_damaged_metadata_is_named(export_dir, tmp_path, text, message):
    path = _copy_tree(export_dir, tmp_path / "served")
    (path / METADATA_PATH).write_text(text)
    with pytest.raises(ModelFileError, match=message) as err:
        ServedModel.load(path)
    assert "kocc_serving.json" in str(err.value)


def test_uncertifiable_bound_is_printed_with_its_digits():
    """--lipschitz-tolerance 0 used to report 'bound is 1 > 1'."""
    network = tf.keras.Sequential(
        [tf.keras.Input((2,)), tf.keras.layers.Dense(1, use_bias=False)]
    )
    network.layers[0].kernel.assign([[1.0000003], [0.0]])
    with pytest.raises(CertificateError) as err:
        certify_network(network, lipschitz_tolerance=0.0)
    bound = float(np.float32(1.0000003))
    assert f"bound is {bound!r} > 1 + lipschitz_tolerance = 1.0" in str(err.value)


def test_non_finite_weights_are_refused_by_name():
    network = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    network.layers[0].kernel.assign([[np.nan], [0.0]])
    with pytest.raises(CertificateError, match="weights are not finite.*diverged"):
        certify_network(network)


# ----------------------------------------------------------- input files


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.npy", b"", r"is empty \(0 bytes\)"),
        ("header.npy", b"\x93NUMPY\x01\x00", "not a numeric .npy array"),
        ("empty.csv", b"", r"is empty \(0 bytes\)"),
        ("blank.csv", b"\n\n", "holds no samples"),
        ("header.csv", b"a,b,c\n", "holds no samples"),
        ("latin1.csv", "é,1\n".encode("latin-1"), "not a UTF-8 text CSV"),
    ],
)
def test_bad_input_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        read_inputs(path)
    assert name in str(err.value)


@pytest.mark.parametrize(
    "name, content, load, message",
    [
        ("empty.off", "", load_mesh, r"is empty \(0 bytes\)"),
        ("header.off", "OFF\n", load_mesh, "not a readable mesh"),
        ("empty.npy", "", load_point_cloud, r"is empty \(0 bytes\)"),
        ("short.npy", "\x93NUMPY", load_point_cloud, "not a numeric .npy array"),
    ],
)
def test_bad_mesh_files_are_named(tmp_path, name, content, load, message):
    path = tmp_path / name
    path.write_text(content, encoding="latin-1")
    with pytest.raises(ValueError, match=message) as err:
        load(path)
    assert name in str(err.value)


# --------------------------------------------------------------- outputs


def test_predict_never_writes_over_its_input(export_dir, tmp_path):
    data = tmp_path / "in.csv"
    np.savetxt(data, _x(5), delimiter=",")
    before = data.read_bytes()
    served = ServedModel.load(export_dir)
    for overwrite in (False, True):
        with pytest.raises(OutputIsInputError, match=r"in\.csv.*also an input"):
            predict_file(served, data, data, overwrite=overwrite)
    assert data.read_bytes() == before


def test_predict_refuses_an_existing_output_unless_overwrite(export_dir, tmp_path):
    data = tmp_path / "in.npy"
    np.save(data, _x(5))
    out = tmp_path / "scores.csv"
    out.write_text("earlier results\n")
    served = ServedModel.load(export_dir)
    with pytest.raises(OutputExistsError, match=r"scores\.csv.*already exists"):
        predict_file(served, data, out)
    assert out.read_text() == "earlier results\n"
    predict_file(served, data, out, overwrite=True)
    header = out.read_text().splitlines()[0]
    assert header == "score,anomaly_score,certified_radius,is_normal,valid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "scores.csv"]


def test_predict_names_an_output_that_is_a_folder_or_under_a_file(export_dir, tmp_path):
    data = tmp_path / "in.npy"
    np.save(data, _x(5))
    served = ServedModel.load(export_dir)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(OutputPathError, match="it is a folder"):
        predict_file(served, data, tmp_path / "folder.csv")
    with pytest.raises(OutputPathError, match=r"in\.npy.* is a file, not a folder"):
        predict_file(served, data, data / "scores.csv")


def test_export_names_an_output_that_is_a_file_or_under_one(run_dir, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(OutputPathError, match="it is a file"):
        export_run(run_dir, a_file, overwrite=True)
    with pytest.raises(OutputPathError, match=r"notes\.txt.* is a file, not a folder"):
        export_run(run_dir, a_file / "served")
    assert a_file.read_text() == "keep me"


def test_export_never_replaces_its_run(run_dir, tmp_path):
    with pytest.raises(OutputIsInputError, match="also an input"):
        export_run(run_dir, run_dir, overwrite=True)
    with pytest.raises(OutputIsInputError, match="holds the input"):
        export_run(run_dir, run_dir.parent, overwrite=True)
    assert (run_dir / "model.keras").is_file()


def test_estimator_save_refuses_an_earlier_save_unless_overwrite(tmp_path):
    x = _x(200)
    first = OneClassSDF(widths=(8,), epochs=1, random_state=0).fit(x)
    second = OneClassSDF(widths=(8,), epochs=1, random_state=1).fit(x)
    path = first.save(tmp_path / "est")
    assert is_complete(path)
    with pytest.raises(OutputExistsError, match="est.*already exists"):
        second.save(path)
    np.testing.assert_array_equal(
        OneClassSDF.load(path).score_samples(x), first.score_samples(x)
    )
    second.save(path, overwrite=True)
    np.testing.assert_array_equal(
        OneClassSDF.load(path).score_samples(x), second.score_samples(x)
    )
    _truncate(path / "weights.npz")
    with pytest.raises(ModelFileError, match="cannot load the OneClassSDF"):
        OneClassSDF.load(path)
