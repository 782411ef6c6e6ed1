"""Curation's heavy stages on Ray (recipe `runner: ray`): a subflow whose task runner is prefect-ray's RayTaskRunner.

The pool is planned into content-addressed shards (space/scaleout.py); the embedding shards and the difficulty
shards are mapped as cached Prefect tasks (tasks/shards.py) that run in Ray workers and drive warm Ray Data actors.
A shard whose folder is missing or damaged is mapped with `refresh_cache=True`, so a re-run recomputes exactly
the missing or changed shards and takes the others from Prefect's cache. Workers get PREFECT_API_URL (the
server this flow reports to, the ephemeral one included), SPACE_HOME and Prefect's storage paths through the
Ray runtime_env, so their task runs show up under this flow and their files land in the same SPACE_HOME (on a
multi-node cluster that folder must be shared storage).

With `difficulty.source: label`, difficulty runs as the local stage (no rollouts). With `propagate`, the measured
fraction is chosen from the combined embeddings (tasks/shards.py `measured_pool`), its rollouts are sharded like
the whole pool's, and the prediction for the rest runs as the local stage on them (the same files as a local run).
"""

# No `from __future__ import annotations`: Prefect builds flow parameter models from the real types.
import os
from typing import Any

from prefect import flow, unmapped

from space.config import Recipe
from space.scaleout import init_kwargs, plan_shards
from tasks import curate as stage
from tasks import shards as sharded

# what a Ray worker needs to report to the same Prefect server and write to the same SPACE_HOME
WORKER_ENV = ("SPACE_HOME", "PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "PREFECT_MEMO_STORE_PATH",
              "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_LEVEL", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE",
              "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "VLLM_CPU_KVCACHE_SPACE", "PYTHONPATH")


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: this process's Prefect API URL plus the variables of WORKER_ENV that are set."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url).rstrip("/")
    return {"PREFECT_API_URL": api_url, **{key: os.environ[key] for key in WORKER_ENV if key in os.environ}}


def heavy_stages_on_ray(pool: dict[str, Any], model: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """Run the ray subflow on the recipe's cluster (a local one when ray.address is None): embed and difficulty
    manifests in the local stages' format, each with a `shards` list (digest, folder, rows, Prefect state)."""
    from prefect_ray import RayTaskRunner

    runner = RayTaskRunner(address=recipe.ray.address, init_kwargs=init_kwargs(recipe.ray, worker_env()))
    return curate_on_ray.with_options(task_runner=runner)(pool, model, recipe)


def _plan(pool: dict[str, Any], shard_size: int) -> list[dict[str, Any]]:
    import polars as pl

    table = pl.read_parquet(pool["path"], columns=["prompt_id", "question"])
    return [vars(s) for s in plan_shards(table["prompt_id"].to_list(), table["question"].to_list(), shard_size)]


def _submit_shards(task: Any, shards: list[dict[str, Any]], resources: Any, **common: Any) -> list[Any]:
    """Map `task` over the shards, those whose folder (shard["out"]) is missing or damaged with refresh_cache:
    one future per shard, in order."""
    from pathlib import Path

    from prefect_ray.context import remote_options

    intact = [sharded.shard_intact(Path(shard["out"])) for shard in shards]
    fixed = {key: unmapped(value) for key, value in common.items()}
    futures: dict[int, Any] = {}
    with remote_options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus):
        for refresh in (True, False):
            chosen = [i for i, ok in enumerate(intact) if ok != refresh]
            if chosen:
                mapped = task.with_options(refresh_cache=refresh).map(shard=[shards[i] for i in chosen], **fixed)
                futures.update(zip(chosen, mapped))
    return [futures[i] for i in range(len(shards))]


def _gather(futures: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Wait for the shard tasks: (manifests, Prefect state names), in shard order."""
    results = [future.result() for future in futures]
    return results, [future.state.name for future in futures]


@flow(name="curate-on-ray", log_prints=True)
def curate_on_ray(pool: dict[str, Any], model: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """Embedding and difficulty rollouts of the pool (of its measured rows for source=propagate, none for
    source=label), one Prefect task per shard on Ray."""
    cfg, ray_cfg = recipe.curate, recipe.ray
    shards = _plan(pool, ray_cfg.shard_size)
    embed_shards = [{**s, "out": str(sharded.embed_shard_dir(s, cfg.embedding))} for s in shards]
    embed_futures = _submit_shards(sharded.embed_shard, embed_shards, ray_cfg.shard_task, pool=pool,
                                   cfg=cfg.embedding, ray_cfg=ray_cfg)
    if cfg.difficulty.source == "label":  # no rollouts to shard
        embedded = sharded.combine_embeddings(pool, *_gather(embed_futures), cfg.embedding)
        difficulty = _difficulty_stage(pool, model, recipe, embedded)
        return {"embed": embedded, "difficulty": difficulty, "shards": len(shards)}
    if cfg.difficulty.source == "propagate":  # the measured rows are chosen from the embeddings: shard after them
        embedded = sharded.combine_embeddings(pool, *_gather(embed_futures), cfg.embedding)
        measured = sharded.measured_pool(pool, embedded, cfg.difficulty, cfg.difficulty.seed)
        rollouts = _difficulty_shards(measured, _plan(measured, ray_cfg.shard_size), model, recipe)
        difficulty = {**_difficulty_stage(pool, model, recipe, embedded, rollouts), "shards": rollouts["shards"]}
    else:
        difficulty = _difficulty_shards(pool, shards, model, recipe)
        embedded = sharded.combine_embeddings(pool, *_gather(embed_futures), cfg.embedding)
    print(f"ray: {len(shards)} shards of <= {ray_cfg.shard_size} prompts; embed shards "
          f"{_tally(embedded)}; difficulty shards {_tally(difficulty)}")
    return {"embed": embedded, "difficulty": difficulty, "shards": len(shards)}


def _difficulty_shards(pool: dict[str, Any], shards: list[dict[str, Any]], model: dict[str, Any], recipe: Recipe
                       ) -> dict[str, Any]:
    """Reference rollouts of `pool`'s rows, one cached task per shard, combined in pool order."""
    cfg, ray_cfg = recipe.curate.difficulty, recipe.ray
    prompting = {"system_prompt": recipe.model.system_prompt, "enable_thinking": recipe.model.enable_thinking}
    keys = (model, prompting, recipe.verifier, cfg, recipe.engine, cfg.seed)
    rollout_shards = [{**s, "out": str(sharded.difficulty_shard_dir(s, *keys))} for s in shards]
    futures = _submit_shards(sharded.difficulty_shard, rollout_shards, ray_cfg.shard_task, pool=pool, model=model,
                             prompting=prompting, verifier=recipe.verifier, cfg=cfg, engine=recipe.engine,
                             seed=cfg.seed, ray_cfg=ray_cfg)
    return sharded.combine_difficulty(pool, *_gather(futures), cfg)


def _difficulty_stage(pool: dict[str, Any], model: dict[str, Any], recipe: Recipe, embedded: dict[str, Any],
                      measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """The local difficulty stage (labels, or propagation from the `measured` rows' sharded rollouts)."""
    cfg = recipe.curate.difficulty
    return stage.estimate_difficulty(pool, model, recipe.model.system_prompt, recipe.verifier, cfg, recipe.engine,
                                     cfg.seed, recipe.model.enable_thinking, embedded, measured)


def _tally(manifest: dict[str, Any]) -> str:
    states = [s["state"] for s in manifest["shards"]]
    return ", ".join(f"{states.count(name)} {name.lower()}" for name in sorted(set(states)))
