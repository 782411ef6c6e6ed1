"""`infra/servers.sh` on non-default ports with the default SQLite stores and with `SPACE_DB=postgres` (Debian's
PostgreSQL, apt-installed when missing, a private cluster for Prefect and MLflow), and four concurrent
`space run`s sharing the PostgreSQL-backed servers: every run finishes, nothing reports "database is locked",
no metric is missing, the MLflow and Prefect records link to each other, and `stop` leaves no postgres
running while a second `start` reuses the cluster and its data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
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


def _script(env: dict, command: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, command], env=env, capture_output=True, text=True, timeout=timeout)


def _postgres_processes(cluster: Path) -> list[str]:
    """Command lines of live processes serving `cluster` (zombies have none, so they do not count)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and str(cluster) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@contextmanager
def _servers(db: str):
    """`servers.sh start` with store `db` on free ports, stopped (and checked stopped) afterwards. The home is a
    world-traversable temporary folder: the cluster's files belong to the postgres user, who must reach them."""
    home = Path(tempfile.mkdtemp(prefix=f"space-servers-{db}-"))
    home.chmod(0o755)
    prefect_port, mlflow_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(SPACE_HOME=str(home), SPACE_VENV=str(Path(sys.executable).parent.parent), SPACE_DB=db,
               PREFECT_PORT=str(prefect_port), MLFLOW_PORT=str(mlflow_port), PG_PORT=str(_free_port()))
    started = _script(env, "start", timeout=900)  # the first postgres run may apt-get install it
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield SimpleNamespace(home=home, env=env, db=db, prefect=f"http://127.0.0.1:{prefect_port}/api",
                              mlflow=f"http://127.0.0.1:{mlflow_port}", output=started.stdout)
    finally:
        stopped = _script(env, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not _postgres_processes(home / "postgres"), _postgres_processes(home / "postgres")
        shutil.rmtree(home)


@pytest.fixture
def sqlite_servers():
    with _servers("sqlite") as servers:
        yield servers


@pytest.fixture(scope="module")
def postgres_servers():
    with _servers("postgres") as servers:
        yield servers


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_servers_answer_and_the_prefect_ui_calls_its_own_port(db, request):
    servers = request.getfixturevalue(f"{db}_servers")
    status = _script(servers.env, "status", timeout=60)
    assert status.returncode == 0 and status.stdout.count("healthy at") == 2, status.stdout
    assert f"export PREFECT_API_URL={servers.prefect} MLFLOW_TRACKING_URI={servers.mlflow}" in servers.output
    ui = httpx.get(servers.prefect.removesuffix("/api") + "/ui-settings", timeout=10).json()
    assert ui["api_url"] == servers.prefect  # not the default port 4200
    assert httpx.get(f"{servers.mlflow}/health", timeout=10).status_code == 200
    sqlite_files = {servers.home / "mlflow.db", servers.home / "prefect" / "prefect.db"}
    if db == "sqlite":
        assert all(path.exists() for path in sqlite_files), sqlite_files
    else:
        assert "postgres: running" in status.stdout, status.stdout
        assert not any(path.exists() for path in sqlite_files), sqlite_files


def _psql(servers, database: str, query: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=int(servers.env["PG_PORT"]), user="space", dbname=database) as conn:
        with conn.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()


def _space(servers, home: Path, *args: str) -> subprocess.Popen:
    env = {**servers.env, "SPACE_HOME": str(home), "PREFECT_API_URL": servers.prefect,
           "MLFLOW_TRACKING_URI": servers.mlflow}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args, "--recipe", RECIPE], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def servers(postgres_servers):
    return postgres_servers


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
def test_four_concurrent_runs_on_postgres_finish_without_database_locks(servers, concurrent_runs):
    for run in concurrent_runs:
        assert run.returncode == 0, run.output[-5000:]
        assert "database is locked" not in run.output
    for log in ("prefect.log", "mlflow.log"):
        assert "database is locked" not in (servers.home / "servers" / log).read_text(), log
    assert "deadlock detected" not in (servers.home / "postgres" / "server.log").read_text()


@pytest.mark.timeout(5400)
def test_four_concurrent_runs_on_postgres_lose_no_metric(servers, concurrent_runs):
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


@pytest.mark.timeout(5400)
def test_the_runs_are_recorded_in_postgres(servers, concurrent_runs):
    seeds = _psql(servers, "mlflow", "SELECT seed.value FROM tags seed JOIN tags stage USING (run_uuid) WHERE "
                  "seed.key = 'space.seed' AND stage.key = 'space.stage' AND stage.value = 'run'")
    assert sorted(int(value) for (value,) in seeds) == list(SEEDS), seeds
    [(completed,)] = _psql(servers, "prefect", "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
    assert completed >= 1 + len(SEEDS), completed  # the warm-up curate and the four runs, plus their subflows


@pytest.mark.timeout(900)
def test_stop_stops_postgres_and_a_second_start_reuses_the_cluster(servers, concurrent_runs):
    from mlflow.tracking import MlflowClient

    cluster = servers.home / "postgres"
    stopped = _script(servers.env, "stop")
    assert stopped.returncode == 0 and "postgres stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not _postgres_processes(cluster), _postgres_processes(cluster)
    status = _script(servers.env, "status", timeout=60)
    assert status.returncode == 1 and "postgres: not running" in status.stdout, status.stdout
    init_log = servers.home / "servers" / "postgres-init.log"
    initialised = init_log.stat().st_mtime_ns
    started = _script(servers.env, "start", timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    assert init_log.stat().st_mtime_ns == initialised  # no second initdb
    experiment = MlflowClient(servers.mlflow).get_experiment_by_name("space")
    parents = MlflowClient(servers.mlflow).search_runs(
        [experiment.experiment_id], filter_string="tags.`space.stage` = 'run'")
    assert sorted(int(p.data.tags["space.seed"]) for p in parents) == list(SEEDS)
