"""Placing new prompts in existing clusters: nearest centroid, per-cluster distance quantiles, drift."""

from __future__ import annotations

import numpy as np
import pytest

from space.curate.incremental import cluster_thresholds, place_new_prompts

CENTROIDS = np.array([[0.0, 0.0], [10.0, 0.0]], dtype=np.float32)
# cluster 0 members at distances 1, 2, 3, 4 from (0, 0); cluster 1 members at 1 and 1 from (10, 0)
POOL = np.array([[1, 0], [0, 2], [-3, 0], [0, -4], [11, 0], [9, 0]], dtype=np.float32)
LABELS = np.array([0, 0, 0, 0, 1, 1])


def test_thresholds_are_quantiles_of_member_distances():
    assert cluster_thresholds(POOL, LABELS, CENTROIDS, 1.0).tolist() == [4.0, 1.0]
    assert cluster_thresholds(POOL, LABELS, CENTROIDS, 0.5).tolist() == [2.5, 1.0]
    with pytest.raises(ValueError, match="quantile"):
        cluster_thresholds(POOL, LABELS, CENTROIDS, 0.0)


def test_new_prompts_join_their_nearest_cluster_and_far_ones_count_as_drift():
    new = np.array([[0.5, 0.5], [9.5, 0.0], [0.0, 4.5], [10.0, 3.0]], dtype=np.float32)
    placed = place_new_prompts(new, CENTROIDS, POOL, LABELS, quantile=1.0)
    assert placed.labels.tolist() == [0, 1, 0, 1]
    assert placed.distances == pytest.approx([np.sqrt(0.5), 0.5, 4.5, 3.0])
    assert placed.far.tolist() == [False, False, True, True]  # beyond 4 (cluster 0) and beyond 1 (cluster 1)
    assert placed.drift == 0.5
    assert placed.per_cluster() == [{"cluster": 0, "added": 2, "threshold": 4.0, "far_share": 0.5},
                                    {"cluster": 1, "added": 2, "threshold": 1.0, "far_share": 0.5}]


def test_dimension_mismatch_and_empty_cluster_raise():
    with pytest.raises(ValueError, match="do not match centroids"):
        place_new_prompts(np.zeros((1, 3), dtype=np.float32), CENTROIDS, POOL, LABELS)
    with pytest.raises(ValueError, match="cluster 1 has no pool member"):
        cluster_thresholds(POOL[:4], LABELS[:4], CENTROIDS, 0.9)
