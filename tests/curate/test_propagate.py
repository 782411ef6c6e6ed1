"""Cheap difficulty: stratified choice of the measured prompts, kNN propagation to the rest, and the calibrated
kNN + covariate fit."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from space.curate.propagate import choose_measured, propagate, propagate_calibrated, propagated_table


def _blobs(sizes: list[int], dim: int = 8, seed: int = 0) -> np.ndarray:
    """Well separated Gaussian blobs, unit-normalised rows."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)] * 10  # orthogonal: far apart after normalising
    x = np.concatenate([c + rng.normal(scale=0.1, size=(n, dim)) for c, n in zip(centres, sizes)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_every_stratum_gets_its_ceil_share():
    sizes = [50, 30, 7]
    x = _blobs(sizes)
    mask = choose_measured(x, fraction=0.2, strata=3, seed=0)
    starts = np.cumsum([0, *sizes])
    per_blob = [int(mask[a:b].sum()) for a, b in zip(starts[:-1], starts[1:])]
    assert per_blob == [math.ceil(0.2 * n) for n in sizes] == [10, 6, 2]


def test_choice_is_seeded():
    x = _blobs([40, 40, 40])
    a, b = choose_measured(x, 0.25, 3, seed=0), choose_measured(x, 0.25, 3, seed=0)
    c = choose_measured(x, 0.25, 3, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.sum() == c.sum() == 30


def test_fraction_one_measures_everything_and_bad_fractions_raise():
    x = _blobs([5, 5])
    assert choose_measured(x, 1.0, 2, seed=0).all()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="measure_fraction"):
            choose_measured(x, bad, 2, seed=0)


def test_measured_rows_keep_their_value_and_midpoint_gets_the_mean():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    measured = np.array([True, True, False, False])
    d = np.array([0.0, 1.0, np.nan, np.nan])
    out = propagate(x, measured, d, neighbours=2)
    assert out[0] == 0.0 and out[1] == 1.0
    assert out[2] == pytest.approx(0.5)  # equidistant from both: plain mean
    assert out[3] == pytest.approx(0.0, abs=1e-5)  # on top of a measured point: its value


def test_unjudged_measured_rows_are_not_neighbours():
    x = np.array([[0.0], [0.1], [5.0], [0.05]], dtype=np.float32)
    measured = np.array([True, True, True, False])
    d = np.array([np.nan, np.nan, 0.8, np.nan])  # the two close measured rows could not be judged
    out = propagate(x, measured, d, neighbours=3)
    assert np.isnan(out[0]) and np.isnan(out[1])
    assert out[3] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="nothing to propagate"):
        propagate(x, measured, np.full(4, np.nan), neighbours=3)


def _half_circle(n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on a half circle whose difficulty varies smoothly along it, and a fifth of them measured."""
    t = np.random.default_rng(3).uniform(0, 1, size=n)
    x = np.stack([np.cos(t * np.pi), np.sin(t * np.pi)], axis=1).astype(np.float32)
    return x, t**2, choose_measured(x, 0.2, 8, seed=0)


def test_smooth_difficulty_is_recovered_from_a_fifth():
    x, truth, mask = _half_circle()
    out = propagate(x, mask, np.where(mask, truth, np.nan), neighbours=4)
    rho = spearmanr(out[~mask], truth[~mask]).statistic
    assert rho > 0.98


def test_propagated_table_marks_measured_rows():
    x = np.array([[0.0], [1.0], [0.4]], dtype=np.float32)
    measured_rows = pl.DataFrame({"prompt_id": ["a", "b"], "successes": [4, 0], "k": [4, 4], "unjudged": [0, 0],
                                  "solve_rate": [1.0, 0.0], "difficulty": [0.0, 1.0]})
    table, fit = propagated_table(["a", "b", "c"], x, np.array([True, True, False]), measured_rows, neighbours=2)
    assert fit is None
    assert table.columns == ["prompt_id", "successes", "k", "unjudged", "solve_rate", "difficulty", "measured"]
    assert table["measured"].to_list() == [True, True, False]
    assert table["successes"].to_list() == [4, 0, None]
    # weights 1/0.4 and 1/0.6 -> (0 * 2.5 + 1 * 1.6667) / 4.1667 = 0.4
    assert table["difficulty"].to_list()[:2] == [0.0, 1.0]
    assert table["difficulty"][2] == pytest.approx(0.4, abs=1e-5)


def test_calibration_follows_a_covariate_that_predicts_and_ignores_the_embedding_that_does_not():
    rng = np.random.default_rng(0)
    n = 600
    x = _blobs([200, 200, 200], seed=1)  # the blobs say nothing about difficulty
    p_gold = rng.uniform(0, 1, size=n)
    truth = np.clip(1 - p_gold + rng.normal(scale=0.05, size=n), 0, 1)
    mask = choose_measured(x, 0.2, 3, seed=0)
    out, fit = propagate_calibrated(x, mask, np.where(mask, truth, np.nan), 8, covariate=p_gold)
    knn_only = propagate(x, mask, np.where(mask, truth, np.nan), 8)
    assert spearmanr(out[~mask], truth[~mask]).statistic > 0.95
    assert abs(spearmanr(knn_only[~mask], truth[~mask]).statistic) < 0.2
    assert fit["covariate"] == pytest.approx(-1.0, abs=0.1) and fit["intercept"] == pytest.approx(1.0, abs=0.1)
    assert abs(fit["knn"]) < 0.3 and fit["r2"] > 0.9
    assert np.array_equal(out[mask], truth[mask]) and ((0 <= out) & (out <= 1)).all()


def test_calibration_falls_back_on_knn_when_the_covariate_is_noise():
    x, truth, mask = _half_circle()
    known = np.where(mask, truth, np.nan)
    noise = np.random.default_rng(4).uniform(0, 1, size=truth.size)
    out, fit = propagate_calibrated(x, mask, known, 4, covariate=noise)
    knn_only = propagate(x, mask, known, 4)
    assert fit["knn"] == pytest.approx(1.0, abs=0.1) and abs(fit["covariate"]) < 0.05
    assert spearmanr(out[~mask], truth[~mask]).statistic > 0.97
    assert np.abs(out[~mask] - knn_only[~mask]).max() < 0.1


def test_calibration_uses_leave_one_out_knn_on_the_measured_prompts():
    # Each measured prompt's nearest neighbour is itself. Left in, kNN would equal the difficulty exactly,
    # collinear with a covariate of 1 - d, and take part of the weight; left out, each pair predicts its partner
    # wrongly and the fit puts all the weight on the covariate.
    x = np.array([[0.0], [0.01], [10.0], [10.01], [0.005], [10.005]], dtype=np.float32)
    d = np.array([0.0, 0.1, 0.9, 1.0, np.nan, np.nan])
    measured = np.array([True, True, True, True, False, False])
    covariate = np.array([1.0, 0.9, 0.1, 0.0, 0.95, 0.05])
    out, fit = propagate_calibrated(x, measured, d, neighbours=1, covariate=covariate)
    assert fit["knn"] == pytest.approx(0.0, abs=1e-6) and fit["covariate"] == pytest.approx(-1.0, abs=1e-6)
    assert fit["r2"] == pytest.approx(1.0)
    assert out[4] == pytest.approx(0.05, abs=1e-6) and out[5] == pytest.approx(0.95, abs=1e-6)


def test_calibration_refuses_a_nan_covariate_and_too_few_measured():
    x = _blobs([10, 10])
    mask = np.zeros(20, dtype=bool)
    mask[:3] = True
    d = np.where(mask, 0.5, np.nan)
    with pytest.raises(ValueError, match="too few"):
        propagate_calibrated(x, mask, d, 2, covariate=np.zeros(20))
    with pytest.raises(ValueError, match="NaN"):
        propagate_calibrated(x, mask | (np.arange(20) < 6), np.full(20, 0.5), 2, covariate=np.full(20, np.nan))


def test_propagated_table_with_answer_logprob_keeps_it_and_returns_the_fit():
    x = _blobs([6, 6])
    ids = [f"p{i}" for i in range(12)]
    measured = np.array([True] * 4 + [False] * 2 + [True] * 4 + [False] * 2)
    logp = np.log(np.linspace(0.05, 0.95, 12))
    rows = pl.DataFrame({"prompt_id": [i for i, m in zip(ids, measured) if m], "successes": [1] * 8,
                         "k": [4] * 8, "unjudged": [0] * 8, "solve_rate": [0.25] * 8,
                         "difficulty": [float(1 - np.exp(v)) for v, m in zip(logp, measured) if m]})
    table, fit = propagated_table(ids, x, measured, rows, neighbours=2, answer_logprob=logp)
    assert table.columns[-2:] == ["measured", "answer_logprob"]
    assert table["answer_logprob"].to_list() == pytest.approx(list(logp))
    assert fit["covariate"] == pytest.approx(-1.0, abs=1e-6)
    unmeasured = ~measured
    assert table["difficulty"].to_numpy()[unmeasured] == pytest.approx(1 - np.exp(logp[unmeasured]), abs=1e-6)
