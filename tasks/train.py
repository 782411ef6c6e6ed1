"""Training tasks: prepare the arms, run one bandit-paced GRPO epoch per task, evaluate checkpoints.

An epoch task reads the previous epoch's manifest (checkpoint with weights, optimizer, scheduler and RNG;
bandit and prompt-picker state), plans the epoch's M slots with the bandit, trains, feeds the epoch's own
rollouts back to the bandit and writes a new epoch folder whose manifest is written last. Epoch tasks are
cached on (run fingerprint, epoch, previous manifest), so re-running a killed run replays finished epochs
from the cache and resumes at the first unfinished one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.runtime import task_run

from space.config import EvalConfig, TrainConfig, VerifierConfig
from space.engines import EngineConfig
from tasks.common import CACHED, file_sha256, open_stage, open_stage_dir, stage_dir, write_manifest
from tasks.progress import generate_with_progress, grpo_progress, progress_bar, start_engine
from tasks.stages import STAGE_OPTIONS


@task(**STAGE_OPTIONS, name="prepare-training", cache_policy=CACHED, persist_result=True)
def prepare_training(curation: dict[str, Any], model: dict[str, Any], system_prompt: str | None,
                     pool: str, enable_thinking: bool | None, min_signal: float) -> dict[str, Any]:
    """Training rows (rendered prompt, answer, metadata, cluster) of the pool `train.pool` names."""
    from transformers import AutoTokenizer

    from space.train.epoch import training_table

    out, done, _ = open_stage("train-data", curation["sha"], model["sha"], system_prompt, pool, enable_thinking,
                              min_signal, inputs=(curation,))
    if done is not None:
        return done
    table, arms = training_table(pl.read_parquet(curation["path"]), AutoTokenizer.from_pretrained(model["path"]),
                                 system_prompt, pool, enable_thinking, min_signal)
    table.write_parquet(out / "train.parquet")
    return write_manifest(out, {"path": str(out / "train.parquet"), "sha": file_sha256(out / "train.parquet"),
                                "rows": table.height, "arms": arms})


def _epoch_run_name(parameters: dict[str, Any]) -> str:
    """`train-epoch-2 of 3`: the console summary and the Prefect UI tell the epochs apart."""
    return f"train-epoch-{parameters['epoch'] + 1} of {parameters['cfg'].epochs}"


@task(**STAGE_OPTIONS, name="train-epoch", task_run_name=_epoch_run_name, cache_policy=CACHED, persist_result=True)
def train_epoch(
    data: dict[str, Any], model: dict[str, Any], cfg: TrainConfig, verifier: VerifierConfig, seed: int, epoch: int,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """One GRPO epoch over the bandit's allocation; returns the epoch manifest (paths and metrics)."""
    from space.train.epoch import run_epoch

    run_dir = stage_dir("train", data["sha"], model["sha"], cfg, verifier, seed)
    out = run_dir / f"epoch_{epoch:03d}"
    out.mkdir(parents=True, exist_ok=True)
    out, done, start = open_stage_dir(out, data, previous)
    if done is not None:
        return done
    with progress_bar(f"train epoch {epoch + 1}/{cfg.epochs}", unit="GRPO steps") as update:
        outcome = run_epoch(
            pl.read_parquet(data["path"]), data["arms"], cfg, verifier, Path(model["path"]), seed=seed, epoch=epoch,
            checkpoint_in=Path(previous["checkpoint"]) if previous else None,
            state_in=json.loads(Path(previous["state"]).read_text()) if previous else None,
            checkpoint_out=out / "checkpoint", rollouts_out=out / "rollouts.parquet", progress=grpo_progress(update),
        )
    (out / "state.json").write_text(json.dumps(outcome.state))
    metrics = {**outcome.metrics, "seconds/epoch": time.perf_counter() - start}
    weights = outcome.checkpoint_out / "model.safetensors"
    return write_manifest(out, {"epoch": epoch, "checkpoint": str(outcome.checkpoint_out),
                                "checkpoint_sha": file_sha256(weights), "state": str(out / "state.json"),
                                "rollouts": str(out / "rollouts.parquet"), "order": outcome.order,
                                "arms": outcome.arms, "metrics": metrics,
                                "log_history": outcome.log_history, "arm_rows": outcome.arm_rows})


@task(**STAGE_OPTIONS, name="evaluate", cache_policy=CACHED, persist_result=True)
def evaluate(model_path: str, model_sha: str, eval_split: dict[str, Any], system_prompt: str | None,
             verifier: VerifierConfig, cfg: EvalConfig, engine: EngineConfig, seed: int,
             enable_thinking: bool | None = None) -> dict[str, Any]:
    """Greedy accuracy and pass_at_1 of a model directory on the held-out split."""
    from transformers import AutoTokenizer

    from space.train.evaluation import evaluate as run_eval
    from space.data.prompting import render_prompts
    from space.data.verifiers import get_verifier

    out, done, start = open_stage("eval", model_sha, eval_split["sha"], system_prompt, verifier, cfg, engine, seed,
                                  enable_thinking, inputs=(eval_split,))
    if done is not None:
        return done
    table = pl.read_parquet(eval_split["path"])
    if cfg.limit is not None:
        table = table.head(cfg.limit)
    prompts = render_prompts(AutoTokenizer.from_pretrained(model_path), table["question"].to_list(), system_prompt,
                             enable_thinking)
    with start_engine(engine, model_path) as rollout_engine:
        generate = generate_with_progress(rollout_engine.generate, task_run.get_name() or "evaluate")
        metrics, per_prompt = run_eval(generate, prompts, table,
                                       get_verifier(verifier.name, extract=verifier.extract), k=cfg.k,
                                       temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                       theta_solve=verifier.theta_solve, seed=seed)
    per_prompt.write_parquet(out / "eval.parquet")
    metrics["seconds/eval"] = time.perf_counter() - start
    return write_manifest(out, {"path": str(out / "eval.parquet"), "metrics": metrics})
