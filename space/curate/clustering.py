"""k-means over the curation features (method.md 2.4), with faiss.

Euclidean k-means on f with K clusters and a fixed seed. Project rules: K <= N (ValueError otherwise); faiss
trains on every point up to K x `train_points_per_cluster` points (4,096 per cluster by default: faiss's own
per-centroid subsampling cap, 256 in faiss, is raised to that: docs/libraries.md, faiss), and on faiss's
seeded sample of that many beyond, while every point is still assigned to its nearest centroid. Clusters left empty
are dropped and labels re-indexed 0..K'-1, so arms = non-empty clusters. faiss runs on GPU when its build sees
one, else on CPU.

    labels, centroids, info = cluster_features(features, ClusterConfig(num_clusters=4))
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from space.seeding import derive_seed

INIT_METHODS = ("random", "kmeans++")


class ClusterConfig(BaseModel):
    """k-means settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_clusters: int = Field(
        4, ge=1, description="K, the number of k-means clusters (bandit arms before dropping empties)."
    )
    niter: int = Field(25, ge=1, description="k-means iterations.")
    seed: int | None = Field(
        None, ge=0, description="Seed of the k-means initialisation. None = derived from the recipe seed "
        "(Recipe.resolved: derive_seed(seed, 'kmeans')), so each run seed re-draws the initialisation; outside a "
        "recipe, from seed 0."
    )
    nredo: int = Field(
        5,
        ge=1,
        description="Independent k-means runs (faiss seeds each from `seed`); the lowest objective is kept. One run "
        "often stops in a local minimum that merges two natural groups and splits another.",
    )
    init: Literal["random", "kmeans++"] = Field(
        "kmeans++", description="Centroid initialisation: faiss's uniform random sample or k-means++ (D^2 sampling)."
    )
    train_points_per_cluster: int | None = Field(
        4096, ge=1, description="Train k-means on at most K x this many points (faiss's seeded sample beyond "
        "that; every point is still assigned). None = train on all N points whatever N."
    )
    use_gpu: Literal["auto", "yes", "no"] = Field(
        "auto", description="'auto': GPU when faiss has GPU support and sees a GPU; 'yes' requires one; 'no': CPU."
    )


def kmeans_seed(cfg: ClusterConfig, run_seed: int = 0) -> int:
    """cfg.seed when set, else the one derived from the run seed (0 when used outside a recipe)."""
    return cfg.seed if cfg.seed is not None else derive_seed(run_seed, "kmeans")


def faiss_has_gpu() -> bool:
    """Portable test (docs/libraries.md, faiss): CPU builds lack StandardGpuResources, GPU builds may see 0 GPUs."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_gpu(use_gpu: str) -> bool:
    """Whether to run faiss on GPU for this config."""
    if use_gpu == "no":
        return False
    has_gpu = faiss_has_gpu()
    if use_gpu == "yes" and not has_gpu:
        raise RuntimeError("use_gpu='yes' but faiss has no GPU support or sees no GPU")
    return has_gpu


def check_pool(n: int, num_clusters: int) -> None:
    """K must not exceed the pool size N (faiss itself would raise a RuntimeError)."""
    if n == 0:
        raise ValueError(f"cannot cluster an empty pool into num_clusters={num_clusters}")
    if num_clusters > n:
        raise ValueError(
            f"num_clusters={num_clusters} exceeds the pool size N={n}: k-means needs at least one prompt per "
            "cluster; lower num_clusters or use a larger pool"
        )


def train_kmeans(x: np.ndarray, cfg: ClusterConfig, gpu: bool) -> Any:
    """Train faiss.Kmeans on x (float32, C-contiguous): on every point, or on faiss's seeded sample of
    K x cfg.train_points_per_cluster points when that is set and smaller than N."""
    import faiss

    n, d = x.shape
    init = {
        "random": faiss.ClusteringInitMethod_RANDOM,
        "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
    }[cfg.init]
    km = faiss.Kmeans(
        d,
        cfg.num_clusters,
        niter=cfg.niter,
        nredo=cfg.nredo,
        seed=kmeans_seed(cfg),
        init_method=init,
        spherical=False,
        gpu=gpu,
        verbose=False,
        max_points_per_centroid=cfg.train_points_per_cluster or max(256, math.ceil(n / cfg.num_clusters)),
        min_points_per_centroid=1,  # small pools are expected; silence faiss's warning
    )
    km.train(x)
    return km


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (squared L2) per row, exact; ties go to the lower centroid index."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(x, 1)
    return idx[:, 0].astype(np.int64), dist[:, 0]


def drop_empty(labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove clusters with no member and re-index labels 0..K'-1 in the old order."""
    sizes = np.bincount(labels, minlength=centroids.shape[0])
    keep = np.flatnonzero(sizes > 0)
    remap = np.full(centroids.shape[0], -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    return remap[labels], centroids[keep], int(centroids.shape[0] - keep.size)


def cluster_features(features: np.ndarray, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """k-means on features (N, d): (labels int64 (N,) in 0..K'-1, centroids float32 (K', d), info).

    Info: requested and final K, dropped empty clusters, sizes, objective (sum of squared distances), gpu.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(
            f"features contain NaN or inf at rows {np.flatnonzero(~np.isfinite(x).all(axis=1))[:5].tolist()}"
        )
    check_pool(x.shape[0], cfg.num_clusters)
    gpu = resolve_gpu(cfg.use_gpu)
    km = train_kmeans(x, cfg, gpu)
    labels, sq_dist = assign(x, km.centroids)
    labels, centroids, dropped = drop_empty(labels, km.centroids)
    info = {
        "num_clusters_requested": cfg.num_clusters,
        "num_clusters": int(centroids.shape[0]),
        "dropped_empty": dropped,
        "sizes": np.bincount(labels).tolist(),
        "objective": float(sq_dist.astype(np.float64).sum()),
        "gpu": gpu,
        "trained_on": min(x.shape[0], cfg.num_clusters * (cfg.train_points_per_cluster or x.shape[0])),
    }
    return labels, centroids.astype(np.float32), info
