"""Fault injection: `space run` killed with SIGKILL at five points, re-run after each, ends where an
uninterrupted run ends.

One SPACE_HOME of the test's own, one chain of `space run` processes on the e2e recipe; each is killed (the
whole process group, Prefect's server included) when its console shows the next kill point:

  1. bootstrap        - the tiny model's SFT has started
  2. curation         - embedding is finished, difficulty rollouts have started
  3. evaluation       - the base model's evaluation has started
  4. mid-epoch        - epoch 2 of 3 is training
  5. between epochs   - epochs 1 and 2 and their evaluations are done, epoch 3 is about to train

then a last `space run` finishes. Checked: every finished stage folder, model and epoch checkpoint that
existed before a re-run is untouched by it (same files, same modification times: nothing finished is
recomputed, only the interrupted piece); the final state equals the session's uninterrupted run (tiny model
weights, curated table, every epoch's order, allocation and bandit state, final weights and held-out
metrics); MLflow holds exactly one run per stage (parent, curate, train, eval), all FINISHED: killed runs
were resumed, not duplicated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(Path(__file__).parent / "recipes" / "e2e.yaml")
MANIFESTS = ("space_manifest.json",)
KILL_POINTS = [  # (name, console line that triggers the kill, seconds to wait after it)
    ("bootstrap", re.compile(r"^bootstrap: SFT of the tiny model: started"), 0.5),
    ("between curation stages", re.compile(r"^difficulty rollouts .*: started"), 0.0),
    ("during evaluation", re.compile(r"^evaluate-base .*: started"), 0.5),
    ("mid-epoch", re.compile(r"^train epoch 2/3: started"), 0.5),
    ("between epochs", re.compile(r"^train epoch 3/3: started"), 0.0),
]


def _space_run(home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI")}
    env.update(SPACE_HOME=str(home), SPACE_PROGRESS="plain")
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--recipe", RECIPE], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_until(home: Path, marker: re.Pattern | None, delay: float) -> str:
    """One `space run`; with a marker, SIGKILL its process group `delay` s after the first matching line."""
    proc = _space_run(home)
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if marker is not None and marker.search(line):
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "".join(lines)
    proc.wait()
    output = "".join(lines)
    assert marker is None, f"exit {proc.returncode} before the kill point {marker.pattern!r}:\n{output[-3000:]}"
    assert proc.returncode == 0, output[-3000:]
    return output


def _finished_files(home: Path) -> dict[str, int]:
    """Every file in a folder that holds a manifest (a finished stage, model or checkpoint) -> mtime in ns."""
    files: dict[str, int] = {}
    for name in MANIFESTS:
        for manifest in home.rglob(name):
            for path in manifest.parent.iterdir():
                if path.is_file():
                    files[str(path.relative_to(home))] = path.stat().st_mtime_ns
    return files


def _train_run_dir(home: Path) -> Path:
    [run_dir] = [p for p in (home / "artifacts" / "train").iterdir() if p.is_dir() and not p.name.endswith(".tmp")]
    return run_dir


@pytest.fixture(scope="module")
def killed_chain(e2e_run, tmp_path_factory):
    """The chain of killed runs and the final one in a fresh SPACE_HOME; what each re-run touched."""
    home = tmp_path_factory.mktemp("resume") / "home"
    before: dict[str, int] = {}
    touched: dict[str, list[str]] = {}  # kill point -> finished files the *next* run rewrote or removed
    seen: list[str] = []
    epochs_at_kill: dict[str, list[str]] = {}
    models_at_kill: dict[str, list[str]] = {}
    finished_at_kill: dict[str, int] = {}
    for index, (name, marker, delay) in enumerate([*KILL_POINTS, ("finish", None, 0.0)]):
        output = _run_until(home, marker, delay)
        after = _finished_files(home)
        if index:
            touched[KILL_POINTS[index - 1][0]] = sorted(p for p, t in before.items() if after.get(p) != t)
        seen.append(output)
        if marker is not None:
            epochs = home.glob("artifacts/train/*/epoch_*/space_manifest.json")
            epochs_at_kill[name] = sorted(p.parent.name for p in epochs)
            models_at_kill[name] = sorted(p.parent.name for p in home.glob("models/*/space_manifest.json"))
            finished_at_kill[name] = len(after)
        before = after
    return {"home": home, "touched": touched, "outputs": seen, "reference": e2e_run,
            "epochs_at_kill": epochs_at_kill, "models_at_kill": models_at_kill,
            "finished_at_kill": finished_at_kill}


@pytest.mark.timeout(3600)
def test_each_rerun_leaves_everything_finished_before_the_kill_untouched(killed_chain):
    counts = killed_chain["finished_at_kill"]
    assert all(counts[name] > 0 for name, _, _ in KILL_POINTS[1:]), counts  # something finished to protect
    assert killed_chain["touched"] == {name: [] for name, _, _ in KILL_POINTS}


def test_each_kill_landed_in_its_phase_and_the_next_run_redid_only_that_piece(killed_chain):
    out, epochs = killed_chain["outputs"], killed_chain["epochs_at_kill"]
    started = lambda text, label: f"{label}: started" in text  # noqa: E731  (a progress bar's first line)
    # 1. bootstrap killed before the model was finished: the next run trains it again, then embeds
    assert killed_chain["models_at_kill"]["bootstrap"] == []
    assert started(out[1], "bootstrap: SFT of the tiny model") and started(out[1], "embed")
    # 2. killed after embedding: the next run does not embed again but rolls out for difficulty
    assert not started(out[2], "embed") and re.search(r"^difficulty rollouts .*: started", out[2], re.M)
    # 3. killed in the base evaluation: the next run evaluates the base model again, then trains
    assert not re.search(r"^difficulty rollouts", out[3], re.M) and re.search(r"^evaluate-base .*: started", out[3], re.M)
    assert epochs["during evaluation"] == []
    # 4. killed while epoch 2 trained: epoch 1 stays, the next run trains epoch 2 again and not epoch 1
    assert epochs["mid-epoch"] == ["epoch_000"]
    assert not started(out[4], "train epoch 1/3") and started(out[4], "train epoch 2/3")
    assert not re.search(r"^evaluate-base", out[4], re.M)
    # 5. killed between epochs 2 and 3: the last run trains epoch 3 only
    assert epochs["between epochs"] == ["epoch_000", "epoch_001"]
    assert not started(out[5], "train epoch 2/3") and started(out[5], "train epoch 3/3")


def test_final_state_equals_the_uninterrupted_run(killed_chain):
    home, reference = killed_chain["home"], killed_chain["reference"]
    ref_run_dir = Path(reference["model_dir"]).parents[1]
    [tiny] = (home / "models").glob("tiny-*/model.safetensors")
    ref_tiny = Path(os.environ["SPACE_HOME"]) / "models" / tiny.parent.name / "model.safetensors"
    threads = [json.loads((t.parent / "space_manifest.json").read_text())["torch_threads"] for t in (tiny, ref_tiny)]
    assert threads[0] == threads[1], f"torch thread counts differ (chain, reference): {threads}"
    assert tiny.read_bytes() == ref_tiny.read_bytes()
    run_dir = _train_run_dir(home)
    assert run_dir.name == ref_run_dir.name
    [select_dir] = (home / "artifacts" / "select").iterdir()
    for name in ("curation.parquet", "reduced.parquet"):
        ref_table = Path(os.environ["SPACE_HOME"]) / "artifacts" / "select" / select_dir.name / name
        assert pl.read_parquet(select_dir / name).equals(pl.read_parquet(ref_table)), name
    for epoch in range(3):
        ours = json.loads((run_dir / f"epoch_{epoch:03d}" / "space_manifest.json").read_text())
        theirs = json.loads((ref_run_dir / f"epoch_{epoch:03d}" / "space_manifest.json").read_text())
        assert ours["order"] == theirs["order"] and ours["arms"] == theirs["arms"]
        assert json.loads(Path(ours["state"]).read_text()) == json.loads(Path(theirs["state"]).read_text())
    final = run_dir / "epoch_002" / "checkpoint" / "model.safetensors"
    assert final.read_bytes() == (Path(reference["model_dir"]) / "model.safetensors").read_bytes()


def test_mlflow_holds_one_finished_run_per_stage(killed_chain):
    from mlflow.tracking import MlflowClient

    home, reference = killed_chain["home"], killed_chain["reference"]
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["space.stage"] for r in runs) == ["curate", "eval", "run", "train"]
    assert all(r.info.status == "FINISHED" for r in runs)
    [parent] = [r for r in runs if r.data.tags["space.stage"] == "run"]
    assert parent.data.metrics["final/eval/all/greedy_acc"] == reference["final_eval"]["eval/all/greedy_acc"]
    assert parent.data.metrics["final/eval/all/pass_at_1"] == reference["final_eval"]["eval/all/pass_at_1"]
