"""Work-pool deployments (prefect.yaml at the repository root, infra/deploy.sh): the shipped default recipe is the
builtin one, and against a real `prefect server start` a deployment runs on a process worker and completes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "tests" / "recipes" / "e2e.yaml")
DEPLOY = str(REPO / "infra" / "deploy.sh")


def _deployments() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def test_prefect_yaml_deploys_the_builtin_recipe_on_the_space_pool():
    from space.config import Recipe, load_recipe

    builtin = load_recipe("builtin")
    deployments = _deployments()
    assert {d["entrypoint"] for d in deployments} == {"flows/run.py:run_flow", "flows/jobs.py:curate_job",
                                                      "flows/jobs.py:train_job", "flows/bench.py:bench_flow"}
    for deployment in deployments:
        assert deployment["work_pool"]["name"] == "space"
        if "recipe" in deployment.get("parameters", {}):
            given = deployment["parameters"]["recipe"]
            assert Recipe.model_validate(given) == builtin, deployment["name"]
            # left to follow the run seed and the training length, as the shipped YAML leaves them
            assert given["curate"]["clusters"]["seed"] is None and given["eval"]["max_tokens"] is None


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_curate_deployment_runs_on_a_process_worker(tmp_path):
    from conftest_servers import prefect_client, start_prefect_server, stop_process
    from space.config import load_recipe

    server, url = start_prefect_server(tmp_path / "prefect")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(PREFECT_API_URL=url, SPACE_HOME=str(tmp_path / "home"),
               SPACE_VENV=str(Path(sys.executable).parent.parent))
    try:
        deployed = subprocess.run([DEPLOY, "start"], env=env, capture_output=True, text=True, timeout=600)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with prefect_client(url) as client:
            nightly = client.read_deployment_by_name("space-run/builtin-nightly")
            assert [(s.schedule.cron, s.active) for s in nightly.schedules] == [("0 3 * * *", True)]
            assert "Recipe" in str(nightly.parameter_openapi_schema)  # typed: the UI renders a form from it
            curate = client.read_deployment_by_name("space-curate/builtin")
            assert [(s.schedule.interval.total_seconds(), s.active) for s in curate.schedules] == [(21600.0, False)]
            client.read_deployment_by_name("space-train/builtin")
            recipe = load_recipe(RECIPE).model_dump(mode="json")
            run = client.create_flow_run_from_deployment(curate.id, parameters={"recipe": recipe})
            state = _wait_for_final_state(client, run.id, tmp_path / "home" / "servers" / "worker.log")
            assert state.is_completed(), state
            assert client.read_flow_run(run.id).work_pool_name == "space"
        # the run's Prefect results live in this home, not in a store shared with other homes (~/.prefect)
        assert any((tmp_path / "home" / "prefect" / "storage").iterdir())
    finally:
        subprocess.run([DEPLOY, "stop"], env=env, capture_output=True, timeout=120)
        stop_process(server)


def _wait_for_final_state(client, run_id, worker_log: Path):
    deadline = time.monotonic() + 1500
    while True:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state
        assert time.monotonic() < deadline, f"run not finished: {state}\n{worker_log.read_text()[-3000:]}"
        time.sleep(3)
