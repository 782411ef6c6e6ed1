"""Stage caches are trusted only when the code and the files match: on real Prefect (ephemeral server).

A changed code hash reruns a cached Prefect task in a new stage folder; a truncated artifact is found by
its manifest's sha256 and either recomputed (its own stage) or reported by name (a downstream stage).
"""

import json

import polars as pl
import pytest

from space.data.sources import DataConfig

DATA = DataConfig(pool_size=12, eval_size=6, sft_size=6, seed=5)


def _probe_flow():
    import tasks  # noqa: F401  (first: it points Prefect's storage at the test SPACE_HOME)
    from prefect import flow
    from tasks.curate import load_data

    @flow(name="cache-probe")
    def probe() -> tuple[str, dict]:
        state = load_data(DATA, return_state=True)
        return state.name, state.result()

    return probe


def _load_twice_then_with_new_code(monkeypatch):
    from tasks import common

    probe = _probe_flow()
    first, second = probe(), probe()
    monkeypatch.setattr(common, "function_code_key", lambda fn: "edited-code")
    return first, second, probe()


@pytest.mark.slow
def test_a_new_code_hash_reruns_a_cached_task_in_a_new_folder(monkeypatch):
    (_, first), (state2, second), (state3, third) = _load_twice_then_with_new_code(monkeypatch)
    assert state2 == "Cached" and second["dir"] == first["dir"]
    assert state3 == "Completed" and third["dir"] != first["dir"], (state3, third["dir"], first["dir"])
    assert third["pool"]["sha"] == first["pool"]["sha"]  # same data, recomputed


@pytest.mark.slow
def test_another_space_home_never_gets_this_homes_cached_result(monkeypatch, tmp_path):
    """One Prefect result store (a worker's, ~/.prefect) serving two homes: each home computes its own."""
    probe = _probe_flow()
    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "a"))
    first, again = probe(), probe()
    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "b"))
    other = probe()
    assert first[0] == "Completed" and again == ("Cached", first[1])
    assert other[0] == "Completed" and other[1]["dir"].startswith(str(tmp_path / "b")), other
    assert other[1]["pool"]["sha"] == first[1]["pool"]["sha"]


@pytest.mark.slow
def test_a_cached_result_whose_folder_was_deleted_runs_again_then_caches(monkeypatch, tmp_path):
    """Prefect's record outlives its stage folder: the task runs again instead of handing dead paths on."""
    import shutil
    from pathlib import Path

    probe = _probe_flow()
    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "home"))
    first = probe()
    shutil.rmtree(first[1]["dir"])
    rerun, after = probe(), probe()
    assert first[0] == "Completed" and rerun[0] == "Completed", (first[0], rerun[0])
    assert Path(rerun[1]["pool"]["path"]).is_file() and rerun[1]["pool"]["sha"] == first[1]["pool"]["sha"]
    # the rerun rebuilt the same folder, so the first record is intact again and is the one served
    assert after[0] == "Cached" and after[1]["dir"] == rerun[1]["dir"] == first[1]["dir"], after


def test_result_problems_names_missing_files_of_each_result_shape(tmp_path):
    from tasks.common import result_problems

    manifest = _stage(tmp_path / "stage")
    model = tmp_path / "model"
    model.mkdir()
    assert result_problems(manifest) == [] and result_problems({"path": str(model), "sha": "x"}) == []
    assert result_problems({"arm": "spaced", "gains": {}}) == [] and result_problems(["not", "a", "dict"]) == []
    (tmp_path / "stage" / "table.parquet").unlink()
    model.rmdir()
    assert result_problems(manifest) == [f"{tmp_path / 'stage' / 'table.parquet'}: missing"]
    assert result_problems({"path": str(model), "sha": "x"}) == [f"{model}: missing"]


def _stage(tmp_path):
    from tasks.common import write_manifest

    (tmp_path / "sub").mkdir(parents=True)
    pl.DataFrame({"x": list(range(100))}).write_parquet(tmp_path / "table.parquet")
    (tmp_path / "sub" / "state.json").write_text(json.dumps({"a": 1}))
    return write_manifest(tmp_path, {"path": str(tmp_path / "table.parquet"), "sha": "unused"})


def test_manifest_records_every_file_and_reads_back(tmp_path):
    from tasks.common import file_sha256, read_manifest

    manifest = _stage(tmp_path)
    assert manifest["files"] == {"sub/state.json": file_sha256(tmp_path / "sub" / "state.json"),
                                 "table.parquet": file_sha256(tmp_path / "table.parquet")}
    assert read_manifest(tmp_path) == manifest


def test_truncated_artifact_is_not_reused_and_is_named_downstream(tmp_path):
    from tasks.common import ArtifactError, read_manifest, verify_files

    manifest = _stage(tmp_path)
    data = (tmp_path / "table.parquet").read_bytes()
    (tmp_path / "table.parquet").write_bytes(data[: len(data) // 2])
    assert read_manifest(tmp_path) is None  # the stage recomputes
    with pytest.raises(ArtifactError, match=r"table\.parquet: content differs"):
        verify_files(manifest)
    (tmp_path / "sub" / "state.json").unlink()
    with pytest.raises(ArtifactError, match=r"sub/state\.json: missing"):
        verify_files(manifest)


def test_a_part_of_a_manifest_is_checked_by_its_path_and_sha(tmp_path):
    from tasks.common import ArtifactError, file_sha256, verify_files

    path = tmp_path / "pool.parquet"
    pl.DataFrame({"x": [1, 2, 3]}).write_parquet(path)
    part = {"path": str(path), "sha": file_sha256(path)}
    verify_files(part)
    path.write_bytes(b"PAR1")
    with pytest.raises(ArtifactError, match="pool.parquet"):
        verify_files(part)


def test_corrupt_manifest_means_recompute(tmp_path):
    from tasks.common import read_manifest

    _stage(tmp_path)
    (tmp_path / "space_manifest.json").write_text('{"files": ')
    assert read_manifest(tmp_path) is None


def test_truncated_data_stage_is_recomputed_by_its_task(tmp_path, monkeypatch):
    from tasks.common import file_sha256
    from tasks.curate import load_data

    monkeypatch.setenv("SPACE_HOME", str(tmp_path))
    first = load_data.fn(DATA)
    pool = tmp_path / "artifacts" / "data"
    [path] = pool.glob("*/pool.parquet")
    path.write_bytes(path.read_bytes()[:100])
    again = load_data.fn(DATA)
    assert again["pool"]["sha"] == first["pool"]["sha"] == file_sha256(path)


PROBE = """
import sys
import tasks
from prefect import flow
from space.data.sources import DataConfig
from tasks.curate import load_data

@flow(name="code-probe")
def probe():
    state = load_data(DataConfig(pool_size=12, eval_size=6, sft_size=6, seed=5), return_state=True)
    return state.name, state.result()["dir"]

print("RESULT", *probe())
"""


def _probe_in_copy(root, home):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(root), SPACE_HOME=str(home))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=root,
                         timeout=600, check=True)
    [line] = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return tuple(line.split()[1:])


@pytest.mark.slow
def test_editing_a_function_in_a_copy_of_the_package_recomputes_the_stage(tmp_path):
    """A real edit, in a real copy of space and tasks, in fresh processes: cached before, recomputed after."""
    import shutil
    from pathlib import Path

    import space

    source = Path(space.__file__).resolve().parent.parent
    for package in ("space", "tasks"):
        shutil.copytree(source / package, tmp_path / "code" / package, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    first, again = _probe_in_copy(tmp_path / "code", home), _probe_in_copy(tmp_path / "code", home)
    data_py = tmp_path / "code" / "space" / "data" / "rows.py"
    text = data_py.read_text()
    assert 'return " ".join(text.split()).casefold()' in text
    edit = ('return " ".join(text.split()).casefold()', 'return " ".join(text.split()).lower()')
    data_py.write_text(text.replace(*edit))
    edited = _probe_in_copy(tmp_path / "code", home)
    assert first[0] == "Completed" and again == ("Cached", first[1])
    assert edited[0] == "Completed" and edited[1] != first[1]


def test_open_stage_reuses_a_finished_folder_and_checks_inputs_only_for_a_stage_that_runs(tmp_path, monkeypatch):
    from tasks.common import ArtifactError, open_stage, write_manifest

    monkeypatch.setenv("SPACE_HOME", str(tmp_path))
    first = open_stage("probe", "a")
    assert first.done is None and first.dir.is_dir() and first.dir.is_relative_to(tmp_path)
    (first.dir / "x.txt").write_text("x")
    write_manifest(first.dir, {"n": 1})
    again = open_stage("probe", "a")
    assert again.dir == first.dir and again.done["n"] == 1
    upstream = {"path": str(tmp_path / "up.txt"), "sha": "0" * 16}
    (tmp_path / "up.txt").write_text("not what the manifest recorded")
    with pytest.raises(ArtifactError, match="up.txt: content differs"):
        open_stage("probe", "b", inputs=(upstream,))
    assert open_stage("probe", "a", inputs=(upstream,)).done["n"] == 1  # finished: its inputs are not re-read
