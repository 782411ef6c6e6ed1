"""`infra/servers.sh` on non-default ports, and four concurrent `space run`s sharing its Prefect and MLflow
stores: every run finishes, nothing reports "database is locked", no metric is missing, and the MLflow and
Prefect records link to each other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "infra" / "servers.sh")
RECIPE = str(REPO / "tests" / "recipes" / "e2e.yaml")
SEEDS = (11, 12, 13, 14)
EPOCHS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("servers")
    prefect_port, mlflow_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(SPACE_HOME=str(home), SPACE_VENV=str(Path(sys.executable).parent.parent),
               PREFECT_PORT=str(prefect_port), MLFLOW_PORT=str(mlflow_port))
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield SimpleNamespace(home=home, env=env, prefect=f"http://127.0.0.1:{prefect_port}/api",
                              mlflow=f"http://127.0.0.1:{mlflow_port}", output=started.stdout)
    finally:
        stopped = subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_servers_answer_and_the_prefect_ui_calls_its_own_port(servers):
    status = subprocess.run([SCRIPT, "status"], env=servers.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.count("healthy at") == 2, status.stdout
    assert f"export PREFECT_API_URL={servers.prefect} MLFLOW_TRACKING_URI={servers.mlflow}" in servers.output
    ui = httpx.get(servers.prefect.removesuffix("/api") + "/ui-settings", timeout=10).json()
    assert ui["api_url"] == servers.prefect  # not the default port 4200
    assert httpx.get(f"{servers.mlflow}/health", timeout=10).status_code == 200


def _space(servers, home: Path, *args: str) -> subprocess.Popen:
    env = {**servers.env, "SPACE_HOME": str(home), "PREFECT_API_URL": servers.prefect,
           "MLFLOW_TRACKING_URI": servers.mlflow}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args, "--recipe", RECIPE], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def concurrent_runs(servers, tmp_path_factory):
    """Curation once (model, data, embeddings cached), then four seeds of `space run` at the same time."""
    home = tmp_path_factory.mktemp("runs")
    warm = _space(servers, home, "curate", "--set", "seed=10")
    output, _ = warm.communicate(timeout=1500)
    assert warm.returncode == 0, output
    procs = [_space(servers, home, "run", "--set", f"seed={seed}", "--set", f"train.epochs={EPOCHS}")
             for seed in SEEDS]
    outputs = [proc.communicate(timeout=2400)[0] for proc in procs]
    return [SimpleNamespace(seed=seed, returncode=proc.returncode, output=output)
            for seed, proc, output in zip(SEEDS, procs, outputs)]


@pytest.mark.timeout(5400)  # the fixture's warm-up and four runs share 2 cores; they land in this test's setup
def test_four_concurrent_runs_finish_without_database_locks(servers, concurrent_runs):
    for run in concurrent_runs:
        assert run.returncode == 0, run.output[-5000:]
        assert "database is locked" not in run.output
    for log in ("prefect.log", "mlflow.log"):
        assert "database is locked" not in (servers.home / "servers" / log).read_text(), log


@pytest.mark.timeout(5400)
def test_four_concurrent_runs_lose_no_metric(servers, concurrent_runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(servers.mlflow)
    experiment = client.get_experiment_by_name("space")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`space.stage` = 'run'")
    assert sorted(int(p.data.tags["space.seed"]) for p in parents) == list(SEEDS)
    for parent in parents:
        assert parent.info.status == "FINISHED"
        assert {"final/eval/all/greedy_acc", "final/eval/all/pass_at_1", "base/eval/all/greedy_acc"} <= set(
            parent.data.metrics)
        [train] = client.search_runs([experiment.experiment_id], filter_string=(
            f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`space.stage` = 'train'"))
        for key in ("reward/mean", "eval/all/pass_at_1", "bandit/arm_00/share"):
            steps = sorted(m.step for m in client.get_metric_history(train.info.run_id, key))
            assert steps == list(range(EPOCHS)), (parent.data.tags["space.seed"], key, steps)
        tables = {a.path for a in client.list_artifacts(train.info.run_id, "tables")}
        assert {f"tables/{kind}_epoch_{e:03d}.json" for kind in ("arms", "rollouts") for e in range(EPOCHS)} <= tables


@pytest.mark.timeout(5400)
def test_mlflow_and_prefect_link_to_each_other(servers, concurrent_runs):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    client = MlflowClient(servers.mlflow)
    experiment = client.get_experiment_by_name("space")
    train_runs = client.search_runs([experiment.experiment_id], filter_string="tags.`space.stage` = 'train'")
    with temporary_settings({PREFECT_API_URL: servers.prefect}):
        with get_client(sync_client=True) as prefect:
            links = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mlflow-train"])))
            for run in train_runs:
                flow_run_id = run.data.tags["prefect.flow_run_id"]
                url = run.data.tags["prefect.flow_run_url"]
                assert url == f"{servers.prefect.removesuffix('/api')}/runs/flow-run/{flow_run_id}"
                assert prefect.read_flow_run(flow_run_id).state.is_completed()
                mlflow_url = f"{servers.mlflow}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
                assert any(mlflow_url in str(link.data) for link in links), mlflow_url
