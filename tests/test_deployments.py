"""`space serve` against a real `prefect server start`: the scheduled deployment exists with its recipe,
and a run triggered through the server completes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(Path(__file__).parent / "recipes" / "e2e.yaml")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server")),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "prefect server did not come up"
        time.sleep(0.5)
    yield url
    _stop(proc)


def test_serve_refuses_without_a_server():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([sys.executable, "-m", "flows.cli", "serve", "--recipe", RECIPE, "--cron", "0 3 * * *"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "PREFECT_API_URL" in out.stderr


def test_served_deployment_is_scheduled_and_runs(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    serving = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--recipe", RECIPE, "--cron",
                                "0 3 * * *"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as client:
            deployment = _wait_for_deployment(client, serving)
            assert deployment.parameters["recipe"]["name"] == "e2e"
            assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
            run = client.create_flow_run_from_deployment(deployment.id)
            state = _wait_for_final_state(client, run.id, serving)
            assert state.is_completed(), state
    finally:
        _stop(serving)


def _wait_for_deployment(client, serving: subprocess.Popen):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 180
    while True:
        try:
            return client.read_deployment_by_name("space-run/e2e")
        except ObjectNotFound:
            assert serving.poll() is None and time.monotonic() < deadline, "deployment never appeared"
            time.sleep(1)


def _wait_for_final_state(client, run_id, serving: subprocess.Popen):
    deadline = time.monotonic() + 900
    while True:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state
        assert serving.poll() is None and time.monotonic() < deadline, f"run not finished: {state}"
        time.sleep(2)
