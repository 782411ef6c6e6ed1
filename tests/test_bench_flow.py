"""`space bench` end to end: the two-cell smoke spec on real Prefect (ephemeral server), MLflow and TRL.

Checks the MLflow tree (bench parent -> one child per cell -> curate and train runs), that the report's
rows are the cells' own final metrics, and that re-running the finished grid executes no cell again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest_states import task_states_since

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SPEC = Path(__file__).parents[1] / "infra" / "bench" / "smoke.yaml"
ARMS = {"refill", "uniform-full"}


def _children(client, parent_id: str):
    from tasks.tracking import experiment_id

    return client.search_runs([experiment_id()], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


@pytest.fixture(scope="module")
def spec():
    from space.analysis.bench import load_bench_spec

    return load_bench_spec(SPEC)


@pytest.fixture(scope="module")
def first(spec, tmp_path_factory):
    from flows.bench import run_bench

    out = tmp_path_factory.mktemp("bench")
    return run_bench(spec, str(SPEC.parent), str(out), SPEC.read_text()), out


def test_each_cell_is_a_child_run_with_curate_and_train_below_it(first):
    from mlflow.tracking import MlflowClient

    result, _ = first
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parent = client.get_run(result["parent_run_id"])
    assert parent.data.tags["space.stage"] == "bench" and parent.info.status == "FINISHED"
    cells = _children(client, parent.info.run_id)
    assert {c.data.tags["space.arm"] for c in cells} == ARMS and len(cells) == 2
    for cell in cells:
        assert cell.info.status == "FINISHED"
        stages = {r.data.tags["space.stage"] for r in _children(client, cell.info.run_id)}
        assert stages == {"curate", "train", "eval"}
        assert 0.0 <= cell.data.metrics["final/pass_at_1"] <= 1.0
    assert {"report"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/rows.json", "report/pass1_vs_step.png"} <= logged


def test_report_rows_are_the_cells_final_metrics(first):
    from mlflow.tracking import MlflowClient

    result, out = first
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    cells = {c.data.tags["space.arm"]: c for c in _children(client, result["parent_run_id"])}
    rows = {r["arm"]: r for r in json.loads((out / "rows.json").read_text())}
    assert set(rows) == ARMS
    for arm, row in rows.items():
        metrics = cells[arm].data.metrics
        assert row["seeds"] == 1
        assert row["final_pass1"] == pytest.approx(metrics["final/pass_at_1"])
        assert row["final_greedy"] == pytest.approx(metrics["final/greedy_acc"])
        assert row["final_pass1_lo"] is None  # one seed: no interval
        assert row["unique_prompts"] == metrics["unique_prompts"] and row["steps"] == 4  # 2 epochs x 2 steps
    assert rows["uniform-full"]["vs_ref_pass1"] is None
    refill = cells["refill"].data.metrics["final/pass_at_1"]
    ref = cells["uniform-full"].data.metrics["final/pass_at_1"]
    assert rows["refill"]["vs_ref_pass1"] == pytest.approx(refill - ref)
    # propagated difficulty: k rollouts on a quarter of the pool, against the whole pool for uniform-full
    assert 0 < rows["refill"]["curation_rollouts"] <= 0.3 * rows["uniform-full"]["curation_rollouts"]
    assert rows["refill"]["pool_share"] == pytest.approx(rows["refill"]["unique_prompts"] / 96)  # pool_size=96
    report = (out / "report.md").read_text()
    assert all(f"| {arm} | 1 |" in report for arm in ARMS)
    assert all((out / name).is_file() for name in ("pass1_vs_rollouts.png", "effective_groups.png"))


def test_the_refill_cell_trains_from_an_active_pool_of_the_curated_representatives(first):
    from mlflow.tracking import MlflowClient

    result, _ = first
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    cell = next(c for c in _children(client, result["parent_run_id"]) if c.data.tags["space.arm"] == "refill")
    train = next(r for r in _children(client, cell.info.run_id) if r.data.tags["space.stage"] == "train")
    active = [m.value for m in client.get_metric_history(train.info.run_id, "pool/active")]
    assert active == [12.0, 12.0]  # 3 clusters x 4 representatives, refilled, never shrinking
    retired = client.get_metric_history(train.info.run_id, "pool/retired")
    refilled = client.get_metric_history(train.info.run_id, "pool/refilled")
    assert [m.value for m in retired] == [m.value for m in refilled]


def test_rerunning_the_finished_grid_executes_no_cell(first, spec):
    from mlflow.tracking import MlflowClient

    from flows.bench import run_bench

    result, out = first
    since = datetime.now(timezone.utc)
    again = run_bench(spec, str(SPEC.parent), str(out), SPEC.read_text())
    states = task_states_since(since, expect={"bench-cell"})
    assert states["bench-cell"] == {"Cached"}, states
    assert not {"train-epoch", "evaluate", "estimate-difficulty"} & set(states), states
    assert again["parent_run_id"] == result["parent_run_id"]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert len(_children(client, result["parent_run_id"])) == 2
    assert again["rows"] == result["rows"]


def test_cli_rerun_prints_the_report_and_a_summary_with_every_cell_cached_and_no_prefect_info_lines(first):
    import re
    import subprocess
    import sys

    result, out = first
    env = {k: v for k, v in os.environ.items() if k != "SPACE_PROGRESS"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "bench", str(SPEC), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "space bench summary" in done.stdout
    assert re.search(r"^  bench-cell +2 +\d+\.\d +yes$", done.stdout, re.MULTILINE), done.stdout
    assert f"MLflow bench run: {result['parent_run_id']}" in done.stdout
    assert Path(result["report"]).read_text().splitlines()[0] in done.stdout
    assert "| INFO    |" not in done.stdout + done.stderr  # the console of `space run`: quiet unless --verbose
