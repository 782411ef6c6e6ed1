"""Training reporting: per-epoch metrics to MLflow, and the end-of-run plots, tables and model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import tracking


@task(name="log-epoch")
def log_epoch(run_id: str, epoch: dict[str, Any], evaluation: dict[str, Any] | None) -> None:
    """Epoch metrics at step = epoch index; the arm table as one JSON table per epoch."""
    metrics = dict(epoch["metrics"])
    if evaluation is not None:
        metrics.update(evaluation["metrics"])
    tracking.log_metrics(run_id, metrics, step=epoch["epoch"])
    tracking.log_table(run_id, epoch["arm_table"], f"tables/arms_epoch_{epoch['epoch']:03d}.json")


def _matrix(epochs: list[dict[str, Any]], key: str) -> list[list[float]]:
    arms = sorted({int(k.split("/")[1][4:]) for e in epochs for k in e["metrics"]
                   if k.startswith("bandit/arm_") and k.endswith(f"/{key}")})
    return [[e["metrics"].get(f"bandit/arm_{a:02d}/{key}", float("nan")) for e in epochs] for a in arms]


@task(name="report-training")
def report_training(run_id: str, epochs: list[dict[str, Any]], final_eval: dict[str, Any] | None,
                    log_model: bool = True) -> None:
    """Allocation heatmap, solve-rate curves, the final checkpoint, Prefect summary artifacts."""
    from space.plots import plot_allocation_heatmap, plot_curves

    out = Path(epochs[-1]["checkpoint"]).parent
    shares = _matrix(epochs, "share")
    solve = _matrix(epochs, "solve_rate")
    plots = [plot_allocation_heatmap(shares, out / "allocation_heatmap.png"),
             plot_curves({f"arm {a}": row for a, row in enumerate(solve)}, out / "solve_rate_curves.png",
                         "per-cluster solve rate (training rollouts)")]
    tracking.log_files(run_id, plots, "plots")
    if log_model:
        tracking.log_files(run_id, [Path(epochs[-1]["checkpoint"])], "model")
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
