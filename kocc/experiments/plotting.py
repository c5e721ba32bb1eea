"""Figures: level sets of a 2-D score function with its data (paper Figure 2),
training curves, average ranks of a benchmark, certified AUROC against the
radius."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from kocc.extras import require

require("matplotlib").use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_level_sets(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    scores: np.ndarray,
    points: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    anomalies: np.ndarray | None = None,
) -> None:
    """Filled contours of ``scores`` on a grid, the 0 level set in black, the data.

    Args:
        grid_x, grid_y: ``meshgrid`` coordinates, shape ``(g, g)``.
        scores: f on the grid, shape ``(g, g)``.
        points: training points ``(n, 2)``.
        path: output PNG.
        title: figure title.
        anomalies: optional test anomalies to overlay.
    """
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=120)
    span = float(np.max(np.abs(scores)))
    levels = np.linspace(-span, span, 41)
    filled = ax.contourf(grid_x, grid_y, scores, levels=levels, cmap="RdBu")
    ax.contour(grid_x, grid_y, scores, levels=15, colors="k", linewidths=0.3)
    ax.contour(grid_x, grid_y, scores, levels=[0.0], colors="k", linewidths=2.0)
    ax.scatter(points[:, 0], points[:, 1], s=2, c="gold", label="normal (train)")
    if anomalies is not None:
        ax.scatter(anomalies[:, 0], anomalies[:, 1], s=1, c="gray", alpha=0.3)
    fig.colorbar(filled, ax=ax, label="f (signed distance, > 0 inside)")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_level_set_rows(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    rows: list[tuple[str, np.ndarray, dict[str, np.ndarray]]],
    path: str | os.PathLike,
) -> None:
    """A table of level-set panels: one row per data set, one column per method.

    The paper's Figure 6 layout. Each panel shows one method's normality score
    (higher = more normal) on the grid with its own diverging color scale
    centered on 0, the method's decision boundary (level 0) in bold, and the
    training points.

    Args:
        grid_x, grid_y: ``meshgrid`` coordinates, shape ``(g, g)``.
        rows: ``(row_label, training_points, {panel_title: grid scores})``;
            every row must have the same number of panels.
        path: output PNG.

    Raises:
        ValueError: if ``rows`` is empty or the rows have different lengths.
    """
    from matplotlib.colors import TwoSlopeNorm

    if not rows:
        raise ValueError("rows must not be empty")
    n_cols = len(rows[0][2])
    if any(len(panels) != n_cols for _, _, panels in rows) or n_cols == 0:
        raise ValueError("every row needs the same (non-zero) number of panels")
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(3.2 * n_cols, 3.0 * len(rows)),
        dpi=110,
        squeeze=False,
    )
    for r, (label, points, panels) in enumerate(rows):
        for c, (title, scores) in enumerate(panels.items()):
            ax = axes[r, c]
            scores = np.asarray(scores, np.float64).reshape(grid_x.shape)
            low, high = float(scores.min()), float(scores.max())
            span = max(abs(low), abs(high), 1e-12)
            norm = TwoSlopeNorm(
                vcenter=0.0, vmin=min(low, -1e-3 * span), vmax=max(high, 1e-3 * span)
            )
            ax.contourf(grid_x, grid_y, scores, levels=30, cmap="RdBu", norm=norm)
            ax.contour(grid_x, grid_y, scores, levels=12, colors="k", linewidths=0.2)
            if low < 0.0 < high:
                ax.contour(grid_x, grid_y, scores, levels=[0.0], colors="k")
            ax.scatter(points[:, 0], points[:, 1], s=0.5, c="gold")
            ax.set_xlim(float(grid_x.min()), float(grid_x.max()))
            ax.set_ylim(float(grid_y.min()), float(grid_y.max()))
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: The History entries OCSDF logs per epoch, in the order of the panels.
TRAINING_CURVES = ("loss", "f_pos", "f_neg", "grad_norm_neg")
_CURVE_LABELS = {
    "loss": "loss (hinge KR)",
    "f_pos": "mean f on the data",
    "f_neg": "mean f on the negatives",
    "grad_norm_neg": "mean |grad f| on the negatives",
}


def plot_training_curves(
    history: dict[str, list[float]], path: str | os.PathLike, title: str = ""
) -> dict[str, list[float]]:
    """Training curves from a Keras ``History.history``: one panel per entry of
    :data:`TRAINING_CURVES` that was logged, against the epoch.

    Args:
        history: ``{"loss": [...], "f_pos": [...], ...}`` (one value per epoch).
        path: output PNG.
        title: figure title.

    Returns:
        The plotted series, ``{name: values}``; also written beside the figure
        as CSV (``training_curves.csv`` for ``training_curves.png``: ``epoch``
        and one column per series).

    Raises:
        ValueError: if ``history`` holds none of :data:`TRAINING_CURVES`.
    """
    curves = {
        name: [float(v) for v in history[name]]
        for name in TRAINING_CURVES
        if name in history and len(history[name])
    }
    if not curves:
        raise ValueError(
            f"no training curve to plot: the history has {sorted(history)}, "
            f"expected some of {list(TRAINING_CURVES)}"
        )
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 2.8), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, (name, values) in zip(axes, curves.items(), strict=True):
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, marker="o" if len(values) < 30 else None, ms=3)
        ax.set_xlabel("epoch")
        ax.set_title(_CURVE_LABELS[name], fontsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    epochs = range(1, len(next(iter(curves.values()))) + 1)
    rows = zip(epochs, *curves.values(), strict=True)  # one value per epoch
    with open(Path(path).with_suffix(".csv"), "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["epoch", *curves])
        writer.writerows([epoch, *(repr(v) for v in values)] for epoch, *values in rows)
    return curves


def plot_average_ranks(
    ranks: dict[str, float],
    path: str | os.PathLike,
    labels: dict[str, str] | None = None,
    title: str = "",
) -> dict[str, float]:
    """Horizontal bars of the average rank per method (1 = best), best on top.

    Args:
        ranks: ``{method: average rank}`` (from the benchmark table).
        path: output PNG.
        labels: display names of the methods.
        title: figure title.

    Returns:
        The plotted ranks, best first.
    """
    if not ranks:
        raise ValueError("ranks must not be empty")
    ordered = dict(sorted(ranks.items(), key=lambda item: item[1]))
    labels = labels or {}
    names = [labels.get(m, m) for m in ordered]
    fig, ax = plt.subplots(figsize=(5, 0.45 * len(ordered) + 1.2), dpi=110)
    ax.barh(names[::-1], list(ordered.values())[::-1], color="tab:blue")
    for y, value in enumerate(list(ordered.values())[::-1]):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("average rank (1 = best)")
    ax.set_xlim(0, len(ordered) + 0.5)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return ordered


def plot_certified_auroc(
    certified: dict[float, float], path: str | os.PathLike, title: str = ""
) -> dict[float, float]:
    """Certified AUROC against the l2 attack radius epsilon.

    Args:
        certified: ``{epsilon: certified AUROC}`` (epsilon 0: the plain AUROC).
        path: output PNG.
        title: figure title.

    Returns:
        The plotted points, by increasing epsilon.
    """
    if not certified:
        raise ValueError("certified must not be empty")
    points = dict(sorted((float(k), float(v)) for k, v in certified.items()))
    fig, ax = plt.subplots(figsize=(4.5, 3.4), dpi=110)
    ax.plot(list(points), list(points.values()), marker="o")
    ax.set_xlabel("l2 radius epsilon")
    ax.set_ylabel("certified AUROC")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return points
