"""Scale-out on Ray (recipe `runner: ray`): the `ray` recipe section, content-addressed shards of a pool, and the
Ray Data actors that keep the embedding model / rollout engine warm across the batches of a shard.

The pool is cut into consecutive shards of `shard_size` prompts in pool order; a shard's digest hashes its prompt
ids and texts, so editing one prompt changes one shard's key. Inside a shard, `embed_on_actors` and
`generate_on_actors` stream batches through `ray.data` `map_batches` with a callable class (`EmbedBatches` holds
a sentence-transformers model, `RolloutBatches` a rollout engine from `space.engines`, i.e. `vllm.LLM` when
engine.kind resolves to vllm): the model loads once per actor, not per batch. Per-prompt seeds come from prompt
ids (space/engines), so which batch or shard a prompt lands in does not change its samples.

Ray is imported inside the functions that need it: importing this module loads neither ray nor torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class RayResources(BaseModel):
    """Ray resources one task or actor reserves (`num_gpus: 1` for a GPU actor on a GPU cluster)."""

    model_config = _FROZEN

    num_cpus: float = Field(1.0, ge=0.0, description="CPUs reserved")
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs reserved")


class RayConfig(BaseModel):
    """How curation fans out when `runner: ray` (ignored with `runner: local`)."""

    model_config = _FROZEN

    address: str | None = Field(
        None, description="None: start a local Ray cluster for the run; 'auto' or 'ray://head:10001': join one")
    num_cpus: int | None = Field(None, gt=0, description="local cluster only: CPUs it offers (None: all)")
    object_store_memory_mib: int | None = Field(
        None, gt=0, description="local cluster only: object store size in MiB (None: Ray's default, 30% of RAM)")
    temp_dir: str | None = Field(None, description="local cluster only: Ray's session/log folder (None: /tmp/ray)")
    shard_size: int = Field(
        20_000, gt=0, description="prompts per shard; one cached Prefect task per shard (10-50k on a real cluster: "
        "each task pays a model/engine start)")
    batch_size: int = Field(64, gt=0, description="prompts per batch handed to an actor")
    actors_per_shard: int = Field(1, gt=0, description="actors (warm models) working on one shard's batches")
    shard_task: RayResources = Field(
        default_factory=lambda: RayResources(num_cpus=0.0),
        description="what the Prefect task coordinating a shard reserves (it only reads, writes and waits)")
    embed_actor: RayResources = Field(default_factory=RayResources, description="per embedding actor")
    rollout_actor: RayResources = Field(default_factory=RayResources, description="per rollout-engine actor")
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for every Ray worker (runtime_env); logged "
        "with the recipe, so no secrets here")


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of the pool, and the digest of their ids and texts."""

    index: int
    start: int
    stop: int
    digest: str


def shard_digest(prompt_ids: list[str], texts: list[str]) -> str:
    """sha256 (16 hex digits) of a shard's prompt ids and texts, in order."""
    payload = json.dumps([list(map(str, prompt_ids)), list(map(str, texts))], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan_shards(prompt_ids: list[str], texts: list[str], shard_size: int) -> list[Shard]:
    """Consecutive shards of at most `shard_size` rows covering the pool in order."""
    if len(prompt_ids) != len(texts):
        raise ValueError(f"{len(prompt_ids)} prompt ids but {len(texts)} texts")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [Shard(i, start, min(start + shard_size, len(prompt_ids)),
                  shard_digest(prompt_ids[start:start + shard_size], texts[start:start + shard_size]))
            for i, start in enumerate(range(0, len(prompt_ids), shard_size))]


def init_kwargs(cfg: RayConfig, env_vars: dict[str, str]) -> dict[str, Any]:
    """`ray.init` keyword arguments: the workers' environment, plus the local cluster's size when starting one."""
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": {**env_vars, **cfg.env_vars}}, "log_to_driver": False}
    if cfg.address is None:
        kwargs["include_dashboard"] = False
        if cfg.num_cpus is not None:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mib is not None:
            kwargs["object_store_memory"] = cfg.object_store_memory_mib * 2**20
        if cfg.temp_dir is not None:
            kwargs["_temp_dir"] = cfg.temp_dir
    return kwargs


class EmbedBatches:
    """Ray Data callable class: loads the embedder once, embeds each batch's `question` column."""

    def __init__(self, cfg_json: str):
        from space.curate.embedding import EmbeddingConfig, load_embedder

        self.cfg = EmbeddingConfig.model_validate_json(cfg_json)
        self.embedder = load_embedder(self.cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from space.curate.embedding import embed_texts

        vectors = embed_texts(self.embedder, [str(t) for t in batch["question"]], self.cfg.batch_size,
                              normalize=self.cfg.normalize)
        return {"row": batch["row"], "embedding": list(vectors)}


class RolloutBatches:
    """Ray Data callable class: starts the rollout engine once, draws n completions per prompt of each batch."""

    def __init__(self, engine_json: str, model_dir: str, sampling: dict[str, Any]):
        from space.engines import EngineConfig, make_engine

        self.engine = make_engine(EngineConfig.model_validate_json(engine_json), model_dir)
        self.sampling = sampling  # n, temperature, max_tokens, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prompts, ids = [str(p) for p in batch["prompt"]], [str(i) for i in batch["prompt_id"]]
        groups = self.engine.generate(prompts, prompt_ids=ids, **self.sampling)
        return {"row": batch["row"],
                "texts": [[c.text for c in group] for group in groups],
                "num_tokens": [[c.num_tokens for c in group] for group in groups],
                "finish_reasons": [[c.finish_reason for c in group] for group in groups]}

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def _run_on_actors(columns: dict[str, list[Any]], actor: type, constructor: dict[str, Any], cfg: RayConfig,
                   resources: RayResources) -> list[dict[str, Any]]:
    """Stream `columns` (plus a `row` index) through `actor` on Ray Data; output rows back in input order."""
    import ray.data

    n = len(next(iter(columns.values())))
    items = [{"row": i, **{name: values[i] for name, values in columns.items()}} for i in range(n)]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-n // cfg.batch_size)))
    mapped = dataset.map_batches(actor, fn_constructor_kwargs=constructor, batch_size=cfg.batch_size,
                                 compute=ray.data.ActorPoolStrategy(size=cfg.actors_per_shard),
                                 num_cpus=resources.num_cpus,
                                 num_gpus=resources.num_gpus or None, batch_format="numpy")
    rows = sorted(mapped.take_all(), key=lambda row: int(row["row"]))
    if [int(r["row"]) for r in rows] != list(range(n)):
        raise RuntimeError(f"Ray Data returned {len(rows)} rows for {n} inputs")
    return rows


def embed_on_actors(questions: list[str], embedding_json: str, cfg: RayConfig) -> np.ndarray:
    """Embeddings (float32, N x d) of `questions`, in order, computed on warm Ray Data actors."""
    rows = _run_on_actors({"question": questions}, EmbedBatches, {"cfg_json": embedding_json}, cfg, cfg.embed_actor)
    return np.ascontiguousarray(np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in rows]))


def generate_on_actors(prompt_ids: list[str], prompts: list[str], engine_json: str, model_dir: str,
                       sampling: dict[str, Any], cfg: RayConfig) -> list[list[Any]]:
    """n completions per prompt (space.engines.Completion), in order, drawn on warm Ray Data actors."""
    from space.engines import Completion

    constructor = {"engine_json": engine_json, "model_dir": model_dir, "sampling": sampling}
    rows = _run_on_actors({"prompt_id": prompt_ids, "prompt": prompts}, RolloutBatches, constructor, cfg,
                          cfg.rollout_actor)
    return [[Completion(str(t), int(k), str(f)) for t, k, f in zip(r["texts"], r["num_tokens"], r["finish_reasons"])]
            for r in rows]


def replay(groups_by_id: dict[str, list[Any]]):
    """A `generate_fn` that hands back completions drawn earlier (on actors) for the prompt ids it is asked for."""
    def generate(prompts: list[str], n: int, prompt_ids: list[str], **_: Any) -> list[list[Any]]:
        out = [groups_by_id[str(pid)] for pid in prompt_ids]
        if any(len(group) != n for group in out):
            raise ValueError(f"replayed groups do not all hold n={n} completions")
        return out

    return generate
