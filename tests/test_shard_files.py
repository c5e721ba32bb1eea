"""A data set larger than memory: the tabular driver on TFRecord shard files
(recipe section ``shard_files``), its streaming statistics and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kocc.datasets.shards import (
    feature_statistics,
    max_standardized_norm,
    shard_blocks,
    shard_files,
    write_tfrecord_shards,
)
from kocc.datasets.tabular import fit_standardizer, load_tabular
from kocc.experiments.recipes import RecipeError
from kocc.experiments.tabular_benchmark import (
    TabularBenchmarkConfig,
    run_tabular_benchmark,
)
from kocc.tabular_prior import prior_from_statistics, tabular_prior


def _write_raw(path, block: np.ndarray) -> None:
    """A shard of one record, written without the writer's checks."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.io.serialize_tensor(block.astype(np.float32)).numpy())


def _recipe(tmp_path, **training) -> dict:
    return {
        "kind": "tabular",
        "name": "shards",
        "datasets": ["mine"],
        "runs": 1,
        "baselines": [],
        "paper_reference": False,
        "model": {"widths": [16]},
        "training": {"steps": 20, "batch_size": 32, "margins": [0.2]} | training,
        "shard_files": {
            "train": str(tmp_path / "train-*.tfrecord"),
            "normal": str(tmp_path / "normal-*.tfrecord"),
            "anomalous": str(tmp_path / "anomalous-*.tfrecord"),
        },
    }


def test_feature_statistics_of_shards_equal_numpy_and_give_the_in_memory_box(
    tmp_path,
):
    rng = np.random.default_rng(0)
    chunks = [
        (rng.normal(size=(n, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, -2, 1, 100]).astype(
            np.float32
        )
        for n in (3000, 17, 2100)
    ]
    chunks[0][:, 4] = 100.0  # a constant feature: std 0, standardized to 0
    for chunk in chunks[1:]:
        chunk[:, 4] = 100.0
    files = write_tfrecord_shards(chunks, tmp_path, 4)
    stats = feature_statistics(files)
    rows = np.concatenate(chunks).astype(np.float64)
    assert stats.count == len(rows) and stats.features == 5
    np.testing.assert_allclose(stats.mean, rows.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, rows.std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(stats.minimum, rows.min(0))
    np.testing.assert_array_equal(stats.maximum, rows.max(0))
    assert stats.scale[4] == 1.0
    # the streamed box is the box of the standardized rows in memory, exactly
    standardized = np.concatenate(chunks)
    fit_standardizer(standardized).transform(standardized)
    box = tabular_prior(standardized, "box", pad=0.5)
    streamed = prior_from_statistics(stats, "box", pad=0.5)
    np.testing.assert_array_equal(np.asarray(streamed.low), np.asarray(box.low))
    np.testing.assert_array_equal(np.asarray(streamed.high), np.asarray(box.high))
    gaussian = tabular_prior(standardized, "gaussian", scale=2.0)
    streamed = prior_from_statistics(stats, "gaussian", scale=2.0)
    np.testing.assert_allclose(streamed.mean, gaussian.mean, atol=1e-5)
    np.testing.assert_allclose(streamed.std, gaussian.std, rtol=1e-5)
    # the covering ball: the largest standardized row norm, a second pass
    ball = tabular_prior(standardized, "ball", pad=0.5)
    largest = max_standardized_norm(files, stats)
    norms = np.linalg.norm(standardized, axis=1)
    assert largest == pytest.approx(norms.max(), rel=1e-6)
    streamed = prior_from_statistics(stats, "ball", pad=0.5, max_norm=largest)
    assert streamed.radius == pytest.approx(ball.radius, rel=1e-5)
    np.testing.assert_allclose(streamed.center, ball.center, atol=1e-5)


def test_bad_shards_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"shard_files.train: no file matches .*none-"):
        shard_files(str(tmp_path / "none-*.tfrecord"), "shard_files.train")
    _write_raw(tmp_path / "a-0.tfrecord", np.ones((4, 3)))
    _write_raw(tmp_path / "a-1.tfrecord", np.ones((4, 2)))
    files = shard_files(str(tmp_path / "a-*.tfrecord"))
    with pytest.raises(
        ValueError,
        match=r"a-1.tfrecord' holds rows of 2 features, "
        r"expected 3 \(as in '.*a-0.tfrecord'\)",
    ):
        feature_statistics(files)
    bad = np.ones((4, 3))
    bad[2, 1] = np.nan
    _write_raw(tmp_path / "nan.tfrecord", bad)
    with pytest.raises(ValueError, match=r"nan.tfrecord', record 0: 1 non-finite"):
        list(shard_blocks(tmp_path / "nan.tfrecord"))
    (tmp_path / "junk.tfrecord").write_bytes(b"not a tfrecord at all")
    with pytest.raises(ValueError, match=r"junk.tfrecord' is not a readable TFRec"):
        list(shard_blocks(tmp_path / "junk.tfrecord"))


def test_recipe_shard_files_section_is_checked(tmp_path):
    config = TabularBenchmarkConfig.from_dict(_recipe(tmp_path))
    assert config.shard_files.enabled
    bad = {
        "shard_files.normal": {"shard_files": {"train": "t-*"}},
        "datasets": {"datasets": ["a", "b"]},
        "baselines": {"baselines": ["knn"]},
        "training.shards": {"training": {"shards": 2}},
        "training.margin_selection": {
            "training": {"margins": [0.1, 0.2], "margin_selection": "knn_scale"}
        },
    }
    for key, change in bad.items():
        with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
            TabularBenchmarkConfig.from_dict(_recipe(tmp_path) | change)


def test_driver_names_a_test_shard_with_nan_or_other_features_before_training(
    tmp_path,
):
    rng = np.random.default_rng(1)
    write_tfrecord_shards([rng.normal(size=(200, 3))], tmp_path, 2, "train")
    write_tfrecord_shards([rng.normal(size=(50, 3))], tmp_path, 1, "normal")
    _write_raw(tmp_path / "anomalous-0.tfrecord", rng.normal(size=(20, 4)))
    with pytest.raises(ValueError, match=r"anomalous-0.tfrecord' holds rows of 4"):
        run_tabular_benchmark(_recipe(tmp_path), tmp_path / "out", log=None)
    assert not (tmp_path / "out" / "shards_training_curves.csv").exists()
    bad = rng.normal(size=(20, 3))
    bad[3, 0] = np.inf
    _write_raw(tmp_path / "anomalous-0.tfrecord", bad)
    with pytest.raises(ValueError, match=r"anomalous-0.tfrecord', record 0: 1 non"):
        run_tabular_benchmark(_recipe(tmp_path), tmp_path / "out", log=None)
    recipe = _recipe(tmp_path)
    recipe["shard_files"]["train"] = str(tmp_path / "missing-*.tfrecord")
    with pytest.raises(ValueError, match=r"'shard_files.train': no file matches"):
        run_tabular_benchmark(recipe, tmp_path / "out", log=None)


@pytest.mark.data
@pytest.mark.parametrize("prior", ["box", "ball"])
def test_shard_file_run_gives_the_auroc_of_the_in_memory_run(tmp_path, prior):
    # The same rows (wbc, raw features) as shard files: the driver standardizes
    # them in the tf.data pipeline with streamed statistics, builds the prior
    # from them and scores the test shards into sorted score files. The
    # in-memory run with training.shards=3 writes its (standardized) rows into
    # 3 shards of the same layout, so both read the same batches: the same
    # AUROC, up to the division (measured: equal to 1e-16). The covering ball's
    # streamed radius is the largest standardized norm (a second pass), its
    # center 0 where the in-memory ball takes the rows' float32 mean.
    x, y = load_tabular("wbc")
    data = tmp_path / "data"
    write_tfrecord_shards([x], data, 3, "train")
    write_tfrecord_shards([x[y == 0]], data, 2, "normal")
    write_tfrecord_shards([x[y == 1]], data, 1, "anomalous")
    recipe = _recipe(data, steps=100)
    recipe["datasets"] = ["wbc"]
    recipe["domain"] = {"kind": prior}
    streamed = run_tabular_benchmark(recipe, tmp_path / "streamed", log=None)
    memory = dict(recipe, training=recipe["training"] | {"shards": 3})
    del memory["shard_files"]
    in_memory = run_tabular_benchmark(memory, tmp_path / "memory", log=None)
    (a,) = streamed.datasets[0].auroc["ocsdf"]
    (b,) = in_memory.datasets[0].auroc["ocsdf"]
    assert a == pytest.approx(b, abs=1e-12)
    assert a > 0.6  # a trained model, not chance
    result = streamed.datasets[0]
    assert (result.n_rows, result.n_features, result.n_anomalies) == (
        len(x) + len(x),
        x.shape[1],
        int(y.sum()),
    )
    assert not list((tmp_path / "streamed").glob("scores-*"))  # removed


@pytest.mark.slow
def test_peak_memory_of_a_shard_file_run_does_not_grow_with_the_data():
    # benchmarks/shard_memory.py: fresh processes run the driver on shard files
    # of 50,000 and 400,000 rows of 128 features (24 and 195 MiB), glibc's mmap
    # threshold fixed (its docstring: else freed batches stay cached in the
    # heap). Streaming holds a bounded number of rows (shuffle buffer, score
    # batches of 8,192), so the peak (VmHWM) grows by far less than the data;
    # an in-memory run grows by more than the data (measured: 2.4x). Measured
    # growth (AVX2 machine, one TF thread): 29-30 MiB for 171 MiB more data;
    # at 200,000 rows 18-27 MiB, and 44 MiB for 73 MiB in one CI run (VmHWM
    # also counts resident library pages): hence the larger size.
    script = Path(__file__).parents[1] / "benchmarks" / "shard_memory.py"
    done = subprocess.run(
        [sys.executable, str(script), "--rows", "50000", "400000"]
        + ["--features", "128", "--steps", "10", "--score-batch", "8192"]
        + ["--modes", "shards"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    small, large = report["sizes"]
    data_growth = large["data_mib"] - small["data_mib"]
    peak_growth = large["runs"][0]["peak_mib"] - small["runs"][0]["peak_mib"]
    assert data_growth > 150
    assert peak_growth < 0.5 * data_growth, report
    assert 0.0 <= large["runs"][0]["auroc"] <= 1.0  # trained and scored


def test_kocc_shards_writes_npy_and_csv_in_chunks_and_refuses_bad_rows(
    tmp_path, capsys
):
    from kocc.experiments.cli import EXIT_OK, EXIT_USAGE, main

    rng = np.random.default_rng(2)
    a = rng.normal(size=(2500, 3)).astype(np.float32)
    b = rng.normal(size=(40, 3))
    np.save(tmp_path / "a.npy", a)
    np.savetxt(tmp_path / "b.csv", b, delimiter=",", header="x,y,z", comments="")
    out = tmp_path / "shards"
    args = ["shards", str(tmp_path / "a.npy"), str(tmp_path / "b.csv")]
    args += ["--out", str(out), "--num-shards", "3", "--chunk-rows", "700"]
    assert main(args) == EXIT_OK
    assert "wrote 2540 rows of shape (3,) to 3 shards" in capsys.readouterr().out
    files = shard_files(str(out / "train-*.tfrecord"))
    rows = np.concatenate([blk for f in files for blk in shard_blocks(f)])
    expected = np.concatenate([a, b.astype(np.float32)])
    order = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(rows[order], expected[np.lexsort(expected.T[::-1])])
    # existing shards are not replaced without --overwrite
    assert main(args) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    # a NaN row is named, and neither new nor old shards are lost or half-written
    b[17, 1] = np.nan
    np.savetxt(tmp_path / "b.csv", b, delimiter=",")
    assert main([*args, "--overwrite"]) == EXIT_USAGE
    assert "b.csv', row 17: NaN or inf" in capsys.readouterr().err
    assert sorted(out.iterdir()) == [out / f.rpartition("/")[2] for f in files]
    np.save(tmp_path / "c.npy", np.ones((5, 4)))
    wrong = ["shards", str(tmp_path / "a.npy"), str(tmp_path / "c.npy")]
    assert main([*wrong, "--out", str(tmp_path / "other")]) == EXIT_USAGE
    assert "c.npy': rows of shape (4,)" in capsys.readouterr().err
