"""Statistics for comparing runs: bootstrap and Student-t intervals, and steps-to-threshold on a curve.

Pure numpy (scipy only for the t quantile). Every interval is returned as (estimate, lo, hi).

    bootstrap_ci(per_prompt_pass1)                     mean over eval prompts, percentile bootstrap CI
    paired_bootstrap_ci(base, final)                   mean of final - base, resampling prompts in pairs
    seed_interval([0.55, 0.57, 0.56])                  mean over seeds and a Student-t CI (nan for one seed)
    steps_to_fraction(steps, acc, base, target)        first step reaching base + 0.9 * (target - base)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Interval = tuple[float, float, float]


def _vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: no interval can be computed")
    if np.isnan(x).any():
        raise ValueError(f"{name} holds {int(np.isnan(x).sum())} NaN values: drop unjudged items first")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> Interval:
    """Mean of `values` and the percentile bootstrap CI of the mean (items resampled with replacement)."""
    x = _vector(values, "values")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap_ci(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray,
                        confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> Interval:
    """Mean of after - before over paired items and its percentile bootstrap CI (pairs resampled together)."""
    a, b = _vector(before, "before"), _vector(after, "after")
    if a.shape != b.shape:
        raise ValueError(f"before has {a.size} items and after {b.size}: a paired comparison needs equal lengths")
    return bootstrap_ci(b - a, confidence, n_boot, seed)


def seed_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean over seeds and the Student-t CI, mean +- t_{(1+c)/2, n-1} * s / sqrt(n).

    With one seed the spread is unknown: the bounds are NaN (not a zero-width interval).
    """
    from scipy.stats import t

    x = _vector(values, "values")
    _check_confidence(confidence)
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(t.ppf((1.0 + confidence) / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def steps_to_fraction(steps: Sequence[float], values: Sequence[float], base: float, target: float,
                      fraction: float = 0.9) -> float:
    """First step at which `values` reaches base + fraction * (target - base); NaN if it never does.

    `target - base` is the reference gain (e.g. uniform-full's final accuracy minus the base model's). A gain
    that is not positive has no meaningful threshold, so the answer is NaN then too.
    """
    s, v = _vector(steps, "steps"), _vector(values, "values")
    if s.shape != v.shape:
        raise ValueError(f"{s.size} steps but {v.size} values")
    if np.any(np.diff(s) < 0):
        raise ValueError("steps must be non-decreasing")
    gain = target - base
    if not gain > 0:
        return float("nan")
    reached = np.flatnonzero(v >= base + fraction * gain)
    return float(s[reached[0]]) if reached.size else float("nan")


def describe_difference(diff: float, lo: float, hi: float, what: str = "difference", confidence: float = 0.95) -> str:
    """A sentence saying whether the CI of a difference excludes 0 (or that there is no interval)."""
    if np.isnan(lo) or np.isnan(hi):
        return f"{what} {diff:+.3f}: no interval (it needs at least two paired values)"
    interval = f"{what} {diff:+.3f} ({confidence:.0%} CI {lo:+.3f} to {hi:+.3f})"
    if lo > 0:
        return f"{interval}: the interval lies above 0, an improvement"
    if hi < 0:
        return f"{interval}: the interval lies below 0, a loss"
    return f"{interval}: the interval includes 0, no significant change"


def paired_t_pvalue(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided one-sample t-test p-value of mean(diffs) = 0 (NaN with fewer than 2 values or no spread)."""
    from scipy.stats import ttest_1samp

    x = _vector(diffs, "diffs")
    if x.size < 2 or np.isclose(x.std(ddof=1), 0.0):
        return float("nan")
    return float(ttest_1samp(x, 0.0).pvalue)


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    known = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, np.nan)
    m = known.size
    running = 0.0
    for rank, i in enumerate(known[np.argsort(p[known], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def bootstrap_steps_to(curves: Sequence[tuple[Sequence[float], Sequence[float]]], base: float, target: float,
                       fraction: float = 1.0, confidence: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Steps for the seed-mean curve to reach base + fraction * (target - base), and a percentile bootstrap
    interval over seeds (seeds resampled with replacement). Curves are (steps, values) per seed on the same
    steps. A resample that never reaches the threshold counts as +inf, so an upper bound may be inf."""
    _check_confidence(confidence)
    steps = np.asarray(curves[0][0], dtype=float)
    values = np.array([np.asarray(v, dtype=float) for s, v in curves])
    if any(not np.array_equal(np.asarray(s, dtype=float), steps) for s, _ in curves):
        raise ValueError("every seed's curve must be evaluated at the same steps")

    def reach(rows: np.ndarray) -> float:
        found = steps_to_fraction(steps, values[rows].mean(axis=0), base, target, fraction)
        return np.inf if np.isnan(found) else found

    point = reach(np.arange(len(values)))
    rng = np.random.default_rng(seed)
    boots = np.array([reach(rng.integers(0, len(values), len(values))) for _ in range(n_boot)])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(point), float(lo), float(hi)
