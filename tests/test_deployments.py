"""`space serve` against a real `prefect server start`: the server's scheduler creates a run of the served
deployment on its own (the test creates none) and that run completes; `space serve` stops within seconds on
SIGTERM and on SIGINT, whether its server still answers or has gone away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest_servers import prefect_client as _client
from conftest_servers import start_prefect_server as _start_server
from conftest_servers import stop_process as _stop
from conftest_servers import wait_for_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(Path(__file__).parent / "recipes" / "e2e.yaml")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    proc, url = _start_server(home)
    yield url
    _stop(proc)


def _serve(api_url: str, log: Path, *schedule: str) -> subprocess.Popen:
    """`space serve` in its own process group, output to `log` (a pipe would fill up and block it)."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--recipe", RECIPE, *schedule],
                                env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _wait_until_stopped(proc: subprocess.Popen, timeout: float = 20) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"space serve still running {timeout:.0f} s after the signal:\n{proc.log.read_text()[-3000:]}")
    return proc.log.read_text()


def test_serve_refuses_without_a_server():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([sys.executable, "-m", "flows.cli", "serve", "--recipe", RECIPE, "--cron", "0 3 * * *"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "PREFECT_API_URL" in out.stderr


@pytest.mark.timeout(1800)  # a whole e2e `space run` from a cold SPACE_HOME, on 2 shared cores
def test_interval_schedule_fires_and_its_run_completes(tmp_path):
    server, url = _start_server(tmp_path)  # its own server, so its log holds only this test's scheduling
    serving = _serve(url, tmp_path / "serve.log", "--interval", "5")
    try:
        with _client(url) as client:
            deployment = wait_for_deployment(client, serving, "space-run/e2e")
            assert deployment.parameters["recipe"]["name"] == "e2e"
            assert [s.schedule.interval.total_seconds() for s in deployment.schedules] == [5.0]
            run = _wait_for_first_finished_run(client, deployment.id, serving, tmp_path / "server.log")
            assert run.auto_scheduled, "the run was not created by the server's scheduler"
            assert run.state.is_completed(), run.state
    finally:
        _stop(serving)
        _stop(server)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_stops_promptly_and_pauses_its_schedule_while_the_server_answers(prefect_server, tmp_path, sig):
    name = f"stop-{sig.name.lower()}"
    serving = _serve(prefect_server, tmp_path / "serve.log", "--cron", "0 3 * * *", "--name", name)
    with _client(prefect_server) as client:
        deployment = wait_for_deployment(client, serving, f"space-run/{name}")
        assert not deployment.paused
        os.killpg(serving.pid, sig)  # what a terminal's Ctrl-C or a service manager sends to the group
        output = _wait_until_stopped(serving)
        assert serving.returncode == 0, output
        assert client.read_deployment(deployment.id).paused, output


# space serve with Runner.add_flow wrapped to send the process SIGINT the moment the deployment is registered,
# before the runner starts: the window CI's Ctrl-C once landed in (exit 130, schedule left running)
SIGNAL_WHILE_REGISTERING = """
import os, signal, sys
from prefect.runner import Runner
register = Runner.add_flow
def register_then_interrupt(self, *args, **kwargs):
    deployment_id = register(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    return deployment_id
Runner.add_flow = register_then_interrupt
from flows.cli import app
sys.argv = ["space", "serve", "--recipe", sys.argv[1], "--cron", "0 3 * * *", "--name", "stop-registering"]
app()
"""


def test_serve_pauses_its_schedule_on_a_signal_that_lands_while_it_registers(prefect_server):
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    out = subprocess.run([sys.executable, "-c", SIGNAL_WHILE_REGISTERING, RECIPE], env=env, capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SIGINT: stopping; the deployment's schedule is paused" in out.stdout, out.stdout[-3000:]
    with _client(prefect_server) as client:
        assert client.read_deployment_by_name("space-run/stop-registering").paused


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_stops_promptly_after_its_server_went_away(tmp_path, sig):
    server, url = _start_server(tmp_path / "prefect")
    serving = _serve(url, tmp_path / "serve.log", "--cron", "0 3 * * *")
    try:
        with _client(url) as client:
            wait_for_deployment(client, serving, "space-run/e2e")
        _stop(server)
        time.sleep(3)  # the runner's next polls fail against the dead server
        os.killpg(serving.pid, sig)
        output = _wait_until_stopped(serving)
        assert "does not answer" in output, output
    finally:
        _stop(serving)
        _stop(server)


def _wait_for_first_finished_run(client, deployment_id, serving: subprocess.Popen, server_log: Path):
    """The first run of the deployment to reach a final state; fails if none was even created within 60 s.
    (An interval of 5 s makes the scheduler queue up to 100 runs: filter on the server, not in a page.)"""
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    final = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
        any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])))
    started = time.monotonic()
    while True:
        scheduled = client.read_flow_runs(deployment_filter=of_deployment, limit=1)
        assert scheduled or time.monotonic() - started < 60, f"no run was scheduled:\n{server_log.read_text()[-3000:]}"
        finished = client.read_flow_runs(deployment_filter=of_deployment, flow_run_filter=final)
        if finished:
            return min(finished, key=lambda r: r.end_time)
        assert serving.poll() is None, serving.log.read_text()[-3000:]
        assert time.monotonic() - started < 900, "no scheduled run finished within 15 min"
        time.sleep(2)
