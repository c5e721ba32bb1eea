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
    "training.members=1",
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


@pytest.fixture(scope="module")
def default_auroc(tmp_path_factory) -> float:
    """OCSDF's AUROC of the TINY benchmark run as it is (no strategy, in
    memory): the reference of the strategy and the score shards tests."""
    return _benchmark(tmp_path_factory.mktemp("default"))


@pytest.mark.data
def test_benchmark_under_mirrored_strategy_matches_the_default_run(
    tmp_path, default_auroc
):
    mirrored = _benchmark(tmp_path / "mirrored", "distribute.strategy=mirrored")
    assert mirrored == pytest.approx(default_auroc, abs=0.01)


@pytest.mark.data
def test_benchmark_score_shards_give_the_in_memory_auroc(tmp_path, default_auroc):
    memory = default_auroc
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


def test_image_driver_score_shards_give_the_in_memory_certified_auroc(
    tmp_path, monkeypatch
):
    # one trained model scored both ways: the score shards count the same pairs
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 60)
    x_test = rng.random((240, 8, 8, 1)) * 0.5 + 0.4 * (labels > 0)[:, None, None, None]
    x_test = (2 * x_test - 1).astype(np.float32)
    x_train = x_test[labels == 0][:40]
    config = images.ImageBenchmarkConfig.from_dict(
        {
            "model": {"architecture": "mlp", "widths": [16]},
            "training": {"epochs": 2, "warmup_epochs": 0, "nr_steps": 2},
            "evaluation": {
                "epsilons_255": [8, 36, 72],
                "attack": {"steps": 2, "restarts": 1, "max_normal": 8},
            },
            "baselines": {},
        }
    )
    model, training = _image_training(0)
    trained = images.train_ocsdf(x_train, model, training, seed=0)
    monkeypatch.setattr(images, "train_ocsdf", lambda *args, **kwargs: trained)
    # Keras empties model.history when the model is used again: no curves here
    monkeypatch.setattr(images, "_plot_curves", lambda *args: None)
    split = images.OneClassSplit(0, x_train, x_test, labels)
    spec = images.image_spec("mnist")
    memory = images._evaluate_class(split, config, spec, tmp_path, lambda m: None)
    config.training.score_shards = True
    sharded = images._evaluate_class(split, config, spec, tmp_path, lambda m: None)
    assert sharded.auroc == pytest.approx(memory.auroc, abs=1e-12)
    assert memory.auroc > 0.6
    for key, value in memory.certified.items():
        assert sharded.certified[key] == pytest.approx(value, abs=1e-12), key
    assert sharded.certified_attack_subset == memory.certified_attack_subset
    assert sharded.clean_attack_subset == memory.clean_attack_subset
    assert not list(tmp_path.glob("scores-*"))  # removed after the merge
