"""`kocc export | predict | evaluate`: end to end, help, exit codes, messages."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_png, run_dir_fixture, set_args

from kocc.experiments.cli import EXIT_OK, EXIT_UNCERTIFIED, EXIT_USAGE, main

RECIPE = "recipes/toy2d_two_moons.yaml"


#: A run directory holding a briefly trained 2-D model (as `kocc train`).
run_dir = run_dir_fixture(2, 1, 2)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    path = tmp_path_factory.mktemp("samples")
    rng = np.random.default_rng(3)
    np.save(path / "normal.npy", rng.normal(size=(100, 2)).astype(np.float32))
    np.save(path / "anomalous.npy", rng.uniform(3, 4, size=(80, 2)).astype(np.float32))
    return path


def test_train_export_predict_evaluate_chain(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            RECIPE,
            "--out",
            str(run),
            *set_args(
                "training.steps=20",
                "training.epochs=1",
                "model.widths=[16, 16]",
                "evaluation.grid_size=10",
            ),
        ]
    )
    assert code == EXIT_OK
    assert_png(run / "training_curves.png")
    # the plotted curves (training_curves.csv beside the figure) are the History's
    final = json.loads((run / "metrics.json").read_text())["final_logs"]
    with open(run / "training_curves.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["epoch", "loss", "f_pos", "f_neg", "grad_norm_neg"]
    assert len(rows) == 1  # training.epochs=1
    assert {k: float(v) for k, v in rows[-1].items() if k != "epoch"} == {
        k: final[k] for k in ("loss", "f_pos", "f_neg", "grad_norm_neg")
    }
    served = tmp_path / "served"
    assert main(["export", str(run), "--out", str(served), "--threshold", "0.1"]) == 0
    assert "proven Lipschitz bound" in capsys.readouterr().out
    assert (served / "saved_model.pb").is_file()

    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "predict",
                str(served),
                str(tmp_path / "x.npy"),
                "--out",
                str(tmp_path / "scores.csv"),
            ]
        )
        == EXIT_OK
    )
    table = np.genfromtxt(tmp_path / "scores.csv", delimiter=",", names=True)
    assert len(table) == 40
    np.testing.assert_array_equal(table["is_normal"], table["score"] >= 0.1)
    assert "40 samples" in capsys.readouterr().out

    np.save(tmp_path / "z.npy", x + 5.0)
    assert (
        main(
            [
                "evaluate",
                str(served),
                "--normal",
                str(tmp_path / "x.npy"),
                "--anomalous",
                str(tmp_path / "z.npy"),
                "--epsilons",
                "0,0.1",
                "--out",
                str(tmp_path / "report.json"),
            ]
        )
        == EXIT_OK
    )
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report["threshold"] == pytest.approx(0.1)
    assert report["certified_auroc"]["0.1"] <= report["certified_auroc"]["0.0"]
    assert_png(tmp_path / "report_certified_auroc.png")


def test_predict_and_evaluate_accept_a_run_directory(run_dir, samples, tmp_path):
    out = tmp_path / "scores.npz"
    code = main(
        [
            "predict",
            str(run_dir),
            str(samples / "normal.npy"),
            "--out",
            str(out),
            "--threshold",
            "-0.5",
        ]
    )
    assert code == EXIT_OK
    scores = np.load(out)
    np.testing.assert_array_equal(scores["is_normal"], scores["score"] >= -0.5)
    code = main(
        [
            "evaluate",
            str(run_dir),
            "--normal",
            str(samples / "normal.npy"),
            "--anomalous",
            str(samples / "anomalous.npy"),
        ]
    )
    assert code == EXIT_OK


def test_export_of_an_uncertifiable_network_exits_3(tmp_path, capsys):
    network = tf.keras.Sequential(
        [tf.keras.layers.Input((2,)), tf.keras.layers.Dense(1)]
    )
    network.layers[0].kernel.assign([[3.0], [0.0]])
    network.save(tmp_path / "plain.keras")
    code = main(["export", str(tmp_path / "plain.keras"), "--out", str(tmp_path / "m")])
    assert code == EXIT_UNCERTIFIED
    assert "not 1-Lipschitz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "no_such_run", "--out", "x"], "neither a run directory"),
        (
            ["predict", "{run}", "{samples}/missing.npy", "--out", "o.csv"],
            "does not exist",
        ),
        (
            ["predict", "{run}", "{samples}/normal.npy", "--out", "o.xlsx"],
            "expected one of",
        ),
        (
            [
                "predict",
                "{run}",
                "{samples}/normal.npy",
                "--out",
                "o.csv",
                "--threshold",
                "nan",
            ],
            "finite",
        ),
        (
            [
                "evaluate",
                "{run}",
                "--normal",
                "{samples}/normal.npy",
                "--anomalous",
                "{samples}/wrong.npy",
            ],
            "features",
        ),
    ],
)
def test_bad_input_exits_2_and_names_the_problem(
    run_dir, samples, tmp_path, monkeypatch, capsys, argv, message
):
    np.save(samples / "wrong.npy", np.zeros((3, 5), np.float32))
    monkeypatch.chdir(tmp_path)
    argv = [a.format(run=run_dir, samples=samples) for a in argv]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "r", "--normal", "a", "--anomalous", "b", "--epsilons", "0,-1"],
        ["predict", "r"],
    ],
)
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE


@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
def test_help_describes_each_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == EXIT_OK
    text = capsys.readouterr().out
    assert "--out" in text and "--threshold" in text
