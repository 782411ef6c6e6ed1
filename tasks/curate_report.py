"""Curation reporting: Prefect artifacts (cluster table, markdown summary) and the MLflow record."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import tracking
from tasks.stages import STAGE_OPTIONS


def curation_metrics(stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Pool size, dropped rows, K, cluster sizes and mean difficulties, seconds per stage."""
    data, selected = stages["data"], stages["select"]
    metrics = {k: float(v) for k, v in data["pool"]["report"].items() if k != "bad_rows" and not isinstance(v, list)}
    metrics.update({"curate/pool_size": selected["pool"], "curate/selected": selected["selected"],
                    "curate/num_clusters": stages["cluster"]["num_clusters"]})
    for row in selected["clusters"]:
        arm = f"curate/cluster_{row['cluster']:02d}"
        metrics[f"{arm}/size"] = row["size"]
        if row["mean_difficulty"] is not None:
            metrics[f"{arm}/mean_difficulty"] = row["mean_difficulty"]
        if row["truncated_share"] is not None:
            metrics[f"{arm}/truncated_share"] = row["truncated_share"]
    for name, manifest in stages.items():
        metrics[f"seconds/{name}"] = float(manifest["seconds"])
    for key, value in (stages["difficulty"].get("summary") or {}).items():
        metrics[f"difficulty/{key}"] = float(value)
    for key, value in (stages["difficulty"].get("calibration") or {}).items():
        if math.isfinite(value):  # R^2 is NaN when every measured prompt had one difficulty
            metrics[f"difficulty/calibration_{key}"] = float(value)
    return metrics


def summary_markdown(recipe_name: str, stages: dict[str, dict[str, Any]]) -> str:
    selected = stages["select"]
    lines = [f"# Curation `{recipe_name}`", "",
             f"Kept **{selected['selected']}** of **{selected['pool']}** prompts in "
             f"**{stages['cluster']['num_clusters']}** clusters.", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {manifest['seconds']:.1f} |" for name, manifest in stages.items()]
    summary = stages["difficulty"].get("summary") or {}
    if summary:
        lines += ["", "Difficulty: " + ", ".join(f"{k} = {v:.3g}" for k, v in summary.items())]
    if calibration := stages["difficulty"].get("calibration"):
        lines += ["", "Unmeasured difficulty = clip(intercept + knn x kNN value + covariate x P(gold answer)): "
                  + ", ".join(f"{k} = {v:.3g}" for k, v in calibration.items())]
    return "\n".join(lines)


def curation_plots(stages: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    from space.analysis.plots import plot_difficulty_hist, plot_projection

    table = pl.read_parquet(stages["select"]["path"])
    stored = np.load(stages["features"]["path"])
    order = {pid: i for i, pid in enumerate(str(x) for x in stored["ids"])}
    rows = [order[pid] for pid in table["prompt_id"]]
    labels, selected = table["cluster"].to_numpy(), table["selected"].to_numpy()
    difficulty = table["difficulty"].fill_null(np.nan).to_numpy()
    return [plot_projection(stored["features"][rows], labels, selected, out / "projection.png"),
            plot_difficulty_hist(difficulty, labels, out / "difficulty_by_cluster.png")]


@task(**STAGE_OPTIONS, name="report-curation")
def report_curation(run_id: str, recipe_name: str, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Artifacts in Prefect and MLflow for a finished curation; returns the metrics it logged."""
    clusters = stages["select"]["clusters"]
    create_table_artifact(clusters, key="curation-clusters", description=f"Clusters of recipe {recipe_name}")
    create_markdown_artifact(summary_markdown(recipe_name, stages), key="curation-summary")
    metrics = curation_metrics(stages)
    tracking.log_metrics(run_id, metrics)
    out = Path(stages["select"]["path"]).parent
    with tempfile.TemporaryDirectory() as figures:  # never written into the finished stage folder
        tracking.log_files(run_id, [out / "curation.parquet", out / "reduced.parquet",
                                    *curation_plots(stages, Path(figures))], "curation")
    tracking.log_table(run_id, clusters, "curation/clusters.json")
    return metrics
