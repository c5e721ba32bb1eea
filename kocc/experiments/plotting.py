"""Figures: level sets of a 2-D score function with its data (paper Figure 2)."""

from __future__ import annotations

import os

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
