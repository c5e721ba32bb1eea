"""Toy comparison (paper Figure 6, Table 1): baselines, Lipschitz, the suite."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_png

from kocc.experiments.cli import EXIT_OK, EXIT_USAGE, main
from kocc.experiments.plotting import plot_level_set_rows
from kocc.experiments.recipes import RecipeError, load_recipe
from kocc.experiments.toy_comparison import bce_epochs
from kocc.experiments.toy_suite import resolve_suite

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TOYS = ("one_cloud", "two_circles", "two_blobs", "blob_and_cloud", "two_moons")
TINY = [
    "model.widths=[32, 32]",
    "training.steps=120",
    "training.epochs=2",
    "data.n_train=512",
    "data.n_test=256",
    "evaluation.n_anomalies=256",
    "evaluation.grid_size=40",
    "comparison.iocn_blocks=2",
    "comparison.iocn_hidden_units=16",
    "comparison.iocn_epochs=2",
]


@pytest.mark.parametrize("toy", TOYS)
def test_paper_toy_recipes_carry_the_paper_settings(toy):
    recipe = load_recipe(RECIPES / f"toy2d_paper_{toy}.yaml")
    assert recipe.data.name == toy
    assert recipe.model.widths == [512, 512, 512, 512]
    assert recipe.model.activation == "fullsort"
    t = recipe.training
    assert (t.optimizer, t.learning_rate, t.batch_size) == ("rmsprop", 1e-3, 256)
    assert (t.nr_steps, t.lam, t.steps) == (4, 100.0, 10_000)
    assert t.margin == (0.1 if toy == "blob_and_cloud" else 0.05)
    assert (recipe.domain.kind, recipe.domain.radius) == ("ball", 5.0)
    assert recipe.comparison.methods == [
        "bce",
        "one_class_svm",
        "isolation_forest",
        "iocn",
    ]
    # IOCN at the IOCN paper's size (12 blocks, hidden width 128)
    assert (recipe.comparison.iocn_blocks, recipe.comparison.iocn_hidden_units) == (
        12,
        128,
    )


def test_cpu_suite_resolves_all_five_toys_with_its_overrides():
    from kocc.experiments.recipes import load_recipe_data

    suite, toys = resolve_suite(
        load_recipe_data(RECIPES / "toy2d_cpu.yaml"), base_dir=RECIPES
    )
    assert [t.data.name for t in toys] == list(TOYS)
    assert all(t.model.widths == [128] * 4 for t in toys)
    assert all(t.training.steps == 4000 for t in toys)
    assert suite.name == "toy2d_cpu"


def test_bce_epochs_cover_the_requested_updates():
    # 2 * 2048 / 256 = 16 updates per epoch
    assert bce_epochs(10_000, 2048, 256) == 625
    assert bce_epochs(10_001, 2048, 256) == 626
    assert bce_epochs(1, 2048, 256) == 1


def test_unknown_comparison_method_is_rejected_with_the_choices(tmp_path):
    with pytest.raises(RecipeError, match="comparison.methods.*'bce'.*knn"):
        load_recipe(
            RECIPES / "toy2d_paper_two_moons.yaml", ["comparison.methods=[bce, knn]"]
        )


def _suite_file(tmp_path, recipes, overrides=TINY):
    path = tmp_path / "suite.yaml"
    path.write_text(
        json.dumps(
            {
                "kind": "toy_suite",
                "name": "tiny",
                "recipes": recipes,
                "overrides": list(overrides),
            }
        )
    )
    return path


def test_suite_with_a_missing_recipe_fails_before_training(tmp_path, capsys):
    suite = _suite_file(
        tmp_path,
        [str(RECIPES / "toy2d_paper_two_blobs.yaml"), "no_such_toy.yaml"],
    )
    assert main(["benchmark", str(suite), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "no_such_toy.yaml" in capsys.readouterr().err
    assert not (tmp_path / "o" / "toy2d_paper_two_blobs").exists()


def test_suite_rejects_non_toy_recipes_and_duplicate_names(tmp_path):
    tabular = str(RECIPES / "tabular_odds.yaml")
    with pytest.raises(RecipeError, match="not known|kind: toy"):
        resolve_suite({"kind": "toy_suite", "recipes": [tabular]})
    blobs = str(RECIPES / "toy2d_paper_two_blobs.yaml")
    with pytest.raises(RecipeError, match="share the name"):
        resolve_suite({"kind": "toy_suite", "recipes": [blobs, blobs]})
    with pytest.raises(RecipeError, match="at least one"):
        resolve_suite({"kind": "toy_suite", "recipes": []})


def test_train_refuses_a_suite_and_points_to_benchmark(capsys):
    assert main(["train", str(RECIPES / "toy2d_cpu.yaml")]) == EXIT_USAGE
    assert "kocc benchmark" in capsys.readouterr().err


def test_plot_rows_must_have_the_same_panels(tmp_path):
    g = np.zeros((4, 4))
    pts = np.zeros((3, 2))
    with pytest.raises(ValueError, match="same"):
        plot_level_set_rows(
            g, g, [("a", pts, {"x": g}), ("b", pts, {"x": g, "y": g})], tmp_path / "f"
        )


def test_suite_writes_table1_figure6_and_bounds_ocsdf_lipschitz(tmp_path):
    suite = _suite_file(
        tmp_path,
        [
            str(RECIPES / "toy2d_paper_two_blobs.yaml"),
            str(RECIPES / "toy2d_paper_blob_and_cloud.yaml"),
        ],
    )
    out = tmp_path / "out"
    assert main(["benchmark", str(suite), "--out", str(out)]) == EXIT_OK
    with (out / "table1.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["toy"] for r in rows] == ["two_blobs", "blob_and_cloud"]
    for row in rows:
        # OCSDF's gradient norm never exceeds 1 (float and Björck tolerance)
        assert 0.0 < float(row["lipschitz_ocsdf"]) <= 1.01
        assert float(row["lipschitz_bce"]) > 0.0
        for method in ("ocsdf", "bce", "one_class_svm", "isolation_forest", "iocn"):
            assert 0.0 <= float(row[f"auroc_{method}"]) <= 1.0
        # well-separated blobs: scikit-learn's forest finds them at once
        assert float(row["auroc_isolation_forest"]) > 0.9
    markdown = (out / "table1.md").read_text()
    assert "| two_blobs |" in markdown and "L BCE network" in markdown
    assert "AUROC IOCN" in markdown
    assert (out / "figure6.png").stat().st_size > 20_000
    # training curves of every toy, and a progress line per toy in the log
    for toy in ("toy2d_paper_two_blobs", "toy2d_paper_blob_and_cloud"):
        assert_png(out / toy / "training_curves.png")
    log = (out / "kocc.log").read_text()
    assert "toy suite 1/2 toy2d_paper_two_blobs done in" in log
    assert "toy suite 2/2 toy2d_paper_blob_and_cloud done in" in log
    per_toy = json.loads((out / "toy2d_paper_two_blobs" / "metrics.json").read_text())
    assert per_toy["methods"]["bce"]["epochs"] == bce_epochs(120, 512, 256)
    with np.load(out / "toy2d_paper_two_blobs" / "level_sets.npz") as saved:
        assert saved["ocsdf"].shape == (40 * 40,)
        assert saved["bce"].shape == (40 * 40,)


def test_iocn_inlier_region_is_one_component_bridging_the_two_blobs():
    # {score > 0} is the pre-image of the open cube under a homeomorphism, so it
    # is connected (IOCN paper §4.1): on two blobs it is one region that holds
    # points of both. Measured on this grid with this small IOCN (toy seeds 0
    # and 1): one component holding 50-61 % of each blob's training points.
    from scipy import ndimage

    from kocc.experiments.toy_comparison import fit_comparison
    from kocc.experiments.toy_experiment import toy_data

    extra = [
        "comparison.methods=[iocn]",
        "comparison.iocn_blocks=4",
        "comparison.iocn_hidden_units=32",
        "comparison.iocn_epochs=10",
    ]
    recipe = load_recipe(RECIPES / "toy2d_paper_two_blobs.yaml", TINY + extra)
    x_train, x_test, anomalies = toy_data(recipe)
    axis = np.linspace(-3.0, 3.0, 60, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    (iocn,) = fit_comparison(
        recipe, x_train, x_test, anomalies, grid, None, grid[:1]
    ).values()
    inside = iocn.grid_scores.reshape(gx.shape) > 0
    labels, components = ndimage.label(inside)
    assert components == 1
    cell = lambda v: np.clip(np.searchsorted(axis, v), 0, len(axis) - 1)  # noqa: E731
    covered = inside[cell(x_train[:, 1]), cell(x_train[:, 0])]
    upper = x_train[:, 1] > 0  # the blobs sit at y = +-0.8 after standardizing
    assert covered[upper].mean() > 0.3 and covered[~upper].mean() > 0.3
    assert 0.5 < iocn.auroc <= 1.0
