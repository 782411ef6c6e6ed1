"""Figures of the `space bench` report (Agg canvas, atomic PNG writes, as in `space.analysis.plots`).

    plot_bands({"uniform-full": mean_curve(cells, "step", "pass1"), ...}, "pass1_vs_steps.png", ...)
    plot_intervals(rows, "final.png")          final pass@1 and greedy per arm with their seed CIs
    write_figures(cells, rows, out_dir)        all of the report's figures; returns their paths
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from space.analysis.bench_report import mean_curve
from space.analysis.plots import cluster_colors, new_figure, save_figure


def draw_bands(ax, curves: Mapping[str, Mapping[str, np.ndarray]], title: str, xlabel: str, ylabel: str) -> None:
    """On `ax`: one line per curve (its mean) with a shaded lo-hi band (none when lo == hi)."""
    if not curves:
        raise ValueError("no curves to plot")
    for (name, curve), color in zip(curves.items(), cluster_colors(len(curves))):
        ax.plot(curve["x"], curve["mean"], marker="o", markersize=3, color=color, label=name)
        ax.fill_between(curve["x"], curve["lo"], curve["hi"], color=color, alpha=0.15, linewidth=0)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")


def plot_bands(curves: Mapping[str, Mapping[str, np.ndarray]], path: str | Path, title: str, xlabel: str,
               ylabel: str) -> Path:
    """One line per arm (mean over seeds) with a shaded min-max band over seeds."""
    fig = new_figure(7.0, 4.2)
    draw_bands(fig.add_subplot(), curves, title, xlabel, ylabel)
    return save_figure(fig, path)


def plot_intervals(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Final pass@1 and greedy accuracy per arm: seed mean with its 95% CI (no bar when undefined)."""
    if not rows:
        raise ValueError("no rows to plot")
    fig = new_figure(7.0, 0.45 * len(rows) + 1.8)
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))
    for ax, key, label in ((axes[0], "final_pass1", "final pass@1"), (axes[1], "final_greedy", "final greedy")):
        mean = np.array([r[key] for r in rows], dtype=float)
        lo = np.array([r[f"{key}_lo"] for r in rows], dtype=float)
        hi = np.array([r[f"{key}_hi"] for r in rows], dtype=float)
        err = np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0)
        ax.errorbar(mean, y, xerr=err, fmt="o", capsize=3)
        ax.set(xlabel=label)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, [r["arm"] for r in rows])
    axes[0].invert_yaxis()
    fig.suptitle("final held-out accuracy, mean over seeds with 95% CI")
    return save_figure(fig, path)


def write_figures(cells: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  out_dir: str | Path) -> list[Path]:
    """Accuracy against steps and rollouts, effective-group fraction per epoch, final intervals."""
    out_dir = Path(out_dir)
    arms = [r["arm"] for r in rows]
    by_arm = {a: [c for c in cells if c["arm"] == a] for a in arms}
    paths = []
    for x, xlabel in (("step", "optimiser steps"), ("rollouts", "rollouts consumed")):
        for y, ylabel in (("pass1", "held-out pass@1"), ("greedy", "held-out greedy accuracy")):
            curves = {a: mean_curve(by_arm[a], x, y) for a in arms}
            paths.append(plot_bands(curves, out_dir / f"{y}_vs_{x}.png", f"{ylabel} (band: min-max over seeds)",
                                    xlabel, ylabel))
    effective = {a: mean_curve(by_arm[a], "epoch", "effective_group_frac", series="epochs") for a in arms}
    paths.append(plot_bands(effective, out_dir / "effective_groups.png",
                            "share of GRPO groups with unequal rewards (band: min-max over seeds)", "epoch",
                            "effective-group fraction"))
    paths.append(plot_intervals(rows, out_dir / "final_accuracy.png"))
    return paths
