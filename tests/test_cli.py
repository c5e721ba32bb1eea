"""The `kocc train` command: end-to-end run, exit codes, error messages."""

import json
import re

import pytest
from conftest import assert_png, set_args

from kocc.experiments.cli import EXIT_OK, EXIT_USAGE, main

DEFAULT = "recipes/toy2d_two_moons.yaml"


def _metrics_of_run(out, argv: list[str]) -> dict:
    """Runs ``kocc ARGV``, asserts it exits 0, returns the ``metrics.json`` it
    wrote in ``out``."""
    assert main(argv) == EXIT_OK
    return json.loads((out / "metrics.json").read_text())


def test_train_writes_metrics_plot_and_model(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = _metrics_of_run(
        out,
        [
            "train",
            DEFAULT,
            "--out",
            str(out),
            *set_args(
                "training.steps=40",
                "training.epochs=2",
                "model.widths=[32, 32]",
                "evaluation.grid_size=30",
            ),
        ],
    )
    assert 0.0 <= metrics["auroc"] <= 1.0
    assert metrics["train_steps"] == 40
    assert metrics["steps_per_second"] > 0
    assert (out / "level_sets.png").stat().st_size > 10_000
    assert (out / "model.keras").is_file()
    assert "AUROC" in capsys.readouterr().out


def test_unknown_recipe_key_exits_2_and_names_the_key(capsys):
    assert main(["train", DEFAULT, "--set", "training.stepz=3"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "training.stepz" in err and "valid keys" in err


def test_missing_recipe_file_exits_2(capsys):
    assert main(["train", "nope.yaml"]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    assert "--set" in capsys.readouterr().out


def test_benchmark_rejects_a_recipe_that_is_not_a_benchmark(capsys):
    assert main(["benchmark", DEFAULT]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "a kind that kocc benchmark runs (" in err
    assert "a kind: toy recipe runs with kocc train" in err


def test_train_refuses_a_tabular_recipe_and_names_the_command(capsys):
    assert main(["train", "recipes/tabular_odds.yaml"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "a kind that kocc train runs (toy)" in err
    assert "kind: tabular recipe runs with kocc benchmark" in err


def test_surface_refuses_a_toy_recipe(capsys, tmp_path):
    code = main(["surface", "nope.off", "--recipe", DEFAULT, "--out", str(tmp_path)])
    assert code == EXIT_USAGE
    assert "runs with kocc train" in capsys.readouterr().err


def test_benchmark_unknown_key_exits_2(capsys):
    code = main(["benchmark", "recipes/tabular_odds.yaml", "--set", "model.widthz=[8]"])
    assert code == EXIT_USAGE
    assert "widthz" in capsys.readouterr().err


@pytest.mark.data
def test_benchmark_runs_a_small_tabular_recipe_end_to_end(tmp_path):
    out = tmp_path / "tab"
    code = main(
        [
            "benchmark",
            "recipes/tabular_odds.yaml",
            "--out",
            str(out),
            *set_args(
                "datasets=[wbc]",
                "runs=1",
                "training.steps=30",
                "training.members=1",
                "training.margins=[0.2]",
                "model.widths=[16]",
            ),
        ]
    )
    assert code == EXIT_OK
    table = (out / "tabular_odds.csv").read_text()
    assert "wbc" in table
    # progress: one line per finished data set and run in the run's log
    log = (out / "kocc.log").read_text()
    assert re.search(r"^tabular 1/1 wbc run 1/1 done in \d+s; ", log, re.M), log
    assert_png(out / "tabular_odds_ranks.png", min_bytes=3000, min_side=150)


def test_surface_missing_input_exits_2(tmp_path, capsys):
    assert main(["surface", "nope.off", "--out", str(tmp_path / "s")]) == EXIT_USAGE
    assert "nope.off" in capsys.readouterr().err


def test_surface_meshes_a_sphere_point_cloud_end_to_end(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    points = rng.normal(size=(512, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    np.save(tmp_path / "sphere.npy", points.astype("float32"))
    out = tmp_path / "surf"
    metrics = _metrics_of_run(
        out,
        [
            "surface",
            str(tmp_path / "sphere.npy"),
            "--out",
            str(out),
            "--recipe",
            "recipes/surface_modelnet.yaml",
            *set_args(
                "model.widths=[32, 32]",
                "training.steps=100",
                "training.epochs=1",
                "extraction.resolution=24",
                "baseline.enabled=false",
                "render.enabled=false",
                "metrics.n_samples=2000",
            ),
        ],
    )
    assert "ocsdf" in metrics
    assert list(out.glob("*.ply"))
    # progress per phase: fit, grid evaluation, marching cubes
    log = (out / "kocc.log").read_text()
    phases = re.findall(r"^surface (\d)/3 ocsdf (.+) done in", log, re.M)
    assert phases == [
        ("1", "fit"),
        ("2", "grid evaluation"),
        ("3", "marching cubes"),
    ], log
