"""Clustering features (method.md 2.3): a PCA block of unit total variance plus a weighted difficulty coordinate.

    z_i = PCA_p(e)_i                        fit on all N embeddings, p = min(pca_dims, min(N, dim) - 1)
    zhat_i = z_i / sqrt(sum_j lambda_j)     lambda_j explained variances: the block has unit total variance
    delta_i = (d_i - mean d) / (std d + 1e-8)
    f_i = [zhat_i ; w_d * delta_i]          float32 (N, p + 1)

Variances use the population convention (divide by N) for both the block and delta, so the difficulty
coordinate's share of the total feature variance is w_d^2 / (1 + w_d^2) (up to the 1e-8). w_d = 0 gives
semantic-only features; the last column is then all zeros. PCA is the eigendecomposition of the covariance
matrix, accumulated in float64 over chunks of rows (memory independent of N beyond the inputs and the
features), with a fixed sign convention (each component's largest-magnitude loading is positive), hence
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

STD_EPS = 1e-8


class FeatureConfig(BaseModel):
    """How embeddings and difficulty become clustering features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pca_dims: int = Field(
        32, ge=1, description="PCA components p kept from the embeddings (capped at min(N, dim) - 1)."
    )
    difficulty_weight: float = Field(
        1.0, ge=0.0, description="w_d: the difficulty coordinate carries w_d^2 / (1 + w_d^2) of the feature variance."
    )
    missing_difficulty: Literal["error", "mean"] = Field(
        "error",
        description="Null (NaN) difficulty, e.g. a prompt whose samples were all unjudged: 'error' raises naming the "
        "rows, 'mean' gives it the mean difficulty (delta = 0).",
    )


CHUNK_ROWS = 8_192  # rows converted to float64 at a time (25 MB at dim 384): memory O(chunk x dim + dim^2)


def _chunks(x: np.ndarray):
    for start in range(0, x.shape[0], CHUNK_ROWS):
        yield np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64)


def _pca_axes(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean (dim,), top-p variances, all min(N, dim) variances, top-p axes (p, dim)) from the covariance
    matrix, accumulated chunk by chunk (float64), so `x` may be a memory map of any length."""
    n = x.shape[0]
    mean = sum(chunk.sum(axis=0) for chunk in _chunks(x)) / n
    cov = sum((c := chunk - mean).T @ c for chunk in _chunks(x)) / n
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigenvalues)[::-1][: min(n, x.shape[1])]
    variances = np.clip(eigenvalues[order], 0.0, None)
    vt = eigenvectors[:, order].T
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    return mean, variances[:p], variances, vt[:p]


def project(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(x - mean) @ axes.T, chunk by chunk: float64 (N, p)."""
    return np.vstack([(chunk - mean) @ axes.T for chunk in _chunks(x)]) if x.shape[0] else np.zeros((0, len(axes)))


def capped_dims(n: int, dim: int, requested: int) -> int:
    """p = min(requested, min(N, dim) - 1); at least 1, else the pool is too small to reduce."""
    p = min(requested, min(n, dim) - 1)
    if p < 1:
        raise ValueError(f"cannot fit PCA on N={n} embeddings of dim {dim}: need N >= 2 and dim >= 2")
    return p


def standardize_difficulty(difficulty: np.ndarray | None, n: int, cfg: FeatureConfig) -> tuple[np.ndarray, int]:
    """delta = (d - mean) / (std + 1e-8) with population std; returns (delta, number of imputed nulls)."""
    if difficulty is None:
        if cfg.difficulty_weight != 0.0:
            raise ValueError(f"difficulty is None but difficulty_weight={cfg.difficulty_weight} (only 0 allows that)")
        return np.zeros(n), 0
    d = np.asarray(difficulty, dtype=np.float64).reshape(-1)
    if d.shape[0] != n:
        raise ValueError(f"difficulty has {d.shape[0]} values but embeddings have {n} rows")
    missing = np.isnan(d)
    if missing.all():
        raise ValueError("every difficulty value is null (NaN)")
    if missing.any() and cfg.missing_difficulty == "error":
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"difficulty is null (NaN) at {rows.size} rows (first: {rows[:5].tolist()}); drop them or set "
            "missing_difficulty='mean'"
        )
    d = np.where(missing, d[~missing].mean(), d)
    if np.ptp(d) == 0.0:  # constant difficulty carries no information (and float rounding of the mean is noise)
        return np.zeros(n), int(missing.sum())
    return (d - d.mean()) / (d.std() + STD_EPS), int(missing.sum())


@dataclass(frozen=True)
class FeatureTransform:
    """The fitted map e, d -> f: PCA mean and axes, block scale and difficulty standardisation.

    Saved beside the features so prompts added later land in the same feature space (space.curate.incremental).
    """

    mean: np.ndarray  # (dim,)
    axes: np.ndarray  # (p, dim)
    block_scale: float  # sqrt of the block's total variance (0: a zero block)
    d_mean: float
    d_std: float  # population std + 1e-8; 0 marks a constant (uninformative) difficulty
    weight: float

    def apply(self, embeddings: np.ndarray, difficulty: np.ndarray | None) -> np.ndarray:
        """Features of (new) prompts: [projected, whitened embeddings ; w_d * standardised difficulty]."""
        scores = project(np.asarray(embeddings), self.mean, self.axes)
        block = scores / self.block_scale if self.block_scale > 0 else np.zeros_like(scores)
        if difficulty is None or self.d_std == 0.0:
            delta = np.zeros(block.shape[0])
        else:
            d = np.asarray(difficulty, dtype=np.float64).reshape(-1)
            delta = (np.where(np.isnan(d), self.d_mean, d) - self.d_mean) / self.d_std
        return np.hstack([block, self.weight * delta[:, None]]).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for np.savez (read back with `from_arrays`)."""
        scalars = np.array([self.block_scale, self.d_mean, self.d_std, self.weight])
        return {"transform_mean": self.mean, "transform_axes": self.axes, "transform_scalars": scalars}

    @classmethod
    def from_arrays(cls, stored: Any) -> FeatureTransform:
        if "transform_axes" not in stored:
            raise KeyError("this features file has no fitted transform (written before transforms were saved); "
                           "re-run the features stage")
        scale, d_mean, d_std, weight = (float(v) for v in stored["transform_scalars"])
        return cls(stored["transform_mean"], stored["transform_axes"], scale, d_mean, d_std, weight)


def fit_transform(embeddings: np.ndarray, difficulty: np.ndarray | None, cfg: FeatureConfig
                  ) -> tuple[FeatureTransform, np.ndarray, dict[str, Any]]:
    """Fit PCA and the difficulty standardisation on the pool: (transform, pool features, info)."""
    emb = np.asarray(embeddings)  # a memory map stays a view of the file: no copy
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, dim), got shape {emb.shape}")
    n, dim = emb.shape
    p = capped_dims(n, dim, cfg.pca_dims)
    mean, variances, all_variances, axes = _pca_axes(emb, p)
    block_var = float(variances.sum())
    delta, imputed = standardize_difficulty(difficulty, n, cfg)
    d = None if difficulty is None else np.asarray(difficulty, dtype=np.float64).reshape(-1)
    informative = d is not None and bool(np.any(delta != 0.0))
    d_filled = None if d is None else np.where(np.isnan(d), np.nanmean(d), d)
    transform = FeatureTransform(
        mean=mean, axes=axes, block_scale=float(np.sqrt(block_var)) if block_var > 0 else 0.0,
        d_mean=float(d_filled.mean()) if informative else 0.0,
        d_std=float(d_filled.std() + STD_EPS) if informative else 0.0, weight=cfg.difficulty_weight)
    block = project(emb, mean, axes) / transform.block_scale if transform.block_scale > 0 else np.zeros((n, p))
    features = np.hstack([block, cfg.difficulty_weight * delta[:, None]]).astype(np.float32)
    return transform, features, _info(features, variances, all_variances, p, cfg, imputed, n, dim)


def build_features(
    embeddings: np.ndarray, difficulty: np.ndarray | None, cfg: FeatureConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """f = [PCA block of unit total variance ; w_d * standardised difficulty]: float32 (N, p + 1), plus info.

    `difficulty` may be None only when difficulty_weight is 0. Info holds p, the explained variances and ratios,
    and the realised variance share of the difficulty coordinate.
    """
    _, features, info = fit_transform(embeddings, difficulty, cfg)
    return features, info


def _info(features, variances, all_variances, p, cfg, imputed, n, dim) -> dict[str, Any]:
    block_var = float(variances.sum())
    col_var = features.astype(np.float64).var(axis=0)
    total_var = float(all_variances.sum())
    return {
        "pca_dims": p,
        "pca_dims_requested": cfg.pca_dims,
        "explained_variance": variances.tolist(),
        "explained_variance_ratio": (variances / total_var).tolist() if total_var > 0 else [0.0] * p,
        "explained_variance_ratio_sum": float(block_var / total_var) if total_var > 0 else 0.0,
        "difficulty_weight": cfg.difficulty_weight,
        "difficulty_share": float(col_var[-1] / col_var.sum()) if col_var.sum() > 0 else 0.0,
        "difficulty_imputed": imputed,
        "n": n,
        "embedding_dim": dim,
    }
