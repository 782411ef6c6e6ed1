"""Figures for curation and training, saved as PNG files; each function returns the path it wrote.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so nothing here
touches global backend state or needs a display. Files are written atomically (temp file, then rename).

    plot_projection(features, labels, selected, "proj.png")       2-D PCA of the features, by cluster
    plot_difficulty_hist(difficulty, labels, "difficulty.png")     per-cluster histograms of d_i
    plot_allocation_heatmap(shares, "alloc.png")                   clusters x epochs
    plot_curves({"reward": [...]}, "reward.png", title="reward")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from space.manifest import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG to `path` atomically and return the path."""
    return write_atomic(path, lambda handle: fig.savefig(handle, format="png"))


def cluster_colors(num: int) -> list:
    """One colour per cluster: tab10/tab20 while they last, then evenly spaced hues."""
    from matplotlib import colormaps

    name = "tab10" if num <= 10 else "tab20" if num <= 20 else "hsv"
    cmap = colormaps[name]
    return [cmap(i if name != "hsv" else i / num) for i in range(num)]


def project_2d(features: np.ndarray) -> np.ndarray:
    """First two principal components of the features (zero-padded when there is only one dimension)."""
    x = np.asarray(features, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def plot_projection(
    features: np.ndarray, labels: np.ndarray, selected: np.ndarray | None, path: str | Path, title: str = "Clusters"
) -> Path:
    """Scatter of the 2-D PCA projection coloured by cluster; selected representatives drawn large, black-edged."""
    labels = np.asarray(labels, dtype=np.int64)
    xy = project_2d(features)
    if labels.shape != (xy.shape[0],):
        raise ValueError(f"labels {labels.shape} do not match {xy.shape[0]} feature rows")
    sel = np.zeros(xy.shape[0], dtype=bool) if selected is None else np.asarray(selected, dtype=bool)
    if sel.shape != labels.shape:
        raise ValueError(f"selected {sel.shape} does not match {labels.shape[0]} feature rows")
    fig = new_figure(6.5, 5.0)
    ax = fig.add_subplot()
    num = int(labels.max()) + 1 if labels.size else 0
    for k, color in enumerate(cluster_colors(num)):
        members = labels == k
        ax.scatter(*xy[members & ~sel].T, s=10, color=color, alpha=0.5, label=f"cluster {k} ({members.sum()})")
        ax.scatter(*xy[members & sel].T, s=60, color=color, edgecolors="black", linewidths=1.2)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=f"{title}: {sel.sum()} selected of {labels.size}")
    if num:
        ax.legend(fontsize="small", markerscale=2, loc="best")
    return save_figure(fig, path)


def plot_difficulty_hist(
    difficulty: np.ndarray, labels: np.ndarray, path: str | Path, bins: int = 10, title: str = "Difficulty by cluster"
) -> Path:
    """One histogram of d_i per cluster on shared [0, 1] bins; null (NaN) difficulties are counted in the titles."""
    d = np.asarray(difficulty, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if d.shape != labels.shape:
        raise ValueError(f"difficulty {d.shape} and labels {labels.shape} differ in shape")
    num = int(labels.max()) + 1 if labels.size else 1
    cols = min(num, 4)
    rows = math.ceil(num / cols)
    fig = new_figure(3.0 * cols, 2.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    for k, (ax, color) in enumerate(zip(axes, cluster_colors(num))):
        values = d[labels == k]
        known = values[~np.isnan(values)]
        ax.hist(known, bins=edges, color=color)
        nulls = values.size - known.size
        mean = f"mean {known.mean():.2f}" if known.size else "no values"
        ax.set_title(f"cluster {k}: n={values.size}, {mean}" + (f", {nulls} null" if nulls else ""), fontsize="small")
    for ax in axes[num:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.supxlabel("difficulty d (0 = easy, 1 = hard)")
    return save_figure(fig, path)


def draw_allocation_heatmap(ax, matrix: np.ndarray, title: str = "Allocation",
                            value_label: str = "share of slots") -> None:
    """Draw a clusters x epochs matrix on `ax` (with its colorbar), values annotated when it is small."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"matrix must be non-empty 2-D (clusters, epochs), got shape {m.shape}")
    clusters, epochs = m.shape
    image = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=value_label)
    ax.set(xlabel="epoch", ylabel="cluster", title=title)
    ax.set_xticks(range(epochs), [str(e) for e in range(epochs)])
    ax.set_yticks(range(clusters), [str(c) for c in range(clusters)])
    if m.size <= 400:
        mid = np.nanmean(m)
        for (c, e), value in np.ndenumerate(m):
            ax.text(
                e, c, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < mid else "black"
            )


def plot_allocation_heatmap(
    matrix: np.ndarray, path: str | Path, title: str = "Allocation", value_label: str = "share of slots"
) -> Path:
    """Heatmap of a clusters x epochs matrix (e.g. each arm's share of an epoch's slots), values annotated."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"matrix must be non-empty 2-D (clusters, epochs), got shape {m.shape}")
    clusters, epochs = m.shape
    fig = new_figure(max(4.0, 0.6 * epochs + 2.0), max(3.0, 0.45 * clusters + 1.5))
    draw_allocation_heatmap(fig.add_subplot(), m, title, value_label)
    return save_figure(fig, path)


def plot_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, title: str = "", xlabel: str = "step", ylabel: str = ""
) -> Path:
    """Line plot of named series against their index (e.g. reward per step, solve rate per epoch)."""
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    for name, values in curves.items():
        y = np.asarray(values, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"curve {name!r} must be 1-D, got shape {y.shape}")
        ax.plot(np.arange(y.size), y, marker="o" if y.size <= 30 else None, markersize=3, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)
