"""MLflow going away in the middle of `space train`, against a real `mlflow server` on loopback.

The server is killed while epoch 2 of 3 trains. The run finishes the epoch, writes its checkpoint, then
fails when it logs the epoch: after MLflow's HTTP retries, one paragraph naming the tracking URI, exit 2, no
traceback. With the server back (same store), `space train` resumes: the finished epochs are not trained
again, and MLflow holds one train run (the interrupted one, resumed) that ends FINISHED.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest_servers import free_port, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(Path(__file__).parent / "recipes" / "e2e.yaml")
CURATED_STAGES = ("data", "fit-context", "embed", "difficulty", "features", "cluster", "select", "train-data")


def _start_mlflow(store: Path, port: int) -> subprocess.Popen:
    """`mlflow server` with its SQLite store in `store`, healthy or the test fails with its log."""
    store.mkdir(parents=True, exist_ok=True)
    log = open(store / "server.log", "a")  # noqa: SIM115  (kept open for the server's lifetime)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                             f"sqlite:///{store / 'mlflow.db'}", "--default-artifact-root", str(store / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (store / "server.log").read_text()[-3000:]
        time.sleep(0.5)


def _curated_home(home: Path) -> Path:
    """A SPACE_HOME holding the session's models and finished curation (training starts at once)."""
    from space.paths import space_home

    for stage in CURATED_STAGES:
        shutil.copytree(space_home() / "artifacts" / stage, home / "artifacts" / stage)
    shutil.copytree(space_home() / "models", home / "models")
    return home


def _space_train(home: Path, uri: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH")}
    env.update(SPACE_HOME=str(home), SPACE_PROGRESS="plain", MLFLOW_TRACKING_URI=uri,
               MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "train", "--recipe", RECIPE], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(2400)
def test_mlflow_dying_mid_run_names_the_uri_keeps_checkpoints_and_the_rerun_resumes(e2e_run, tmp_path):
    from mlflow.tracking import MlflowClient

    home, store, port = _curated_home(tmp_path / "home"), tmp_path / "mlflow", free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_mlflow(store, port)
    try:
        proc = _space_train(home, uri)
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("train epoch 2/3: started"):
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                break
        output = "".join(seen) + proc.communicate(timeout=1200)[0]
        assert proc.returncode == 2, output
        assert f"TrackingError: MLflow at {uri} cannot be reached while" in output, output[-3000:]
        assert "Traceback" not in output
        [run_dir] = (home / "artifacts" / "train").iterdir()
        from space.train.checkpoint import verify_checkpoint

        assert verify_checkpoint(run_dir / "epoch_001" / "checkpoint")["epoch"] == 1  # epoch 2 of 3, finished
        assert not (run_dir / "epoch_002").exists()

        server = _start_mlflow(store, port)
        resumed = _space_train(home, uri)
        output = resumed.communicate(timeout=1200)[0]
        assert resumed.returncode == 0, output[-3000:]
        assert "train epoch 1/3: started" not in output and "train epoch 2/3: started" not in output
        assert "train epoch 3/3: started" in output
        client = MlflowClient(uri)
        [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
        train_runs = client.search_runs([experiment.experiment_id], "tags.`space.stage` = 'train'")
        assert [r.info.status for r in train_runs] == ["FINISHED"]
        assert train_runs[0].data.metrics["final/eval/all/greedy_acc"] == e2e_run["final_eval"]["eval/all/greedy_acc"]
    finally:
        stop_process(server)
