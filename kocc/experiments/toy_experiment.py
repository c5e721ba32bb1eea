"""The ``toy`` recipe: OCSDF on a 2-D toy, its AUROC and its level sets.

Protocol (the main job of ``kocc train``): standardized toy data; negatives
from the ball of radius 5 (paper appendix E); normal test points are a fresh
draw of the same toy (standardized with the training statistics); anomalies are
uniform points of ``[-3, 3]^2`` farther than 0.3 from every training point.

With ``comparison.methods`` set, the same run fits the BCE network, One-Class
SVM and Isolation Forest on the same data (:mod:`kocc.experiments.toy_comparison`) and
writes the paper's Figure 6 row and Table 1 entry for this toy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from kocc.datasets.toys import far_uniform_points, make_toy
from kocc.diagnostics import local_lipschitz
from kocc.experiments.plotting import (
    plot_level_set_rows,
    plot_level_sets,
    plot_training_curves,
)
from kocc.experiments.recipes import ToyRecipe, to_dict
from kocc.experiments.toy_comparison import METHOD_LABELS, fit_comparison
from kocc.experiments.training import (
    build_mlp_ocsdf,
    fit_for_steps,
    run_directory,
    strategy_of,
)
from kocc.extras import require
from kocc.metrics import certified_auroc

#: A row of Figure 6: ``(toy name, training points, {panel title: grid scores})``.
FigureRow = tuple[str, np.ndarray, dict[str, np.ndarray]]


@dataclass
class ToyRun:
    """What :func:`train_toy` measured and drew.

    Attributes:
        metrics: the content of ``metrics.json``.
        grid: the plotting grid ``(grid_x, grid_y)``, each ``(g, g)``.
        figure_row: the toy's row of Figure 6 (``None`` without comparison
            methods), for :func:`kocc.experiments.plotting.plot_level_set_rows`.
    """

    metrics: dict
    grid: tuple[np.ndarray, np.ndarray]
    figure_row: FigureRow | None


def run_toy(
    recipe: ToyRecipe, out_dir: str | Path, verbose: str | int = "auto"
) -> dict:
    """Train the recipe's OCSDF and write its report into ``out_dir``.

    See :func:`train_toy` for the files written.

    Returns:
        The metrics written to ``metrics.json``.
    """
    return train_toy(recipe, out_dir, verbose).metrics


def toy_data(recipe: ToyRecipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recipe's training points, normal test points and anomalies.

    Training points are standardized; the normal test points are a fresh draw
    standardized with the *training* statistics; the anomalies are uniform in
    ``[-box, box]^2`` and farther than ``min_distance`` from the training points.
    Seeds: ``recipe.seed`` (+1 for the test draw, +2 for the anomalies).
    """
    data = recipe.data
    x_train, scaler = make_toy(data.name, data.n_train, data.noise, seed=recipe.seed)
    test_std, test_scaler = make_toy(
        data.name, data.n_test, data.noise, seed=recipe.seed + 1
    )
    x_test = scaler.transform(test_scaler.inverse_transform(test_std))
    ev = recipe.evaluation
    anomalies = far_uniform_points(
        x_train, ev.n_anomalies, -ev.box, ev.box, ev.min_distance, seed=recipe.seed + 2
    )
    return x_train, x_test, anomalies


def train_toy(
    recipe: ToyRecipe, out_dir: str | Path, verbose: str | int = "auto"
) -> ToyRun:
    """Train the recipe's OCSDF and write its report into ``out_dir``.

    Writes ``metrics.json``, ``level_sets.png``, ``training_curves.png`` (and
    its data, ``training_curves.csv``), ``recipe.yaml`` (the resolved
    recipe) and ``model.keras`` (the trained model; reload with
    ``tf.keras.models.load_model``). With ``comparison.methods`` set, also
    ``comparison.png`` (OCSDF beside each method, paper Figure 6) and
    ``level_sets.npz`` (every method's grid scores, the grid and the training
    points), and ``metrics.json`` gains a ``methods`` table with each method's
    AUROC and, for the two networks, the local Lipschitz constant (Table 1).

    Returns:
        The metrics, the grid and the toy's Figure 6 row (:class:`ToyRun`).
    """
    yaml = require("yaml")

    # first, before any TensorFlow op (multi-worker collectives need it)
    strategy = strategy_of(recipe.distribute)
    out = run_directory(strategy, out_dir)
    tf.keras.utils.set_random_seed(recipe.seed)
    data = recipe.data
    x_train, x_test, anomalies = toy_data(recipe)
    ev = recipe.evaluation

    with strategy.scope():
        model = build_mlp_ocsdf(
            2, recipe.model, recipe.domain, recipe.training, seed=recipe.seed
        )
    report = fit_for_steps(model, x_train, recipe.training, recipe.seed, verbose)

    start = time.perf_counter()
    s_normal = model.score_samples(x_test)
    s_anomalous = model.score_samples(anomalies)
    ocsdf_auroc = certified_auroc(s_normal, s_anomalous, 0.0)  # eps 0: the AUROC
    g = np.linspace(-ev.box, ev.box, ev.grid_size, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    grid_scores = model.score_samples(grid)
    lipschitz_points = np.concatenate([grid, x_train])
    ocsdf_lipschitz = local_lipschitz(model, lipschitz_points)
    eval_seconds = time.perf_counter() - start

    plot_level_sets(
        gx,
        gy,
        grid_scores.reshape(gx.shape),
        x_train,
        out / "level_sets.png",
        title=f"OCSDF on {data.name} (AUROC {ocsdf_auroc:.4f})",
    )
    model.save(out / "model.keras")
    others = fit_comparison(
        recipe,
        x_train,
        x_test,
        anomalies,
        grid,
        model.domain,
        lipschitz_points,
    )
    methods = {
        "ocsdf": {
            "auroc": ocsdf_auroc,
            "local_lipschitz": ocsdf_lipschitz,
            "seconds": report.seconds,
        }
    }
    for name, result in others.items():
        methods[name] = {"auroc": result.auroc, "seconds": result.seconds}
        if result.local_lipschitz is not None:
            methods[name]["local_lipschitz"] = result.local_lipschitz
        methods[name].update(result.extra)
    figure_row = None
    if others:
        panels = {"ocsdf": grid_scores, **{k: v.grid_scores for k, v in others.items()}}
        np.savez_compressed(
            out / "level_sets.npz", grid_x=gx, grid_y=gy, x_train=x_train, **panels
        )
        figure_row = (data.name, x_train, _panel_titles(panels, methods))
        plot_level_set_rows(gx, gy, [figure_row], out / "comparison.png")
    metrics = {
        "recipe": recipe.name,
        "data": data.name,
        "auroc": ocsdf_auroc,
        "local_lipschitz": ocsdf_lipschitz,
        "methods": methods,
        "n_test_normal": int(len(s_normal)),
        "n_test_anomalies": int(len(s_anomalous)),
        "train_seconds": report.seconds,
        "train_steps": report.steps,
        "steps_per_second": report.steps_per_second,
        "replicas": strategy.num_replicas_in_sync,
        "eval_seconds": eval_seconds,
        "final_logs": {k: float(v[-1]) for k, v in report.history.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curves(report.history, out / "training_curves.png", recipe.name)
    (out / "recipe.yaml").write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
    return ToyRun(metrics, (gx, gy), figure_row)


def _panel_titles(panels: dict[str, np.ndarray], methods: dict[str, dict]) -> dict:
    """``{"OCSDF  AUROC 0.99  L 1.00": scores, ...}``: a figure panel per method."""
    titled = {}
    for name, scores in panels.items():
        title = f"{METHOD_LABELS[name]}\nAUROC {methods[name]['auroc']:.3f}"
        if "local_lipschitz" in methods[name]:
            title += f"  L = {methods[name]['local_lipschitz']:.2f}"
        titled[title] = scores
    return titled
