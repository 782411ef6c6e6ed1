"""Tasks of `space curate --add FILE`: load the new prompts, then place them in the existing clusters.

Embedding and difficulty reuse the curation tasks (content-addressed, so a re-run is a cache hit); placing
uses the fitted feature transform and the centroids the curation stored (space.curate.incremental).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
from prefect import task

from space.data.sources import DataConfig
from tasks.common import CACHED, file_sha256, open_stage, write_manifest
from tasks.stages import STAGE_OPTIONS


@task(**STAGE_OPTIONS, name="load-additions", cache_policy=CACHED, persist_result=True)
def load_additions(data: DataConfig, file_sha: str, pool: dict[str, Any]) -> dict[str, Any]:
    """The new file as a normalised table, minus prompts already in the pool (counted)."""
    from space.data.sources import load_split

    out, done, _ = open_stage("additions-data", data, file_sha, pool["sha"])
    if done is not None:
        return done
    table, report = load_split(data, "pool")
    known = set(pl.read_parquet(pool["path"], columns=["prompt_id"])["prompt_id"].to_list())
    fresh = table.filter(~pl.col("prompt_id").is_in(list(known)))
    if fresh.height == 0:
        raise ValueError(f"{data.path}: every one of its {table.height} prompts is already in the pool")
    fresh.write_parquet(out / "pool.parquet")
    return write_manifest(out, {"path": str(out / "pool.parquet"), "sha": file_sha256(out / "pool.parquet"),
                                "rows": fresh.height, "already_in_pool": table.height - fresh.height,
                                "report": {**report.as_metrics("data/add"), "bad_rows": report.bad_rows[:50]}})


@task(**STAGE_OPTIONS, name="place-additions", cache_policy=CACHED, persist_result=True)
def place_additions(additions: dict[str, Any], embedded: dict[str, Any], difficulty: dict[str, Any],
                    features: dict[str, Any], clusters: dict[str, Any], quantile: float) -> dict[str, Any]:
    """Nearest existing cluster for each new prompt, its distance and whether it is far (drift)."""
    from space.curate.difficulty import difficulty_array
    from space.curate.embedding import load_embeddings
    from space.curate.features import FeatureTransform
    from space.curate.incremental import place_new_prompts

    out, done, start = open_stage("place-additions", additions["sha"], embedded["sha"], difficulty["sha"],
                                  features["sha"], clusters["sha"], quantile)
    if done is not None:
        return done
    ids, vectors = load_embeddings(embedded["path"])
    stored, grouped = np.load(features["path"]), np.load(clusters["path"])
    new_features = FeatureTransform.from_arrays(stored).apply(
        vectors, difficulty_array(pl.read_parquet(difficulty["path"]), ids))
    placed = place_new_prompts(new_features, grouped["centroids"], stored["features"], grouped["labels"], quantile)
    table = pl.read_parquet(additions["path"]).join(
        pl.DataFrame({"prompt_id": ids, "cluster": placed.labels, "distance": placed.distances, "far": placed.far}),
        on="prompt_id", how="inner", validate="1:1").join(
        pl.read_parquet(difficulty["path"]), on="prompt_id", how="left", validate="1:1")
    table.write_parquet(out / "additions.parquet")
    return write_manifest(out, {"path": str(out / "additions.parquet"), "sha": file_sha256(out / "additions.parquet"),
                                "added": table.height, "drift": placed.drift, "quantile": quantile,
                                "clusters": placed.per_cluster(), "seconds": time.perf_counter() - start})


def additions_config(data: DataConfig, path: str) -> DataConfig:
    """The recipe's data settings pointed at one local file: its columns, format and bad-row policy."""
    return data.model_copy(update={"source": "hf", "path": path, "eval_path": None, "eval_split": None,
                                   "eval_fraction": None, "split": "train", "limit": None})


def file_digest(path: str) -> str:
    """Content hash of the new file (the cache key: the same name with new content is new data)."""
    from pathlib import Path

    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"--add {path}: no such file")
    return file_sha256(target)
