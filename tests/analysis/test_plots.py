"""Tests for space.analysis.plots: each figure is written as a readable PNG and bad shapes are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from space.analysis.plots import plot_allocation_heatmap, plot_curves, plot_difficulty_hist, plot_projection

PROJECTION_PX = (715, 550)  # 6.5 x 5 inches at 110 dpi
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def clustered():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 5)) + labels[:, None] * 4.0
    selected = np.zeros(60, bool)
    selected[[0, 1, 25, 50]] = True
    difficulty = rng.uniform(size=60)
    difficulty[5] = np.nan
    return features, labels, selected, difficulty


def test_projection_png(tmp_path, clustered):
    features, labels, selected, _ = clustered
    path = plot_projection(features, labels, selected, tmp_path / "figs" / "proj.png")
    assert path == tmp_path / "figs" / "proj.png"
    image = read_png(path)
    assert image.shape == (PROJECTION_PX[1], PROJECTION_PX[0], 4)  # figsize x dpi, RGBA
    # the selected markers change the picture
    plain = plot_projection(features, labels, None, tmp_path / "plain.png")
    assert plain.read_bytes() != path.read_bytes()
    assert no_temp_files(tmp_path) and no_temp_files(tmp_path / "figs")


def test_projection_refuses_mismatched_shapes(tmp_path, clustered):
    features, labels, selected, _ = clustered
    with pytest.raises(ValueError, match="labels"):
        plot_projection(features, labels[:-1], selected, tmp_path / "p.png")
    with pytest.raises(ValueError, match="selected"):
        plot_projection(features, labels, selected[:-1], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_difficulty_hist_png(tmp_path, clustered):
    _, labels, _, difficulty = clustered
    image = read_png(plot_difficulty_hist(difficulty, labels, tmp_path / "d.png"))
    assert image.shape[1] > 500  # three panels side by side
    many = np.repeat(np.arange(6), 5)
    wide = read_png(plot_difficulty_hist(np.linspace(0, 1, 30), many, tmp_path / "d6.png"))
    assert wide.shape[0] > image.shape[0]  # six clusters wrap onto a second row
    with pytest.raises(ValueError, match="differ in shape"):
        plot_difficulty_hist(difficulty[:-1], labels, tmp_path / "bad.png")


def test_allocation_heatmap_png(tmp_path):
    shares = np.array([[0.5, 0.4, 0.1], [0.3, 0.3, 0.2], [0.2, 0.3, 0.7]])
    image = read_png(plot_allocation_heatmap(shares, tmp_path / "alloc.png", title="shares"))
    assert image.shape == (330, 440, 4)  # max(3, 0.45 * 3 + 1.5) x max(4, 0.6 * 3 + 2) inches at 110 dpi
    other = read_png(plot_allocation_heatmap(shares[::-1], tmp_path / "other.png", title="shares"))
    assert not np.array_equal(image, other)  # the cells show the data
    with pytest.raises(ValueError, match="non-empty 2-D"):
        plot_allocation_heatmap(np.zeros(3), tmp_path / "bad.png")


def test_curves_png(tmp_path):
    path = plot_curves({"reward": [0.1, 0.2, 0.4], "solve_rate": [0.0, 0.5, 0.6]}, tmp_path / "c.png", title="training")
    image = read_png(path)
    assert image.shape == (440, 715, 4)  # 6.5 x 4 inches at 110 dpi
    flat = read_png(plot_curves({"reward": [0.3, 0.3, 0.3], "solve_rate": [0.0, 0.5, 0.6]}, tmp_path / "f.png",
                                title="training"))
    assert not np.array_equal(image, flat)  # the lines follow the values
    with pytest.raises(ValueError, match="empty"):
        plot_curves({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="curve 'x' must be 1-D"):
        plot_curves({"x": [[1, 2]]}, tmp_path / "e.png")


def test_plots_leave_pyplot_alone(tmp_path):
    """Figures are built without pyplot, so no global backend is chosen or changed."""
    code = (
        "import sys, numpy as np; from space.analysis.plots import plot_curves; "
        f"plot_curves({{'a': [1.0, 2.0]}}, {str(tmp_path / 'x.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    assert (tmp_path / "x.png").exists()
