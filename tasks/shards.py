"""Curation's heavy stages as one cached Prefect task per pool shard (recipe `runner: ray`, flows/ray_curate.py).

A shard task runs inside a Ray worker (prefect-ray's RayTaskRunner), reads its rows of the pool, streams them
through warm Ray Data actors (space/scaleout.py) and writes a parquet shard under
SPACE_HOME/artifacts/<stage>-shard/<fingerprint of the shard digest, the stage config and the code>/. The runner
layout (shard size aside, which sets the digests) and Ray resources are not part of the folder's key. The
`combine_*` tasks concatenate the shards in pool order into the same files the local stages write
(embeddings.npy, difficulty.parquet, rollouts.parquet), so every later stage is unchanged. With
`difficulty.source: propagate` the difficulty shards cover only the measured rows (`measured_pool`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import task

from space.config import VerifierConfig
from space.curate.difficulty import DifficultyConfig
from space.curate.embedding import EmbeddingConfig
from space.engines import EngineConfig
from space.scaleout import RayConfig, shard_digest
from tasks.common import (CACHED, MANIFEST, file_problems, file_sha256, open_stage, open_stage_dir, stage_dir,
                          write_manifest)
from tasks.stages import STAGE_OPTIONS


def embed_shard_dir(shard: dict[str, Any], cfg: EmbeddingConfig) -> Path:
    """The folder of one embedding shard."""
    return stage_dir("embed-shard", shard["digest"], cfg)


def difficulty_shard_dir(shard: dict[str, Any], model: dict[str, Any], prompting: dict[str, Any],
                         verifier: VerifierConfig, cfg: DifficultyConfig, engine: EngineConfig, seed: int) -> Path:
    """The folder of one difficulty shard: keyed like the local difficulty stage, with the shard digest for the pool."""
    return stage_dir("difficulty-shard", shard["digest"], model["sha"], prompting["system_prompt"], verifier, cfg,
                     engine, seed, prompting["enable_thinking"])


def shard_intact(directory: Path) -> bool:
    """True when the shard folder holds a manifest whose files are all present and unchanged."""
    path = directory / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return "files" in manifest and not file_problems({**manifest, "dir": str(directory)})


def _shard_folder(shard: dict[str, Any]) -> Path:
    """The folder the flow chose for this shard (`*_shard_dir`, computed once, in the flow's process)."""
    out = Path(shard["out"])
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shard_rows(pool: dict[str, Any], shard: dict[str, Any]) -> pl.DataFrame:
    """The shard's rows of the pool; refuses a pool whose rows no longer match the shard's digest."""
    rows = pl.read_parquet(pool["path"]).slice(shard["start"], shard["stop"] - shard["start"])
    found = shard_digest(rows["prompt_id"].to_list(), rows["question"].to_list())
    if found != shard["digest"]:
        raise ValueError(f"{pool['path']}: rows {shard['start']}-{shard['stop']} (shard {shard['index']}) hash to "
                         f"{found}, the shard plan says {shard['digest']}")
    return rows


@task(**STAGE_OPTIONS, name="embed-shard", task_run_name="embed-shard-{shard[index]}", cache_policy=CACHED,
      persist_result=True)
def embed_shard(pool: dict[str, Any], shard: dict[str, Any], cfg: EmbeddingConfig, ray_cfg: RayConfig
                ) -> dict[str, Any]:
    """Embeddings of one shard's questions, computed on Ray Data actors, as shard.parquet in shard["out"]."""
    from space.scaleout import embed_on_actors

    out, done, start = open_stage_dir(_shard_folder(shard))
    if done is not None:
        return done
    rows = _shard_rows(pool, shard)
    vectors = embed_on_actors(rows["question"].to_list(), cfg.model_dump_json(), ray_cfg)
    table = pl.DataFrame({"prompt_id": rows["prompt_id"],
                          "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))})
    table.write_parquet(out / "shard.parquet")
    return write_manifest(out, {"path": str(out / "shard.parquet"), "sha": file_sha256(out / "shard.parquet"),
                                "rows": table.height, "digest": shard["digest"],
                                "seconds": time.perf_counter() - start})


@task(**STAGE_OPTIONS, name="difficulty-shard", task_run_name="difficulty-shard-{shard[index]}", cache_policy=CACHED,
      persist_result=True)
def difficulty_shard(pool: dict[str, Any], shard: dict[str, Any], model: dict[str, Any], prompting: dict[str, Any],
                     verifier: VerifierConfig, cfg: DifficultyConfig, engine: EngineConfig, seed: int,
                     ray_cfg: RayConfig) -> dict[str, Any]:
    """k reference rollouts per prompt of one shard, drawn on Ray Data actors, scored here: two parquet files."""
    from space.scaleout import generate_on_actors, replay
    from tasks.curate import difficulty_of, render_pool_prompts

    out, done, start = open_stage_dir(_shard_folder(shard))
    if done is not None:
        return done
    rows = _shard_rows(pool, shard)
    ids = rows["prompt_id"].to_list()
    prompts = render_pool_prompts(rows, model, prompting["system_prompt"], prompting["enable_thinking"])
    sampling = {"n": cfg.k, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": seed}
    groups = generate_on_actors(ids, prompts, engine.model_dump_json(), model["path"], sampling, ray_cfg)
    per_prompt, rollouts = difficulty_of(rows, prompts, replay(dict(zip(ids, groups))), verifier, cfg, seed)
    per_prompt.write_parquet(out / "difficulty.parquet")
    rollouts.write_parquet(out / "rollouts.parquet")
    return write_manifest(out, {"path": str(out / "difficulty.parquet"), "rollouts": str(out / "rollouts.parquet"),
                                "sha": file_sha256(out / "difficulty.parquet"), "rows": per_prompt.height,
                                "digest": shard["digest"], "seconds": time.perf_counter() - start})


@task(**STAGE_OPTIONS, name="measured-pool", cache_policy=CACHED, persist_result=True)
def measured_pool(pool: dict[str, Any], embedded: dict[str, Any], cfg: DifficultyConfig, seed: int
                  ) -> dict[str, Any]:
    """For `difficulty.source: propagate`: the pool's rows that get rollouts (the local stage's seeded choice,
    tasks.curate.measured_mask), in pool order, as a pool manifest the difficulty shards read."""
    from tasks.curate import measured_mask

    out, done, start = open_stage("measured-pool", pool["sha"], embedded["sha"], cfg.measure_fraction, cfg.strata,
                                  seed, inputs=(pool, embedded))
    if done is not None:
        return done
    table = pl.read_parquet(pool["path"])
    mask = measured_mask(table, embedded, cfg, seed)[2]
    table.filter(pl.Series(mask)).write_parquet(out / "pool.parquet")
    return write_manifest(out, {"path": str(out / "pool.parquet"), "sha": file_sha256(out / "pool.parquet"),
                                "rows": int(mask.sum()), "seconds": time.perf_counter() - start})


def _check_order(pool: dict[str, Any], ids: list[str], what: str) -> None:
    expected = pl.read_parquet(pool["path"], columns=["prompt_id"])["prompt_id"].to_list()
    if ids != expected:
        raise ValueError(f"{what}: the shards' prompt ids do not match the pool {pool['path']} in order")


def _shard_record(manifest: dict[str, Any], state: str) -> dict[str, Any]:
    return {"digest": manifest["digest"], "dir": manifest["dir"], "rows": manifest["rows"], "state": state}


@task(**STAGE_OPTIONS, name="combine-embed-shards")
def combine_embeddings(pool: dict[str, Any], shards: list[dict[str, Any]], states: list[str], cfg: EmbeddingConfig
                       ) -> dict[str, Any]:
    """The shards' embeddings in pool order as one embeddings.npy (the local embed stage's format)."""
    from space.curate.embedding import save_embeddings

    out = stage_dir("embed-sharded", pool["sha"], cfg, [s["digest"] for s in shards])
    start = time.perf_counter()
    table = pl.concat([pl.read_parquet(s["path"]) for s in shards])
    _check_order(pool, table["prompt_id"].to_list(), "embed")
    vectors = np.ascontiguousarray(table["embedding"].to_numpy(), dtype=np.float32)
    path = save_embeddings(out / "embeddings.npy", table["prompt_id"].to_list(), vectors)
    return write_manifest(out, {"path": str(path), "sha": file_sha256(path), "dim": int(vectors.shape[1]),
                                "seconds": time.perf_counter() - start + sum(s["seconds"] for s in shards),
                                "shards": [_shard_record(s, st) for s, st in zip(shards, states)]})


@task(**STAGE_OPTIONS, name="combine-difficulty-shards")
def combine_difficulty(pool: dict[str, Any], shards: list[dict[str, Any]], states: list[str],
                       cfg: DifficultyConfig) -> dict[str, Any]:
    """The shards' difficulty and rollout tables in pool order (the local difficulty stage's files)."""
    from space.curate.difficulty import summarize_difficulty

    out = stage_dir("difficulty-sharded", pool["sha"], cfg, [s["digest"] for s in shards])
    start = time.perf_counter()
    per_prompt = pl.concat([pl.read_parquet(s["path"]) for s in shards])
    _check_order(pool, per_prompt["prompt_id"].to_list(), "difficulty")
    per_prompt.write_parquet(out / "difficulty.parquet")
    pl.concat([pl.read_parquet(s["rollouts"]) for s in shards]).write_parquet(out / "rollouts.parquet")
    return write_manifest(out, {"path": str(out / "difficulty.parquet"), "sha": file_sha256(out / "difficulty.parquet"),
                                "rollouts": str(out / "rollouts.parquet"),
                                "summary": summarize_difficulty(per_prompt),
                                "seconds": time.perf_counter() - start + sum(s["seconds"] for s in shards),
                                "shards": [_shard_record(s, st) for s, st in zip(shards, states)]})
