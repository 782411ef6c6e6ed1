"""Training reporting: per-epoch metrics and tables to MLflow, a Prefect progress artifact, the end-of-run
plots and summaries, and the evaluation run's record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)

from tasks import tracking
from tasks.stages import STAGE_OPTIONS

ROLLOUT_SAMPLE = 32  # rollouts per epoch shown in MLflow's table view


@task(**STAGE_OPTIONS, name="log-epoch")
def log_epoch(run_id: str, epoch: dict[str, Any], evaluation: dict[str, Any] | None, data: dict[str, Any]) -> None:
    """Epoch metrics at step = epoch index; per epoch one arm table (the epoch's `arm_rows`: allocation, solve
    rates, bandit state) and one table of sampled rollouts (prompt, completion, reward, cluster)."""
    metrics = dict(epoch["metrics"])
    if evaluation is not None:
        metrics.update(evaluation["metrics"])
    index = epoch["epoch"]
    tracking.log_metrics(run_id, metrics, step=index)
    tracking.log_table(run_id, epoch["arm_rows"], f"tables/arms_epoch_{index:03d}.json")
    rollouts = pl.read_parquet(epoch["rollouts"])
    tracking.log_table(run_id, rollout_sample(rollouts, data["path"], index), f"tables/rollouts_epoch_{index:03d}.json")


def rollout_sample(rollouts: pl.DataFrame, train_path: str, epoch: int, size: int = ROLLOUT_SAMPLE) -> list[dict]:
    """A seeded sample of the epoch's rollouts joined with their prompt text."""
    prompts = pl.read_parquet(train_path, columns=["prompt_id", "prompt", "answer"])
    sample = rollouts.sample(n=min(size, rollouts.height), seed=epoch).sort("group", "sample")
    return (sample.join(prompts, on="prompt_id", how="left")
            .select("epoch", "step", "cluster", "prompt_id", "prompt", "answer", "completion", "reward", "solved")
            .to_dicts())


def start_progress(total_epochs: int) -> Any:
    """A Prefect progress artifact at 0 %, updated after every epoch."""
    return create_progress_artifact(0.0, key="training-progress", description=f"epochs done of {total_epochs}")


def update_progress(artifact_id: Any, epoch: int, total_epochs: int, done: dict[str, Any]) -> None:
    reward = done["metrics"].get("reward/mean")
    note = f"epoch {epoch + 1}/{total_epochs} done" + (f", reward/mean {reward:.3f}" if reward is not None else "")
    update_progress_artifact(artifact_id, 100.0 * (epoch + 1) / total_epochs, description=note)


def arm_matrix(epochs: list[dict[str, Any]], key: str) -> list[list[float]]:
    """Arms x epochs matrix of one column of the epochs' `arm_rows` (NaN where an arm has no value)."""
    arms = sorted({row["arm"] for e in epochs for row in e["arm_rows"]})
    by_epoch = [{row["arm"]: row[key] for row in e["arm_rows"]} for e in epochs]
    return [[float("nan") if values.get(arm) is None else values[arm] for values in by_epoch] for arm in arms]


def epoch_summary(epoch: dict[str, Any]) -> dict[str, Any]:
    """The epoch's reward means and truncated share, then each arm's share of the slots."""
    metrics = {k: round(float(v), 4) for k, v in epoch["metrics"].items()
               if k.startswith("reward") and k.endswith("mean") or k == "truncated/all"}
    shares = {f"bandit/arm_{row['arm']:02d}/share": round(float(row["share"]), 4) for row in epoch["arm_rows"]}
    return {"epoch": epoch["epoch"], **metrics, **shares}


@task(**STAGE_OPTIONS, name="report-training")
def report_training(run_id: str, epochs: list[dict[str, Any]], final_eval: dict[str, Any] | None) -> None:
    """Allocation heatmap, solve-rate curves, Prefect summary artifacts (the model: tasks.model_registry)."""
    from space.analysis.plots import plot_allocation_heatmap, plot_curves

    out = Path(epochs[-1]["checkpoint"]).parent
    solve = arm_matrix(epochs, "solve_rate")
    plots = [plot_allocation_heatmap(arm_matrix(epochs, "share"), out / "allocation_heatmap.png"),
             plot_curves({f"arm {a}": row for a, row in enumerate(solve)}, out / "solve_rate_curves.png",
                         "per-cluster solve rate (training rollouts)")]
    tracking.log_files(run_id, plots, "plots")
    create_table_artifact([epoch_summary(e) for e in epochs], key="training-epochs",
                          description="per-epoch reward and allocation shares")
    lines = [f"# Training run `{run_id}`", "", f"epochs: {len(epochs)}; final model: `{epochs[-1]['checkpoint']}`"]
    if final_eval is not None:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(final_eval["metrics"].items()) if k.startswith("eval/all")]
    create_markdown_artifact("\n".join(lines), key="training-summary")


@task(**STAGE_OPTIONS, name="report-evaluation")
def report_evaluation(run_id: str, base: dict[str, Any], final: dict[str, Any]) -> None:
    """The evaluation run: base and final metrics (base/..., final/...) and both per-prompt tables."""
    tracking.log_metrics(run_id, {**{f"base/{k}": v for k, v in base["metrics"].items()},
                                  **{f"final/{k}": v for k, v in final["metrics"].items()}})
    for label, manifest in (("base", base), ("final", final)):
        table = pl.read_parquet(manifest["path"])
        tracking.log_table(run_id, table.to_dicts(), f"tables/eval_{label}.json")
