"""Cheap difficulty (beyond the paper): measure a seeded fraction of the pool, predict the rest.

Difficulty from rollouts costs k samples per prompt, the dearest stage of curation. `source: propagate`
draws the k rollouts for a fraction f of the pool only, chosen stratified by embedding cluster so every
region of the pool is measured, and predicts every other prompt's difficulty from its nearest measured
neighbours in embedding space (faiss exact kNN on the unit embeddings, weights falling with distance):

    strata     = k-means(e, S)                                   (faiss, seeded, best of 5)
    measured   = ceil(f * |stratum|) prompts drawn per stratum   (numpy, seeded)
    d_i        = sum_j w_ij d_j / sum_j w_ij  over the n nearest measured j,  w_ij = 1 / (||e_i - e_j|| + eps)

A measured prompt keeps its measured value; a measured prompt whose samples could not be judged (null
difficulty) is not used as a neighbour. Which prompts were measured is recorded per row.

    mask = choose_measured(embeddings, fraction=0.2, strata=16, seed=0)
    predicted = propagate(embeddings, mask, measured_difficulty, neighbours=8)
"""

from __future__ import annotations

import math

import numpy as np

from space.seeding import derive_rng

EPS = 1e-6


def _stratum_labels(embeddings: np.ndarray, strata: int, seed: int) -> np.ndarray:
    """k-means labels of the embeddings in min(strata, N) groups (faiss, seeded, trained on every point)."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    k = max(1, min(strata, x.shape[0]))
    km = faiss.Kmeans(x.shape[1], k, niter=20, nredo=5, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=max(256, math.ceil(x.shape[0] / k)))
    km.train(x)
    _, labels = km.index.search(x, 1)
    return labels[:, 0].astype(np.int64)


def choose_measured(embeddings: np.ndarray, fraction: float, strata: int, seed: int) -> np.ndarray:
    """Boolean mask of the prompts to roll out: ceil(fraction * size) drawn without replacement per stratum."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"measure_fraction={fraction} must lie in (0, 1]")
    n = embeddings.shape[0]
    if n == 0:
        raise ValueError("cannot choose prompts to measure from an empty pool")
    if fraction == 1.0:
        return np.ones(n, dtype=bool)
    labels = _stratum_labels(embeddings, strata, seed)
    rng = derive_rng(seed, "propagate-measured")
    mask = np.zeros(n, dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = min(members.size, math.ceil(fraction * members.size))
        mask[rng.choice(members, size=take, replace=False)] = True
    return mask


def propagate(embeddings: np.ndarray, measured: np.ndarray, difficulty: np.ndarray, neighbours: int) -> np.ndarray:
    """Difficulty for every row: measured rows keep theirs, the others get the distance-weighted kNN mean.

    `difficulty` is aligned to the rows and read only where `measured` is true (NaN there = not judged,
    left out of the neighbours). Raises when no measured row has a difficulty to propagate.
    """
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if measured.shape != (x.shape[0],) or difficulty.shape != (x.shape[0],):
        raise ValueError(f"measured {measured.shape} and difficulty {difficulty.shape} must both be ({x.shape[0]},)")
    sources = np.flatnonzero(measured & ~np.isnan(difficulty))
    if sources.size == 0:
        raise ValueError("no measured prompt has a judged difficulty: nothing to propagate from")
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x[sources])
    targets = np.flatnonzero(~measured)
    out = np.where(measured, difficulty, np.nan)
    if targets.size:
        sq_dist, nearest = index.search(x[targets], min(neighbours, sources.size))
        weights = 1.0 / (np.sqrt(np.maximum(sq_dist, 0.0)) + EPS)
        out[targets] = (weights * difficulty[sources][nearest]).sum(axis=1) / weights.sum(axis=1)
    return out


def propagated_table(prompt_ids: list[str], embeddings: np.ndarray, measured: np.ndarray, measured_rows,
                     neighbours: int):
    """The per-prompt difficulty table of the whole pool from the measured prompts' table.

    `measured_rows` is `space.curate.difficulty.estimate_difficulty`'s per-prompt table for the prompts flagged in
    `measured` (same ids); the result has its schema plus a boolean `measured` column. Unmeasured rows have
    null successes, k and solve_rate and a predicted difficulty.
    """
    import polars as pl

    lookup = dict(zip(measured_rows["prompt_id"].to_list(), measured_rows["difficulty"].to_list()))
    wanted = [pid for pid, flag in zip(prompt_ids, measured) if flag]
    missing = [pid for pid in wanted if pid not in lookup]
    if missing:
        raise KeyError(f"measured prompts without a difficulty row: {missing[:5]}")
    d = np.array([np.nan if not flag or lookup[pid] is None else lookup[pid]
                  for pid, flag in zip(prompt_ids, measured)], dtype=np.float64)
    predicted = propagate(embeddings, measured, d, neighbours)
    base = pl.DataFrame({"prompt_id": prompt_ids, "measured": measured.astype(bool)})
    table = base.join(measured_rows.drop("difficulty"), on="prompt_id", how="left", validate="1:1")
    return table.with_columns(pl.Series("difficulty", predicted, dtype=pl.Float64, nan_to_null=True)).select(
        *measured_rows.columns, "measured")
