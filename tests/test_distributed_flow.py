"""`space run` end to end with train.distributed.processes=2: each epoch's GRPO part is a torchrun job of two
CPU ranks (gloo); curation, the bandit, MLflow, evaluation and artifacts stay in the flow's process.

The e2e recipe on a tiny random Llama (no SFT, to keep it short), 2 epochs of 8 slots, B=4 prompts per step.
Checked: the run completes and evaluates the base, every epoch's and the final model; MLflow holds exactly one
run per stage (parent, curate, train, eval), all finished; the train stage folder holds one checkpoint per
epoch and only the files the flow's process writes there (epoch task, training report): no rank left any.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest_models import make_tiny_model_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCH_FILES = {"checkpoint", "rollouts.parquet", "state.json", "space_manifest.json"}  # the epoch task's
REPORT_FILES = {"allocation_heatmap.png", "solve_rate_curves.png"}  # the flow's training report, in the last epoch


@pytest.fixture(scope="module")
def launched_run(tmp_path_factory):
    from flows.run import run_flow
    from space.config import load_recipe
    from conftest import E2E_RECIPE

    model = make_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny")
    recipe = load_recipe(E2E_RECIPE, [f"model.name={model}", "name=e2e-dp", "train.epochs=2", "train.slots_per_epoch=8",
                               "train.grpo.prompts_per_step=4", "train.distributed.processes=2"])
    return recipe, run_flow(recipe)


def test_the_run_completes_and_evaluates_base_each_epoch_and_final(launched_run):
    from mlflow.tracking import MlflowClient

    recipe, run = launched_run
    for metrics in (run["base_eval"], run["final_eval"]):
        assert 0.0 <= metrics["eval/all/greedy_acc"] <= 1.0 and 0.0 <= metrics["eval/all/pass_at_1"] <= 1.0
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    for key in ("reward/mean", "eval/all/greedy_acc"):  # each epoch's training and held-out metrics
        history = client.get_metric_history(run["train_run_id"], key)
        assert sorted(m.step for m in history) == list(range(recipe.train.epochs))


def test_mlflow_holds_one_run_per_stage(launched_run):
    from mlflow.tracking import MlflowClient

    _, run = launched_run
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_run(run["run_id"]).info.experiment_id
    runs = [r for r in client.search_runs([experiment]) if r.data.tags.get("space.recipe") == "e2e-dp"]
    assert sorted(r.data.tags["space.stage"] for r in runs) == ["curate", "eval", "run", "train"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_one_checkpoint_per_epoch_and_nothing_else_from_the_ranks(launched_run):
    recipe, run = launched_run
    run_dir = Path(run["model_dir"]).parent.parent
    epochs = sorted(p for p in run_dir.iterdir() if p.is_dir())
    assert [p.name for p in epochs] == [f"epoch_{e:03d}" for e in range(recipe.train.epochs)]
    for folder in epochs[:-1]:
        assert {p.name for p in folder.iterdir()} == EPOCH_FILES
    assert {p.name for p in epochs[-1].iterdir()} == EPOCH_FILES | REPORT_FILES
    assert list(run_dir.rglob("*.tmp")) == []
