"""IOCN, FLOW and OMASGAN as baselines of the tabular and image benchmarks
(kocc.experiments.competitor_detectors), and the image leave-one-out protocol."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from test_tabular_benchmark import (
    _anomaly_scores,
    _cluster_with_far_outliers,
    toy_table_config,
)

from kocc.experiments.competitor_detectors import NetworkDetector
from kocc.experiments.image_benchmark import (
    ImageBenchmarkConfig,
    ImageData,
    run_image_benchmark,
)
from kocc.experiments.recipes import RecipeError, load_recipe
from kocc.experiments.tabular_benchmark import (
    TabularBenchmarkConfig,
    _make_baseline,
    load_rows,
    run_tabular_benchmark,
)

#: Small invertible networks: 60 updates of 2 blocks x 32. A fit's cost is
#: mostly tracing the graph, which grows with the blocks, not the updates: 10
#: updates cost as much as 60; 2 blocks instead of 4 cut the CPU time of the
#: two fits of a test from 18-19 s to 11-14 s (IOCN) and 12-14 s to 8-9 s (FLOW).
TINY_INN = {"num_blocks": 2, "hidden_units": 32, "steps": 60, "batch_size": 64}
#: Where only the table's shape is checked.
SMALLEST_INN = {"num_blocks": 2, "hidden_units": 8, "steps": 8, "batch_size": 64}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["iocn", "flow"])
def test_invertible_baselines_rank_far_outliers_above_the_cluster(name):
    # 200 standard normal rows and 8 corners at (+-8, +-8, +-8): both protocols
    # measured AUROC 1.0 for IOCN and FLOW on seeds 0-3 at this budget (and with
    # the former 4 blocks; seeds 0-3 x 2 protocols x 2 networks: all 1.0).
    x, y = _cluster_with_far_outliers()
    baseline = _make_baseline(name, TINY_INN)
    assert isinstance(baseline, NetworkDetector) and baseline.is_randomized(10)
    transductive = _anomaly_scores(baseline, x, x, seed=0, same_rows=True)
    assert roc_auc_score(y, transductive) == 1.0
    inductive = _anomaly_scores(baseline, x[:150], x[150:], seed=0, same_rows=False)
    assert roc_auc_score(y[150:], inductive) == 1.0


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("iocn", {"steps": 0}, "'baselines.iocn.steps': expected an integer >= 1"),
        ("iocn", {"learning_rate": -1.0}, "'baselines.iocn.learning_rate'"),
        ("iocn", {"blocks": 3}, "'baselines.iocn.blocks': expected a known key"),
        # the inverse guard is IOCN's: FLOW has no such key
        ("flow", {"inverse_error_threshold": 0.1}, "expected a known key"),
        ("omasgan", {"task_epochs": [1, 2]}, "'baselines.omasgan.task_epochs'"),
        ("omasgan", {"divergence": "wasserstein"}, "baselines.omasgan.divergence"),
        ("omasgan", {"delta": 2.0}, r"'baselines.omasgan.delta': expected a number"),
    ],
)
def test_bad_network_detector_options_name_the_key(name, options, message):
    with pytest.raises(RecipeError, match=message):
        NetworkDetector(name, **options)


def test_unknown_network_detector_and_unfitted_scores_are_errors():
    with pytest.raises(ValueError, match="unknown network detector 'deep_iocn'"):
        NetworkDetector("deep_iocn")
    with pytest.raises(ValueError, match="'iocn' is not fitted"):
        NetworkDetector("iocn").scores(np.zeros((2, 3)))


TABULAR_BASELINES = ["isolation_forest", "one_class_svm", "local_outlier_factor"]
IMAGE_BASELINES = ["ocsvm", "isolation_forest", "deep_svdd"]


@pytest.mark.parametrize(
    "config_class, settings, key, valid",
    [
        (
            TabularBenchmarkConfig,
            {"datasets": ["wbc"], "baselines": ["iocn", "omasgan"]},
            "baselines.omasgan",
            TABULAR_BASELINES + ["knn", "iocn", "flow"],
        ),
        (
            ImageBenchmarkConfig,
            {"baselines": {"iocm": {}}},
            "baselines.iocm",
            IMAGE_BASELINES + ["iocn", "flow", "omasgan"],
        ),
    ],
)
def test_unknown_baseline_names_the_valid_ones(config_class, settings, key, valid):
    with pytest.raises(RecipeError) as error:
        config_class.from_dict(settings)
    assert error.value.key == key
    assert error.value.valid == valid
    assert f"valid keys in baselines: {valid[0]}" in str(error.value)


def test_network_baseline_option_error_keeps_its_own_key():
    # an option of a network baseline keeps its own key in the message
    with pytest.raises(RecipeError, match="'baselines.omasgan.mu': expected a finite"):
        ImageBenchmarkConfig.from_dict({"baselines": {"omasgan": {"mu": -1.0}}})


def test_image_benchmark_gives_omasgan_tanh_generators_for_pixels():
    config = ImageBenchmarkConfig.from_dict({"baselines": {"omasgan": {}}})
    from kocc.experiments.image_benchmark import _make_baseline as image_baseline

    detector = image_baseline("omasgan", config.baselines["omasgan"], seed=3)
    assert detector.settings.output_activation == "tanh"
    assert detector.settings.task_epochs == [20, 5, 10]
    # standardized features: no output activation by default
    assert NetworkDetector("omasgan").settings.output_activation is None


@pytest.mark.slow
def test_tabular_benchmark_tables_hold_iocn_and_flow_columns(tmp_path):
    config = toy_table_config(
        tmp_path,
        runs=1,
        training={"steps": 30, "batch_size": 64, "margins": [0.2]},
        baselines={"knn": {}, "iocn": SMALLEST_INN, "flow": SMALLEST_INN},
        paper_reference=False,
    )
    results = run_tabular_benchmark(config, tmp_path / "out", log=None)
    assert results.config.methods == ("ocsdf", "knn", "iocn", "flow")
    (toy,) = results.datasets
    for method in ("iocn", "flow"):
        (value,) = toy.auroc[method]
        assert 0.0 <= value <= 1.0
    with results.csv_path.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["iocn_mean"]) == pytest.approx(toy.mean("iocn"), abs=1e-6)
    assert 0.0 <= float(row["flow_mean"]) <= 1.0
    text = results.markdown_path.read_text()
    assert "| OCSDF | kNN | IOCN | FLOW |" in text
    with results.runs_csv_path.open() as handle:
        methods = [r["method"] for r in csv.DictReader(handle)]
    assert methods == ["ocsdf", "knn", "iocn", "flow"]


def test_l2_normalize_projects_rows_onto_the_sphere(tmp_path):
    # Anomalies are normal rows scaled by 5: far away in the raw features, the
    # same points after the projection x / |x|, so the benchmark's kNN (fitted
    # on all rows, the AD protocol) separates them only without the projection.
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(200, 4)) + 3.0
    x = np.vstack([normal, 5.0 * normal[:20]]).astype(np.float32)
    y = np.r_[np.zeros(200, int), np.ones(20, int)]
    np.savez(tmp_path / "98_scaled.npz", X=x, y=y)
    aurocs = {}
    for project in (False, True):
        config = TabularBenchmarkConfig.from_dict(
            {"data_dir": str(tmp_path), "datasets": ["scaled"], "l2_normalize": project}
        )
        rows, labels = load_rows("scaled", config)
        np.testing.assert_array_equal(labels, y)
        norms = np.linalg.norm(rows, axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5) == project
        knn = _make_baseline("knn", {}).fit(rows, novelty=False)
        aurocs[project] = roc_auc_score(labels, -knn.scores(rows, fitted_rows=True))
    assert aurocs[False] == 1.0
    assert aurocs[True] < 0.6


# ------------------------------------------------------------ leave-one-out
RECIPES = os.path.join(os.path.dirname(__file__), "..", "recipes")


def test_leave_one_out_recipes_state_the_protocol_and_budgets():
    cpu = load_recipe(os.path.join(RECIPES, "mnist_leave_one_out_cpu.yaml"))
    paper = load_recipe(os.path.join(RECIPES, "mnist_leave_one_out_paper.yaml"))
    for recipe in (cpu, paper):
        assert recipe.data.protocol == "leave_one_out"
        assert recipe.data.normal_class == list(range(10))  # ten tasks
        assert recipe.evaluation.attack.enabled is False
        assert set(recipe.baselines) == {"omasgan"}
        omasgan = recipe.baselines["omasgan"]
        assert (omasgan["mu"], omasgan["nu"]) == (0.2, 0.25)
    assert cpu.data.max_train == 6000 and paper.data.max_train is None
    assert cpu.training.epochs == 6 and paper.training.epochs == 70
    assert cpu.baselines["omasgan"]["task_epochs"] == [20, 5, 10]
    assert paper.baselines["omasgan"]["task_epochs"][0] >= 100


def test_leave_one_out_protocol_is_a_recipe_choice():
    with pytest.raises(RecipeError, match="'data.protocol': expected one of"):
        ImageBenchmarkConfig.from_dict({"data": {"protocol": "one_vs_rest"}})


@pytest.fixture(scope="module")
def mnist_leave_one_out():
    root = os.environ.get("KOCC_DATA_DIR")
    config = ImageBenchmarkConfig.from_dict(
        {
            "data": {
                "dataset": "mnist",
                "protocol": "leave_one_out",
                "normal_class": 3,
                "data_dir": root,
                "max_train": 128,
                "max_test": 300,
            }
        }
    )
    return ImageData(config.data, seed=0)


def _row_keys(images):
    return {row.tobytes() for row in images.reshape(len(images), -1)}


@pytest.mark.data
def test_leave_one_out_trains_on_the_other_classes_and_tests_class_k_as_anomaly(
    mnist_leave_one_out,
):
    data = mnist_leave_one_out
    split = data.split(3)
    assert len(split.x_train) == 128
    # no training image of the left-out digit, and several other digits
    left_out = _row_keys(data.x_train[data.y_train == 3])
    assert not _row_keys(split.x_train) & left_out
    others = {int(c) for c in data.y_train[data.y_train != 3]}
    train_keys = _row_keys(split.x_train)
    seen = {
        c for c in others if train_keys & _row_keys(data.x_train[data.y_train == c])
    }
    assert len(seen) >= 8
    np.testing.assert_array_equal(split.is_normal, data.y_test != 3)
    assert 0 < (~split.is_normal).sum() < 0.2 * len(split.is_normal)
    assert "leave-one-out" in data.protocol


@pytest.mark.data
@pytest.mark.slow
def test_leave_one_out_run_reports_iocn_and_omasgan_beside_ocsdf(tmp_path):
    recipe = {
        "kind": "images",
        "name": "tiny_loo",
        "data": {
            "dataset": "mnist",
            "protocol": "leave_one_out",
            "normal_class": 1,
            "data_dir": os.environ["KOCC_DATA_DIR"],
            "max_train": 128,
            "max_test": 300,
        },
        "model": {"architecture": "mlp", "widths": [16]},
        "training": {"epochs": 1, "warmup_epochs": 0, "nr_steps": 2},
        "evaluation": {"attack": {"enabled": False}},
        "baselines": {
            "iocn": {"num_blocks": 2, "hidden_units": 16, "steps": 4},
            "omasgan": {
                "latent_dim": 8,
                "generator_widths": [16],
                "critic_widths": [16],
                "num_reference": 64,
                "task_epochs": [1, 1, 1],
                "batch_size": 64,
            },
        },
    }
    results = run_image_benchmark(recipe, tmp_path, log=None)
    (task,) = results.classes
    assert task.normal_class == 1 and task.n_train == 128
    assert task.n_test_normal + task.n_test_anomalous == 300
    assert task.n_test_anomalous < task.n_test_normal  # one digit of ten
    assert list(task.baselines) == ["iocn", "omasgan"]
    assert all(0.0 <= v <= 1.0 for v in task.baselines.values())
    assert 0.0 <= task.auroc <= 1.0
    assert {"iocn", "omasgan"} <= set(task.seconds)
    table = (tmp_path / "results.md").read_text()
    assert "leave-one-out protocol" in table
    assert "| left-out class | OCSDF |" in table
    assert "| iocn | omasgan | seconds |" in table


def test_feature_recipes_run_the_iocn_protocol_with_all_five_methods():
    for name in ("iocn_features_cpu.yaml", "iocn_features_paper.yaml"):
        with open(os.path.join(RECIPES, name)) as handle:
            config = TabularBenchmarkConfig.from_dict(yaml.safe_load(handle))
        assert config.datasets == ("mvtec-ad_bottle", "cifar10_0")
        assert (config.protocol, config.test_fraction) == ("one_class", 0.5)
        assert config.l2_normalize and not config.paper_reference
        assert config.methods == ("ocsdf", "isolation_forest", "knn", "iocn", "flow")
        for inn in ("iocn", "flow"):  # the paper's 12 blocks x 128, noise
            options = config.baselines[inn]
            assert (options["num_blocks"], options["hidden_units"]) == (12, 128)
            assert options["noise_std"] > 0
        assert config.baselines["iocn"]["inverse_error_threshold"] == 0.01
        assert config.baselines["knn"] == {"n_neighbors": 5}
        assert config.ocsdf.margin_selection == "knn_scale"  # label-free


def test_an_empty_mapping_override_removes_the_recipes_baselines():
    # --set baselines={} runs OCSDF alone (it used to merge into the recipe's)
    path = os.path.join(RECIPES, "mnist_leave_one_out_cpu.yaml")
    assert set(load_recipe(path).baselines) == {"omasgan"}
    assert load_recipe(path, ["baselines={}"]).baselines == {}
    kept = load_recipe(path, ["baselines.omasgan.mu=1.0"]).baselines["omasgan"]
    assert kept["mu"] == 1.0 and kept["nu"] == 0.25  # a sub-key still merges
