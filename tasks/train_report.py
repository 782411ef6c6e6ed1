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
from tasks.stages import STAGE_HOOKS

ROLLOUT_SAMPLE = 32  # rollouts per epoch shown in MLflow's table view


@task(**STAGE_HOOKS, name="log-epoch")
def log_epoch(run_id: str, epoch: dict[str, Any], evaluation: dict[str, Any] | None, data: dict[str, Any]) -> None:
    """Epoch metrics at step = epoch index; per epoch one arm table (allocation, solve rates, bandit state)
    and one table of sampled rollouts (prompt, completion, reward, cluster)."""
    metrics = dict(epoch["metrics"])
    if evaluation is not None:
        metrics.update(evaluation["metrics"])
    index = epoch["epoch"]
    tracking.log_metrics(run_id, metrics, step=index)
    rollouts = pl.read_parquet(epoch["rollouts"])
    tracking.log_table(run_id, arm_rows(epoch, rollouts), f"tables/arms_epoch_{index:03d}.json")
    tracking.log_table(run_id, rollout_sample(rollouts, data["path"], index), f"tables/rollouts_epoch_{index:03d}.json")


def arm_rows(epoch: dict[str, Any], rollouts: pl.DataFrame) -> list[dict[str, Any]]:
    """Per arm: slots it got this epoch, its share and sampling probability, the solve rate and mean reward of
    its rollouts this epoch (judged ones), then the bandit's own state columns."""
    slots = [epoch["arms"].count(row["arm"]) for row in epoch["arm_table"]]
    judged = rollouts.filter(pl.col("reward").is_not_null())
    per_arm = {row["cluster"]: row for row in judged.group_by("cluster").agg(
        pl.col("solved").mean().alias("solve_rate"), pl.col("reward").mean().alias("reward_mean")).to_dicts()}
    rows = []
    for row, count in zip(epoch["arm_table"], slots):
        arm = row["arm"]
        seen = per_arm.get(arm, {})
        rows.append({"epoch": epoch["epoch"], "arm": arm, "slots": count, "share": count / max(1, len(epoch["arms"])),
                     "p": epoch["metrics"].get(f"bandit/arm_{arm:02d}/p"), "solve_rate": seen.get("solve_rate"),
                     "reward_mean": seen.get("reward_mean"), **{k: v for k, v in row.items() if k != "arm"}})
    return rows


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


def _matrix(epochs: list[dict[str, Any]], key: str) -> list[list[float]]:
    arms = sorted({int(k.split("/")[1][4:]) for e in epochs for k in e["metrics"]
                   if k.startswith("bandit/arm_") and k.endswith(f"/{key}")})
    return [[e["metrics"].get(f"bandit/arm_{a:02d}/{key}", float("nan")) for e in epochs] for a in arms]


@task(**STAGE_HOOKS, name="report-training")
def report_training(run_id: str, epochs: list[dict[str, Any]], final_eval: dict[str, Any] | None) -> None:
    """Allocation heatmap, solve-rate curves, Prefect summary artifacts (the model: tasks.model_registry)."""
    from space.analysis.plots import plot_allocation_heatmap, plot_curves

    out = Path(epochs[-1]["checkpoint"]).parent
    shares = _matrix(epochs, "share")
    solve = _matrix(epochs, "solve_rate")
    plots = [plot_allocation_heatmap(shares, out / "allocation_heatmap.png"),
             plot_curves({f"arm {a}": row for a, row in enumerate(solve)}, out / "solve_rate_curves.png",
                         "per-cluster solve rate (training rollouts)")]
    tracking.log_files(run_id, plots, "plots")
    rows = [{"epoch": e["epoch"], **{k: round(float(v), 4) for k, v in e["metrics"].items()
                                      if k.startswith(("reward", "bandit/arm")) and k.endswith(("mean", "share"))
                                      or k == "truncated/all"}}
            for e in epochs]
    create_table_artifact(rows, key="training-epochs", description="per-epoch reward and allocation shares")
    lines = [f"# Training run `{run_id}`", "", f"epochs: {len(epochs)}; final model: `{epochs[-1]['checkpoint']}`"]
    if final_eval is not None:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(final_eval["metrics"].items()) if k.startswith("eval/all")]
    create_markdown_artifact("\n".join(lines), key="training-summary")


@task(**STAGE_HOOKS, name="report-evaluation")
def report_evaluation(run_id: str, base: dict[str, Any], final: dict[str, Any]) -> None:
    """The evaluation run: base and final metrics (base/..., final/...) and both per-prompt tables."""
    tracking.log_metrics(run_id, {**{f"base/{k}": v for k, v in base["metrics"].items()},
                                  **{f"final/{k}": v for k, v in final["metrics"].items()}})
    for label, manifest in (("base", base), ("final", final)):
        table = pl.read_parquet(manifest["path"])
        tracking.log_table(run_id, table.to_dicts(), f"tables/eval_{label}.json")
