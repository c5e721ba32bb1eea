"""The tabular and image drivers under a tf.distribute strategy, from TFRecord
shards, and the tabular AUROC from score shards (docs/distributed.md)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import set_args
from sklearn.metrics import roc_auc_score

from kocc.distribute import make_strategy
from kocc.experiments import image_benchmark as images
from kocc.experiments.cli import EXIT_OK, main
from kocc.experiments.recipes import RecipeError
from kocc.experiments.tabular_benchmark import TabularBenchmarkConfig, sharded_auroc

TINY = set_args(
    "datasets=[wbc]",
    "runs=1",
    "training.steps=60",
    "training.batch_size=64",
    "training.margins=[0.2]",
    "model.widths=[16]",
    "baselines=[isolation_forest]",
)


def _ocsdf_auroc(out) -> float:
    with (out / "tabular_odds_runs.csv").open() as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["method"] == "ocsdf"]
    return float(row["auroc"])


def _benchmark(out, *sets: str) -> float:
    args = ["benchmark", "recipes/tabular_odds.yaml", "--out", str(out), *TINY]
    args += set_args(*sets)
    assert main(args) == EXIT_OK
    return _ocsdf_auroc(out)


def test_tabular_recipe_takes_a_distribute_section_and_checks_it():
    config = TabularBenchmarkConfig.from_dict(
        {"datasets": ["wbc"], "distribute": {"strategy": "mirrored"}}
    )
    assert config.distribute.strategy == "mirrored"
    with pytest.raises(RecipeError, match="distribute.strategy"):
        TabularBenchmarkConfig.from_dict(
            {"datasets": ["wbc"], "distribute": {"strategy": "tpu"}}
        )
    with pytest.raises(RecipeError, match="training.shards"):
        TabularBenchmarkConfig.from_dict(
            {"datasets": ["wbc"], "training": {"shards": -1}}
        )


class _FirstFeature:
    """A scorer f(x) = x[:, 0] rounded, so that scores tie across classes."""

    def score_samples(self, x):
        return np.round(x[:, 0], 1)


def test_sharded_auroc_equals_the_in_memory_auroc_with_ties(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.2).astype(int)
    x = rng.normal(size=(1000, 3)) - 0.7 * y[:, None]
    scores = -_FirstFeature().score_samples(x)
    expected = roc_auc_score(y, scores)
    # batches of 64 rows: 16 score batches per class, several shards each
    value = sharded_auroc(_FirstFeature(), x, y, tmp_path, batch_size=64)
    assert value == pytest.approx(expected, abs=1e-12)
    assert not list(tmp_path.iterdir())  # the shards' folder is removed


@pytest.mark.data
def test_benchmark_under_mirrored_strategy_matches_the_default_run(tmp_path):
    default = _benchmark(tmp_path / "default")
    mirrored = _benchmark(tmp_path / "mirrored", "distribute.strategy=mirrored")
    assert mirrored == pytest.approx(default, abs=0.01)


@pytest.mark.data
def test_benchmark_score_shards_give_the_in_memory_auroc(tmp_path):
    memory = _benchmark(tmp_path / "memory")
    sharded = _benchmark(tmp_path / "sharded", "training.score_shards=true")
    assert sharded == pytest.approx(memory, abs=1e-9)


@pytest.mark.data
def test_benchmark_trains_from_tfrecord_shards(tmp_path):
    # The shards feed the same rows in another order, like another data seed.
    # Measured on wbc, 200 steps, seeds 0/1/2: memory 0.800/0.801/0.864,
    # 3 shards 0.800/0.868/0.842 (largest gap 0.067); at chance a broken
    # input would score ~0.5.
    memory = _benchmark(tmp_path / "memory", "training.steps=200")
    sharded = _benchmark(
        tmp_path / "sharded", "training.steps=200", "training.shards=3"
    )
    assert sharded == pytest.approx(memory, abs=0.1)
    assert sharded > 0.7
    assert not list((tmp_path / "sharded").glob("shards-*"))  # removed after fit


def _image_training(shards: int):
    model = images.ModelSettings(architecture="mlp", widths=[16])
    training = images.TrainingSettings(
        epochs=2, warmup_epochs=0, nr_steps=2, batch_size=32, shards=shards
    )
    return model, training


def test_image_driver_trains_under_a_one_replica_mirrored_strategy_as_without(
    tmp_path,
):
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1)).astype(np.float32)
    model, training = _image_training(0)
    default = images.train_ocsdf(x, model, training, seed=3)
    expected = np.asarray(default.score_samples(x))
    mirrored = images.train_ocsdf(
        x, model, training, seed=3, strategy=make_strategy("mirrored", ["/cpu:0"])
    )
    np.testing.assert_allclose(mirrored.score_samples(x), expected, atol=1e-5)
    model, training = _image_training(2)
    sharded = images.train_ocsdf(x, model, training, seed=3, work_dir=tmp_path)
    # 2 epochs of ceil(96 / 32) = 3 steps from the shards; their folder removed
    assert sharded.optimizer.iterations.numpy() == 6
    assert not list(tmp_path.iterdir())
