"""End to end on CPU: `space export` of the e2e recipe (real bootstrap and curation, Prefect and MLflow), then
examples/trl_grpo_curriculum.py trains the tiny model on that export with stock TRL `GRPOTrainer` + the plug-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import E2E_RECIPE

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(3600)]  # a cold bootstrap + curation on 2 shared cores
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, e2e_recipe):
    """(export folder, tiny model folder) after one real `space export --recipe tests/recipes/e2e.yaml`."""
    from flows.bootstrap import bootstrap_flow
    from flows.cli import app

    out = tmp_path_factory.mktemp("export") / "curation"
    result = CliRunner().invoke(app, ["export", "--recipe", E2E_RECIPE, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, bootstrap_flow(e2e_recipe)["path"]


def test_space_export_writes_the_curation_for_datasets_and_polars(exported, e2e_recipe):
    from datasets import load_from_disk

    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow

    out, _ = exported
    curation = pl.read_parquet(curate_flow(e2e_recipe, bootstrap_flow(e2e_recipe))["stages"]["select"]["path"])
    pool = load_from_disk(str(out / "hf")).to_polars()
    assert pool.height == curation.height == pl.read_ndjson(out / "curation.jsonl").height
    assert sorted(pool["prompt_id"].to_list()) == sorted(curation["prompt_id"].to_list())
    assert int(pool["selected"].sum()) == 3 * 4  # K = 3 clusters x l = 4 (tests/recipes/e2e.yaml)
    joined = pool.join(curation.select("prompt_id", pl.col("cluster").alias("curated")), on="prompt_id")
    assert (joined["cluster"] == joined["curated"]).all()
    card = (out / "README.md").read_text()
    assert "recipe `e2e`" in card and "| per_cluster | `4` |" in card and "curate/pool_size" in card


def test_space_export_refuses_a_non_empty_folder_without_force(exported):
    from flows.cli import app

    out, _ = exported
    result = CliRunner().invoke(app, ["export", "--recipe", E2E_RECIPE, "--out", str(out)])
    assert result.exit_code == 2 and "is not empty" in result.output and "--force" in result.output


def test_the_example_trains_the_tiny_model_with_stock_grpo_trainer_and_the_plugin(exported, tmp_path):
    out, model = exported
    command = [sys.executable, str(ROOT / "examples" / "trl_grpo_curriculum.py"), "--curation", str(out),
               "--model", model, "--out", str(tmp_path / "trained"), "--epochs", "2", "--slots", "4",
               "--prompts-per-step", "2", "--num-generations", "4", "--max-completion-length", "18", "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 4 steps" in done.stdout  # 2 epochs x 4 slots / 2 prompts per step
    shares = json.loads((tmp_path / "trained" / "bandit_shares.json").read_text())
    assert len(shares) == 2  # one plan per epoch, logged through the trainer's own `log`
    assert all(abs(sum(epoch.values()) - 1.0) < 1e-9 and len(epoch) == 3 for epoch in shares)
    assert (tmp_path / "trained" / "config.json").exists()
