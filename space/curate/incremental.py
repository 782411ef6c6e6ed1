"""Incremental data (beyond the paper): place new prompts in an existing curation without re-clustering.

New prompts are embedded and get their difficulty like the pool did, then pass through the pool's fitted
feature transform (space.curate.features.FeatureTransform) and join their nearest centroid (faiss exact search):

    f_new      = transform(e_new, d_new)
    cluster_i  = argmin_k ||f_i - mu_k||
    far_i      = ||f_i - mu_cluster_i|| > q-quantile of the distances of that cluster's pool members

Drift is the share of new prompts that are far from every centroid (far from their nearest one): a large
share says the clusters no longer describe the data and a re-curation is due.

    report = place_new_prompts(new_features, centroids, pool_features, pool_labels, quantile=0.95)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where each new prompt landed and how far from home it is."""

    labels: np.ndarray  # (M,) nearest centroid
    distances: np.ndarray  # (M,) Euclidean distance to it
    far: np.ndarray  # (M,) beyond that cluster's quantile of pool distances
    thresholds: np.ndarray  # (K,) the per-cluster distance quantile

    @property
    def drift(self) -> float:
        return float(self.far.mean()) if self.far.size else 0.0

    def per_cluster(self) -> list[dict[str, float | int]]:
        """Count of new prompts and far share per cluster (clusters that got none included)."""
        rows = []
        for k, threshold in enumerate(self.thresholds):
            members = self.labels == k
            rows.append({"cluster": k, "added": int(members.sum()), "threshold": float(threshold),
                         "far_share": float(self.far[members].mean()) if members.any() else 0.0})
        return rows


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, Euclidean distance) of each row's nearest centroid, exact (faiss IndexFlatL2)."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sq_dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64), np.sqrt(np.maximum(sq_dist[:, 0], 0.0))


def cluster_thresholds(pool_features: np.ndarray, pool_labels: np.ndarray, centroids: np.ndarray,
                       quantile: float) -> np.ndarray:
    """Per cluster: the `quantile` of its pool members' distances to its centroid."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile={quantile} must lie in (0, 1]")
    dist = np.linalg.norm(pool_features.astype(np.float64) - centroids[pool_labels], axis=1)
    out = np.zeros(centroids.shape[0])
    for k in range(centroids.shape[0]):
        members = dist[pool_labels == k]
        if members.size == 0:
            raise ValueError(f"cluster {k} has no pool member: the clustering does not match its centroids")
        out[k] = np.quantile(members, quantile)
    return out


def place_new_prompts(new_features: np.ndarray, centroids: np.ndarray, pool_features: np.ndarray,
                      pool_labels: np.ndarray, quantile: float = 0.95) -> Placement:
    """Assign new prompts (already in the pool's feature space) to the existing clusters and flag drift."""
    if new_features.ndim != 2 or new_features.shape[1] != centroids.shape[1]:
        raise ValueError(f"new features of shape {new_features.shape} do not match centroids of dimension "
                         f"{centroids.shape[1]}")
    thresholds = cluster_thresholds(pool_features, pool_labels, centroids, quantile)
    labels, distances = nearest_centroid(new_features, centroids)
    return Placement(labels, distances, distances > thresholds[labels], thresholds)
