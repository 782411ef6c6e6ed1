"""Nothing left behind (issue 18, item 6): a `space` command SIGKILLed (its pid alone, as `kill -9` does) leaves no
process it started alive: Prefect's temporary API server, a spawned vLLM engine core, a local Ray cluster's
daemons and workers (flows/watchdog.py, and for Ray its own fate-sharing).

Each test starts the real command in a subprocess with a SPACE_HOME of its own, records the command's
descendants every 0.2 s until the process it is about (server, engine core, Ray daemons) exists, SIGKILLs the
command and waits, with a loose bound, for every recorded descendant to end and for the command's parent, a child
subreaper that adopts whatever leaves the tree unrecorded, to find no child left.

Found without the watchdog (the CLI with `start_watchdog` stubbed out, SIGKILL as here): Prefect's server, vLLM's
`VLLM::EngineCore` with its `VLLM::Worker` and multiprocessing's resource tracker, and Ray's `ray::DashboardAgent`
and `ray::RuntimeEnvAgent` were still running 40 s later; Ray's gcs_server, raylet and the other daemons it starts
with PR_SET_PDEATHSIG died in 0.5 s, and its workers with the raylet. With the watchdog everything is gone within
its 10 s grace (the Ray agents and some workers ignore SIGTERM and take the SIGKILL after it).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from conftest_cli import ROOT, cli_env, plain_recipe_args

from flows.watchdog import INTERVAL_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _numbered(n: int) -> list[dict]:
    return [{"question": f"What is {i} times 3?", "answer": str(3 * i)} for i in range(n)]


def _describe(process) -> str:
    import psutil

    try:
        return f"{process.pid} {process.name()} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (gone)"


# The command's parent: a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every process of the command's tree
# that loses its parent (double fork and setsid included) is adopted here instead of by init; it reaps them and
# exits once it has no child left. Its end therefore means nothing the command started is alive.
SUBREAPER = """
import ctypes, os, subprocess, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
subprocess.Popen(sys.argv[1:])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


class Command:
    """`python -m flows.cli ARGS` (or `python SCRIPT ARGS`) under the subreaper: output drained by a thread,
    descendants recorded."""

    def __init__(self, home, args, script=None, **env):
        import psutil

        program = [script] if script else ["-m", "flows.cli"]
        self.reaper = subprocess.Popen([sys.executable, "-c", SUBREAPER, sys.executable, *program, *args],
                                       env=cli_env(home, **env), cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.reaper.stdout), daemon=True).start()
        reaper, end = psutil.Process(self.reaper.pid), time.monotonic() + 60
        while not reaper.children() and time.monotonic() < end:
            time.sleep(0.05)
        self.me, self.seen = reaper.children()[0], {}

    def running(self) -> bool:
        import psutil

        try:
            return self.me.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def record(self) -> list[str]:
        """Add the command's descendants now to those seen; returns their descriptions (pid, name, command)."""
        import psutil

        try:
            self.seen.update({p.pid: p for p in self.me.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
        return [_describe(p) for p in self.seen.values() if p.is_running()]

    def wait_for(self, wanted, timeout: float) -> list[str]:
        """Record until every predicate of `wanted` matches some descendant; fails with the output tail if the
        command ends first or the timeout passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.running():
            described = self.record()
            if all(any(want(d) for d in described) for want in wanted):
                return described
            time.sleep(0.2)
        self.survivors(timeout=30)
        pytest.fail(f"descendants {self.record()}\n{''.join(self.lines)[-4000:]}")

    def survivors(self, timeout: float) -> list[str]:
        """SIGKILL the command (its pid alone), then wait up to `timeout` s for every descendant recorded and for
        the subreaper to end (every process of the tree, recorded or not, gone): those still alive. Whatever is
        left then is SIGKILLed, so a failing test leaves nothing either."""
        import psutil

        self.record()
        if self.running():
            os.kill(self.me.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        _, alive = psutil.wait_procs(list(self.seen.values()), timeout=timeout)
        try:
            self.reaper.wait(timeout=max(1.0, deadline - time.monotonic()))
            adopted = []
        except subprocess.TimeoutExpired:
            adopted = psutil.Process(self.reaper.pid).children(recursive=True)
        left = [_describe(p) for p in alive] + [f"unrecorded {_describe(p)}" for p in adopted if p not in alive]
        for process in [*alive, *adopted]:
            try:
                process.kill()
            except psutil.Error:
                pass
        self.reaper.kill()
        self.reaper.wait()
        return left


def test_cli_run_killed_with_sigkill_leaves_no_descendant_alive(tmp_path):
    """`space run` SIGKILLed while its difficulty rollouts run (transformers engine): the temporary Prefect server
    and everything else it started are gone soon after."""
    args = plain_recipe_args(tmp_path, _numbered(16), "verifier.name=exact", "curate.clusters.num_clusters=2",
                             "curate.selection.per_cluster=2", "engine.kind=transformers")
    command = Command(tmp_path / "home", ["run", *args])
    command.wait_for([lambda d: "prefect.server" in d], timeout=400)
    while command.running() and not any(
            line.startswith("difficulty rollouts") and "started" in line for line in command.lines):
        command.record()
        time.sleep(0.2)
    start = time.monotonic()
    assert command.survivors(timeout=60) == []
    assert time.monotonic() - start < 30  # the watchdog looks every 0.5 s; the server stops on SIGTERM


@pytest.mark.vllm
def test_cli_curate_killed_with_sigkill_while_a_spawned_vllm_engine_core_runs_leaves_it_dead(tmp_path):
    """`space curate` on the vLLM engine with the engine core in its own process (VLLM_ENABLE_V1_MULTIPROCESSING=1,
    vLLM's default off CPU): SIGKILLed once that process exists, nothing it started survives."""
    pytest.importorskip("vllm")
    args = plain_recipe_args(tmp_path, _numbered(64), "verifier.name=exact", "curate.clusters.num_clusters=2",
                             "curate.selection.per_cluster=2", "engine.kind=vllm", "engine.max_model_len=256")
    command = Command(tmp_path / "home", ["curate", *args], VLLM_ENABLE_V1_MULTIPROCESSING="1",
                      VLLM_LOGGING_LEVEL="WARNING")
    described = command.wait_for([lambda d: "prefect.server" in d, lambda d: "EngineCore" in d], timeout=480)
    assert any("flows/watchdog.py" in d for d in described), described
    start = time.monotonic()
    assert command.survivors(timeout=60) == []
    assert time.monotonic() - start < 45


def _ray_processes(temp_dir: str) -> list[str]:
    """Every process on the machine whose command line names this test's Ray session folder."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if temp_dir in line]


def test_cli_curate_killed_with_sigkill_on_a_local_ray_cluster_leaves_no_ray_process(tmp_path):
    """`space curate` with `runner: ray` starts a local cluster (gcs_server, raylet, workers running the shard
    tasks); SIGKILLed once a worker runs, no process of that cluster (nor the Prefect server) survives."""
    pytest.importorskip("ray")
    pytest.importorskip("prefect_ray")
    ray_home = tempfile.mkdtemp(prefix="ray-home-")
    temp_dir = tempfile.mkdtemp(prefix="rayk-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    args = plain_recipe_args(tmp_path, _numbered(48), "verifier.name=exact", "curate.clusters.num_clusters=2",
                             "curate.selection.per_cluster=2", "engine.kind=transformers", "runner=ray",
                             f"ray.temp_dir={temp_dir}", "ray.num_cpus=2", "ray.object_store_memory_mib=100",
                             "ray.shard_size=16", "ray.batch_size=8")
    try:
        command = Command(tmp_path / "home", ["curate", *args], HOME=ray_home, RAY_AUTH_MODE="disabled",
                          RAY_USAGE_STATS_ENABLED="0")
        described = command.wait_for([  # a worker running a shard task, not an idle one or an agent
            lambda d: "prefect.server" in d, lambda d: "gcs_server" in d, lambda d: "raylet" in d,
            lambda d: " ray::" in d and not any(word in d for word in ("IDLE", "Agent"))], timeout=480)
        assert any(" ray::DashboardAgent" in d for d in described), described  # what outlived a bare kill
        assert command.survivors(timeout=60) == []
        assert _ray_processes(temp_dir) == []  # none escaped the tree before it was recorded
    finally:
        for line in _ray_processes(temp_dir):  # only this test's cluster, should the assertions fail
            os.kill(int(line.split(None, 1)[0]), signal.SIGKILL)
        shutil.rmtree(ray_home, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _runs_flows_in_process(source: str) -> bool:
    return any(f"from flows.{stage} import" in source for stage in ("bootstrap", "curate", "train", "run"))


def test_every_infra_script_that_runs_flows_in_process_starts_the_watchdog():
    """The benchmark scripts that call space's flows themselves (so start Prefect's temporary server in their own
    process) start the watchdog in `main`, as the CLI does; a script without it fails here by name."""
    scripts = sorted((ROOT / "infra").glob("*.py"))
    running = [p for p in scripts if _runs_flows_in_process(p.read_text())]
    assert len(running) >= 6, [p.name for p in running]
    assert [p.name for p in running if "start_watchdog()" not in p.read_text()] == []


def test_an_infra_script_killed_with_sigkill_leaves_no_prefect_server(tmp_path):
    """`infra/bench_models.py` (a script that runs the bootstrap flow in its own process) SIGKILLed once Prefect's
    temporary server runs: the server and everything else it started are gone soon after."""
    command = Command(tmp_path / "home", ["--pool", "16"], script=str(ROOT / "infra" / "bench_models.py"))
    described = command.wait_for([lambda d: "prefect.server" in d], timeout=300)
    assert "bench_models.py" in _describe(command.me), described
    time.sleep(2 * INTERVAL_SECONDS)  # the watchdog may miss a child newer than its last look (flows/watchdog.py)
    assert command.survivors(timeout=60) == []
    assert any("flows/watchdog.py" in d for d in command.record() + described), described
