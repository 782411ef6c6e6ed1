"""`space run` with train.distributed.processes=2 under kills (issue 21, item 4(d)), at the flow level.

One SPACE_HOME of the test's own, one chain of four `space run` processes (each in a process group of its own)
on the e2e recipe with a tiny random Llama (no SFT), 2 epochs of 32 slots, B=2 prompts per step (16 optimiser
steps per epoch, one prompt x G per rank):

  1. rank 1 of epoch 2's torchrun job is SIGKILLed (found with psutil among the command's descendants) once it
     logged its first step: the command fails with an error naming rank 1 and the signal; epoch 1 stays
     finished, epoch 2 has no manifest and no checkpoint.
  2. the re-run starts epoch 2's job again; once both ranks logged a step, the `space` process alone is
     SIGKILLed (as `kill -9 PID` does): torchrun, both ranks and everything else it started are gone soon
     after (flows/watchdog.py), before rank 0 could write epoch 2's checkpoint.
  3. the same with the command's whole process group SIGKILLed (`kill -9 -PGID`: the watchdog and torchrun
     die with it; the ranks, which torchrun puts in sessions of their own, die with torchrun).
  4. the last re-run trains epoch 2 only, from epoch 1's checkpoint (global step 16 -> 32), and completes.

Checked as tests/test_resume.py checks one process: no re-run touches epoch 1's finished files or trains
epoch 1 again, and MLflow holds one finished run per stage.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest_cli import ROOT, cli_env
from conftest_models import make_tiny_model_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(ROOT / "tests" / "recipes" / "e2e.yaml")
SETS = ["name=e2e-dp-faults", "train.epochs=2", "train.slots_per_epoch=32", "train.grpo.prompts_per_step=2",
        "train.distributed.processes=2"]
EPOCH_2 = "train epoch 2/2: started"
TIMEOUT = 1200  # seconds for one `space run` to reach its kill point or its end on the shared cores


def start(home: Path, model: Path, log: Path) -> subprocess.Popen:
    args = [a for item in [f"model.name={model}", *SETS] for a in ("--set", item)]
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--recipe", RECIPE, *args],
                                env=cli_env(home), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a process group of its own, to kill as a whole


def ranks(pid: int) -> dict[int, psutil.Process]:
    """The torchrun workers among `pid`'s descendants, by their RANK."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "space.train.dp_worker" in child.cmdline():
                found[int(child.environ()["RANK"])] = child
        except (psutil.Error, KeyError):
            continue
    return found


def wait_for_step(proc: subprocess.Popen, log: Path, wanted: tuple[int, ...]) -> dict[int, psutil.Process]:
    """Once epoch 2 runs and every rank in `wanted` printed its first step of it: the ranks (rank -> process)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if EPOCH_2 in log.read_text(errors="replace"):
            workers = ranks(proc.pid)
            if sorted(workers) == [0, 1]:
                launcher_log = Path(workers[0].cmdline()[-1]) / "launcher.log"  # the job folder is the last argument
                text = launcher_log.read_text(errors="replace") if launcher_log.exists() else ""
                if all(f"rank {r}: epoch 1 step 1/16" in text for r in wanted):
                    return workers
        time.sleep(0.05)
    raise AssertionError(f"no kill point (exit {proc.poll()}):\n{log.read_text(errors='replace')[-3000:]}")


def finished_epoch_files(home: Path) -> dict[str, int]:
    """Every file of a finished epoch (a folder holding its manifest) -> modification time in ns."""
    return {str(p.relative_to(home)): p.stat().st_mtime_ns
            for manifest in home.glob("artifacts/train/*/epoch_*/space_manifest.json")
            for p in manifest.parent.rglob("*") if p.is_file()}


def kill_space(proc: subprocess.Popen, log: Path, group: bool) -> dict:
    """Once epoch 2's ranks both logged a step, SIGKILL `space` (its pid, or its whole process group: torchrun
    and the watchdog with it); what it had started and what of it is left."""
    workers = wait_for_step(proc, log, (0, 1))
    descendants = psutil.Process(proc.pid).children(recursive=True)
    found = {"commands": [" ".join(p.cmdline()) for p in descendants if p.is_running()],
             "ranks": sorted(p.pid for p in workers.values()), "job_dir": Path(workers[0].cmdline()[-1])}
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    _, found["alive"] = psutil.wait_procs(descendants, timeout=90)
    found["stop_seconds"] = time.monotonic() - started
    return found


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp-faults")
    home, model = root / "home", make_tiny_model_dir(root / "tiny")
    logs = [root / f"run{i}.log" for i in (1, 2, 3, 4)]
    epoch_2_checkpoints = lambda: sorted(home.glob("artifacts/train/*/epoch_001/checkpoint*"))  # noqa: E731
    found: dict = {}

    proc = start(home, model, logs[0])  # 1. rank 1 killed mid-epoch 2
    workers = wait_for_step(proc, logs[0], (1,))
    job_dirs = {Path(workers[0].cmdline()[-1])}  # temporary launch folders, kept after a failure: removed below
    workers[1].send_signal(signal.SIGKILL)
    found["first_exit"] = proc.wait(timeout=TIMEOUT)
    found["after_first"] = finished_epoch_files(home)
    found["first_checkpoints"] = epoch_2_checkpoints()

    for index, how in ((1, "pid"), (2, "group")):  # 2., 3. `space` killed while epoch 2's ranks train
        before = epoch_2_checkpoints()
        found[how] = kill_space(start(home, model, logs[index]), logs[index], group=how == "group")
        job_dirs.add(found[how]["job_dir"])
        # ranks left to themselves would finish the epoch's 15 remaining steps (seconds, not the watchdog's
        # half-second look and SIGTERM) and rank 0 would write a checkpoint
        found[how]["checkpoints"] = [c for c in epoch_2_checkpoints() if c not in before]

    proc = start(home, model, logs[3])  # 4. to the end
    found["last_exit"] = proc.wait(timeout=TIMEOUT)
    found["after_last"] = finished_epoch_files(home)
    found["outputs"] = [log.read_text(errors="replace") for log in logs]
    found["home"] = home
    yield found
    for folder in job_dirs:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(3600)
def test_a_killed_rank_fails_the_run_with_an_error_naming_it(chain):
    first = chain["outputs"][0]
    assert chain["first_exit"] != 0, first[-3000:]
    assert re.search(r"epoch 1: rank 1 \(local rank 1\) was killed by signal 9", first), first[-3000:]
    epochs = sorted(Path(p).parts[3] for p in chain["after_first"] if Path(p).parts[4:] == ("space_manifest.json",))
    assert epochs == ["epoch_000"] and chain["first_checkpoints"] == []  # epoch 2 left nothing finished


@pytest.mark.parametrize("how", ["pid", "group"])
def test_killing_space_leaves_no_torchrun_or_rank_alive(chain, how):
    """`kill -9 PID`: the watchdog stops torchrun and the ranks; `kill -9 -PGID` takes the watchdog and torchrun
    down with `space`, and the ranks (in sessions of their own) die with torchrun (space/train/dp_worker.py)."""
    killed = chain[how]
    assert len(killed["ranks"]) == 2 and any("torch.distributed.run" in c for c in killed["commands"]), killed
    assert killed["alive"] == [], [(p.pid, " ".join(p.cmdline())) for p in killed["alive"]]
    assert killed["stop_seconds"] < 30, killed["stop_seconds"]  # the watchdog looks every 0.5 s, SIGKILLs after 10 s
    assert killed["checkpoints"] == []  # stopped, not left to finish the epoch on their own


def test_reruns_resume_from_epoch_1_and_complete(chain):
    from space.train.checkpoint import load_checkpoint

    last = chain["outputs"][-1]
    assert chain["last_exit"] == 0, last[-3000:]
    for output in chain["outputs"][1:]:  # epoch 1 is a cache hit in every re-run, epoch 2 trains again
        assert "train epoch 1/2: started" not in output and EPOCH_2 in output
    before = chain["after_first"]
    assert {p: chain["after_last"][p] for p in before} == before  # epoch 1's files untouched by the re-runs
    [run_dir] = {Path(*Path(p).parts[:3]) for p in chain["after_last"]}  # artifacts/train/<run>
    assert load_checkpoint(chain["home"] / run_dir / "epoch_000" / "checkpoint").global_step == 16
    assert load_checkpoint(chain["home"] / run_dir / "epoch_001" / "checkpoint").global_step == 32


def test_mlflow_holds_one_finished_run_per_stage(chain):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{chain['home'] / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["space.stage"] for r in runs) == ["curate", "eval", "run", "train"]
    assert all(r.info.status == "FINISHED" for r in runs)
