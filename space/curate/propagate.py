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

With a covariate c (`predictor: knn+likelihood`: the reference model's probability of the gold answer,
space/curate/likelihood.py) the prediction is calibrated on the measured prompts instead of trusted:

    d_i = clip(b0 + b1 * knn_i + b2 * c_i, 0, 1),  b = least squares over the measured j, with knn_j its
                                                    leave-one-out kNN value (its own measurement left out)

so the fit weighs each signal by what it predicts on this pool and this model; the weights are reported.

    mask = choose_measured(embeddings, fraction=0.2, strata=16, seed=0)
    predicted = propagate(embeddings, mask, measured_difficulty, neighbours=8)
    predicted, weights = propagate_calibrated(embeddings, mask, measured_difficulty, 8, covariate=p_gold)
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
    targets = np.flatnonzero(~measured)
    out = np.where(measured, difficulty, np.nan)
    if targets.size:
        out[targets] = _knn_means(x, sources, difficulty[sources], targets, neighbours, leave_out_self=False)
    return out


def _knn_means(x: np.ndarray, sources: np.ndarray, values: np.ndarray, queries: np.ndarray, neighbours: int,
               leave_out_self: bool) -> np.ndarray:
    """Distance-weighted mean of `values` over each query's nearest sources (itself excluded if asked:
    queries are then rows of `sources`)."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x[sources])
    available = sources.size - int(leave_out_self)
    if available < 1:
        raise ValueError("leave-one-out kNN needs at least two measured prompts")
    take = min(neighbours, available)
    sq_dist, nearest = index.search(x[queries], take + int(leave_out_self))
    if leave_out_self:
        own = np.searchsorted(sources, queries)
        keep = nearest != own[:, None]
        keep[keep.sum(axis=1) > take, -1] = False  # self not among the hits: drop the farthest instead
        sq_dist, nearest = sq_dist[keep].reshape(-1, take), nearest[keep].reshape(-1, take)
    weights = 1.0 / (np.sqrt(np.maximum(sq_dist, 0.0)) + EPS)
    return (weights * values[nearest]).sum(axis=1) / weights.sum(axis=1)


def propagate_calibrated(embeddings: np.ndarray, measured: np.ndarray, difficulty: np.ndarray, neighbours: int,
                         covariate: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Difficulty for every row from a least-squares fit, on the measured rows, of their difficulty on their
    leave-one-out kNN value and `covariate`; measured rows keep theirs. Returns it and the fit's weights and R^2."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if covariate.shape != (x.shape[0],) or np.isnan(covariate).any():
        raise ValueError(f"covariate must be ({x.shape[0]},) and free of NaN, got {covariate.shape}")
    knn = propagate(x, measured, difficulty, neighbours)
    sources = np.flatnonzero(measured & ~np.isnan(difficulty))
    if sources.size < 4:
        raise ValueError(f"{sources.size} measured prompts with a judged difficulty: too few to calibrate on (>= 4)")
    knn[sources] = _knn_means(x, sources, difficulty[sources], sources, neighbours, leave_out_self=True)
    design = np.column_stack([np.ones(x.shape[0]), knn, covariate])
    coef, *_ = np.linalg.lstsq(design[sources], difficulty[sources], rcond=None)
    fitted = design[sources] @ coef
    spread = float(((difficulty[sources] - difficulty[sources].mean()) ** 2).sum())
    r2 = 1.0 - float(((difficulty[sources] - fitted) ** 2).sum()) / spread if spread > 0 else float("nan")
    out = np.where(measured, difficulty, np.clip(design @ coef, 0.0, 1.0))
    return out, {"intercept": float(coef[0]), "knn": float(coef[1]), "covariate": float(coef[2]), "r2": r2}


def propagated_table(prompt_ids: list[str], embeddings: np.ndarray, measured: np.ndarray, measured_rows,
                     neighbours: int, answer_logprob: np.ndarray | None = None):
    """The per-prompt difficulty table of the whole pool from the measured prompts' table, and the fit's weights
    (None without `answer_logprob`).

    `measured_rows` is `space.curate.difficulty.estimate_difficulty`'s per-prompt table for the prompts flagged in
    `measured` (same ids); the result has its schema plus a boolean `measured` column (and `answer_logprob`, the
    calibrated covariate's log, when given). Unmeasured rows have null successes, k and solve_rate and a
    predicted difficulty.
    """
    import polars as pl

    lookup = dict(zip(measured_rows["prompt_id"].to_list(), measured_rows["difficulty"].to_list()))
    wanted = [pid for pid, flag in zip(prompt_ids, measured) if flag]
    missing = [pid for pid in wanted if pid not in lookup]
    if missing:
        raise KeyError(f"measured prompts without a difficulty row: {missing[:5]}")
    d = np.array([np.nan if not flag or lookup[pid] is None else lookup[pid]
                  for pid, flag in zip(prompt_ids, measured)], dtype=np.float64)
    base = pl.DataFrame({"prompt_id": prompt_ids, "measured": measured.astype(bool)})
    if answer_logprob is None:
        predicted, fit, extra = propagate(embeddings, measured, d, neighbours), None, []
    else:
        predicted, fit = propagate_calibrated(embeddings, measured, d, neighbours, np.exp(answer_logprob))
        base = base.with_columns(pl.Series("answer_logprob", answer_logprob, dtype=pl.Float64))
        extra = ["answer_logprob"]
    table = base.join(measured_rows.drop("difficulty"), on="prompt_id", how="left", validate="1:1")
    table = table.with_columns(pl.Series("difficulty", predicted, dtype=pl.Float64, nan_to_null=True))
    return table.select(*measured_rows.columns, "measured", *extra), fit
