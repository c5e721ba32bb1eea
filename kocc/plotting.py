"""Figures: level sets of a 2-D score function with its data (paper Figure 2)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
