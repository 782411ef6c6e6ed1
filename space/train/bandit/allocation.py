"""Allocation arithmetic shared by the bandit policies: i.i.d. and apportioned slot draws, the floor, the share cap,
tie-breaking, softmax, and the standard error behind noise-aware learning progress (docs/method.md 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def draw_slots(p: np.ndarray, slots: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `slots` arm ids i.i.d. from Categorical(p); arms with p = 0 are never drawn."""
    p = np.asarray(p, dtype=float)
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"p must be a probability vector, got {p}")
    return rng.choice(len(p), size=slots, p=p / p.sum()).astype(np.int64)


def argmax_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of a (rows, K) array, ties broken uniformly at random (clipping makes ties common)."""
    best = scores == scores.max(axis=1, keepdims=True)
    return np.argmax(best * (1.0 + rng.random(scores.shape)), axis=1)


def apply_floor(p: np.ndarray, floor: float) -> np.ndarray:
    """Exploration floor: p <- (1 - eps) p + eps / K."""
    return (1.0 - floor) * p + floor / len(p)


def cap_shares(p: np.ndarray, cap: float) -> np.ndarray:
    """p with no entry above `cap`: the excess of capped arms goes to the others in proportion to their p
    (equally where all of them are 0), repeated until nothing exceeds the cap. Needs cap * K >= 1."""
    p = np.asarray(p, dtype=float).copy()
    if cap * len(p) < 1.0 - 1e-9:
        raise ValueError(f"max_share {cap} x {len(p)} arms < 1: the shares cannot sum to 1")
    for _ in range(len(p)):
        over = p > cap + 1e-12
        if not over.any():
            break
        excess = float((p[over] - cap).sum())
        p[over] = cap
        room = ~over & (p < cap - 1e-12)
        weights = p[room] if p[room].sum() > 0 else np.ones(int(room.sum()))
        p[room] += excess * weights / weights.sum()
    return p / p.sum()


def apportion_slots(p: np.ndarray, slots: int, rng: np.random.Generator) -> np.ndarray:
    """`slots` arm ids whose counts follow p exactly (floor(p * M), the remainder to the largest fractional
    parts, ties at random), in random order."""
    quota = np.asarray(p, dtype=float) * slots
    counts = np.floor(quota + 1e-9).astype(np.int64)
    rest = slots - int(counts.sum())
    if rest > 0:
        frac = quota - counts + 1e-9 * rng.random(len(quota))
        counts[np.argsort(-frac, kind="stable")[:rest]] += 1
    return rng.permutation(np.repeat(np.arange(len(quota)), counts)).astype(np.int64)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def window_difference_se(rates: Sequence[float], rollouts: Sequence[float]) -> float:
    """Standard error of mean(recent half) - mean(older half) of per-epoch solve rates, each binomial over its
    rollout count (rates shrunk towards 1/2 by one pseudo-rollout so 0 and 1 still carry variance); inf when a
    count is unknown (0)."""
    w = len(rates) // 2
    n = np.asarray(rollouts, dtype=float)
    if np.any(n <= 0):
        return math.inf
    s = (np.asarray(rates, dtype=float) * n + 0.5) / (n + 1.0)
    var = s * (1.0 - s) / n
    return float(np.sqrt(var[:w].sum() + var[w:].sum()) / w)
