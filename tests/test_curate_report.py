"""The curation record's metrics: what reaches MLflow from the stage manifests."""

from __future__ import annotations

import math

from tasks.curate_report import curation_metrics


def _stages(calibration: dict[str, float]) -> dict[str, dict]:
    clusters = [{"cluster": 0, "size": 3, "mean_difficulty": 0.5, "truncated_share": 0.0},
                {"cluster": 1, "size": 2, "mean_difficulty": None, "truncated_share": None}]
    return {
        "data": {"pool": {"report": {"data/pool_rows": 5, "bad_rows": []}}, "seconds": 1.0},
        "difficulty": {"summary": {"mean": 0.4}, "calibration": calibration, "seconds": 2.0},
        "cluster": {"num_clusters": 2, "seconds": 3.0},
        "select": {"pool": 5, "selected": 4, "clusters": clusters, "seconds": 4.0},
    }


def test_curation_metrics_drop_a_nan_calibration_value_and_keep_the_finite_ones():
    metrics = curation_metrics(_stages({"intercept": 0.2, "knn": 0.7, "r2": math.nan}))
    assert metrics["difficulty/calibration_intercept"] == 0.2
    assert metrics["difficulty/calibration_knn"] == 0.7
    assert "difficulty/calibration_r2" not in metrics


def test_curation_metrics_report_clusters_without_a_difficulty_by_size_only():
    metrics = curation_metrics(_stages({}))
    assert metrics["curate/cluster_00/mean_difficulty"] == 0.5
    assert metrics["curate/cluster_01/size"] == 2
    assert "curate/cluster_01/mean_difficulty" not in metrics
    assert metrics["curate/selected"] == 4 and metrics["seconds/select"] == 4.0
    assert "bad_rows" not in " ".join(metrics)
