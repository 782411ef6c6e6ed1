"""The pre-flight every `space` command runs before any model, engine or embedding loads (and every flow a
deployment starts: run_flow, curate_job, train_job), and what a failing command prints: one test per row the bad-input
catalogue (docs/data.md) marks `tests/test_preflight.py`; a killed command is tests/test_killed_command.py.

CLI cases run `python -m flows.cli` in a subprocess with a SPACE_HOME of their own; the MLflow and Prefect probes
meet a real closed port.
"""

import re

import pytest
from conftest_cli import ROOT, plain_recipe_args, run_cli
from conftest_servers import free_port


def _numbered(n: int) -> list[dict]:
    return [{"question": f"What is {i} times 3?", "answer": str(3 * i)} for i in range(n)]


def test_cli_unreachable_mlflow_fails_the_preflight_in_seconds_naming_the_uri(tmp_path):
    import time

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    out = run_cli(tmp_path, "curate", MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"MLflow: {uri} cannot be reached" in out.stderr and "unset MLFLOW_TRACKING_URI" in out.stderr
    assert "Retrying" not in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "models").exists()  # nothing was built
    assert elapsed < 60, elapsed  # the case ran for 10 minutes; 15 s is the target on a quiet machine


def test_preflight_unreachable_prefect_api_is_named():
    from tasks.probes import probe_prefect

    url = f"http://127.0.0.1:{free_port()}/api"
    check = probe_prefect(url, timeout=2)
    assert not check.ok and check.detail.startswith(f"{url} cannot be reached") and "PREFECT_API_URL" in check.detail


def test_cli_reasoning_gym_verifier_on_plain_rows_fails_before_any_model_naming_the_key(tmp_path):
    args = plain_recipe_args(tmp_path, _numbered(12), "curate.clusters.num_clusters=2")
    out = run_cli(tmp_path / "home", "curate", *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "verifier.name = 'reasoning_gym'" in out.stderr and "('source_dataset')" in out.stderr
    assert "9 of 9 pool rows" in out.stderr and "one of exact, math, numeric" in out.stderr
    assert "verifier  FAILED" in out.stderr  # the pre-flight block, on stderr when it fails
    assert not (tmp_path / "home" / "artifacts" / "embed").exists()  # no embedding, no engine ran


def test_preflight_data_sizes_name_the_pool_left_and_what_curation_needs():
    from space.preflight import pool_size_check

    check = pool_size_check(1, 1, "pool: read 3 rows, kept 1; skipped 2 bad", num_clusters=4, per_cluster=2,
                            needs_eval=True)
    assert not check.ok
    assert check.detail.startswith("the pool has 1 usable rows, but curation needs at least 4 "
                                   "(curate.clusters.num_clusters = 4 clusters, and 2 rows for the features' PCA)")
    assert check.detail.endswith("[pool: read 3 rows, kept 1; skipped 2 bad]")
    no_eval = pool_size_check(10, None, "", num_clusters=2, per_cluster=2, needs_eval=True)
    assert not no_eval.ok and "has none: set data.eval_path" in no_eval.detail
    assert pool_size_check(10, 3, "", 2, 8, needs_eval=True).detail == (
        "pool 10 rows, eval 3; K x l = 2 x 8 = 16 (no reduction: selection keeps every prompt)")
    assert pool_size_check(100, 3, "", 2, 8, needs_eval=True, train_pool="informative").detail == (
        "pool 100 rows, eval 3; K x l = 2 x 8 = 16 kept as representatives; training uses every prompt the "
        "reference model solves sometimes, measured or predicted (train.pool: informative)")


def test_preflight_disk_below_the_estimate_fails_naming_space_home():
    from space.preflight import GB, MB, disk_check, disk_estimate

    estimate, how = disk_estimate(100 * MB, epochs=3, cells=2)
    assert estimate == 2 * (11 * 100 * MB + GB // 2)
    check = disk_check("/data/space", int(1.5 * GB), estimate, how)
    assert not check.ok
    assert check.detail.startswith("1.5 GB free under /data/space, the estimate is 3.1 GB (2 runs x [model 100 MB ")
    assert check.detail.endswith("point SPACE_HOME at a larger disk")
    assert disk_check("/data/space", 4 * GB, estimate, how).ok


@pytest.mark.slow
def test_cli_failing_task_prints_only_spaces_paragraph_unless_verbose(tmp_path):
    rows = [*_numbered(12), {"question": "x" * 3000, "answer": "1"}]  # one prompt too long for the 512 context
    args = ("curate", *plain_recipe_args(tmp_path, rows, "verifier.name=exact", "curate.clusters.num_clusters=2",
                                     "data.bad_rows=reject"))
    out = run_cli(tmp_path / "home", *args)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.splitlines()  # the paragraph and its hint, nothing else
    assert len(lines) == 2 and lines[1] == "(run `space --debug ...` for the traceback)", out.stderr
    assert re.match(r"error: DataError: (pool|eval): 1 prompts do not fit the model's context of 512 tokens", lines[0])
    verbose = run_cli(tmp_path / "home", "--verbose", *args)  # the lines the quiet console leaves to Prefect's log
    assert verbose.returncode == 2 and "Finished in state Failed" in verbose.stdout + verbose.stderr


# ------------------------------------------------------------------ a flow a deployment runs, called directly


def _plain_recipe(tmp_path, rows, *sets):
    """The builtin recipe on a plain question/answer jsonl pool (a quarter held out); model and verifier as shipped."""
    import json

    from space.config import load_recipe

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return load_recipe("builtin", ["data.source=hf", f"data.path={path}", "data.eval_fraction=0.25", *sets])


def test_a_flow_skips_the_preflight_the_cli_just_passed_for_the_same_recipe(tmp_path, monkeypatch):
    """The CLI runs the pre-flight, then the flow: the block is printed once. The pass is used up by that flow
    (CI once ran a deployment test after a CLI test had passed the same bench in the process, and the flow
    skipped its check of a dead MLflow); another recipe, command or tracking URI is checked again."""
    from flows.preflight import _PASSED, _key, flow_preflight, preflight

    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    recipe = _plain_recipe(tmp_path, _numbered(12), "verifier.name=exact", "curate.clusters.num_clusters=2")
    printed = []
    checks = preflight("curate", {recipe.name: recipe}, lambda message, err=False: printed.append(message))
    assert [c.name for c in checks] == ["MLflow", "Prefect", "disk", "data", "verifier", "model"]
    assert len(printed) == 1 and printed[0].startswith("pre-flight (space curate, recipe builtin)")
    assert flow_preflight("curate", {recipe.name: recipe.resolved()}) == []  # nothing printed, nothing checked
    assert _key("curate", {recipe.name: recipe}) not in _PASSED  # the next call of the flow checks again
    key = _key("curate", {recipe.name: recipe})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert _key("curate", {recipe.name: recipe}) != key
    other = recipe.model_copy(update={"seed": 1})
    assert _key("curate", {other.name: other}) != _key("curate", {recipe.name: recipe})
    assert _key("run", {recipe.name: recipe}) != _key("curate", {recipe.name: recipe})


@pytest.mark.slow
@pytest.mark.server
def test_run_and_bench_flows_as_a_deployment_runs_them_fail_the_preflight_on_an_unreachable_mlflow(tmp_path,
                                                                                                   monkeypatch):
    """flows/run.py:run_flow and flows/bench.py:bench_flow (prefect.yaml's entrypoints) called directly, as a
    work-pool worker does: the same pre-flight as the CLI names the MLflow URI in seconds, before any model."""
    import time

    from flows.run import run_flow
    from space.preflight import PreflightError

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "home"))
    start = time.monotonic()
    with pytest.raises(PreflightError, match=re.escape(f"MLflow: {uri} cannot be reached")) as caught:
        run_flow(_plain_recipe(tmp_path, _numbered(12), "verifier.name=exact"))
    assert "unset MLFLOW_TRACKING_URI" in str(caught.value)
    assert time.monotonic() - start < 120  # includes the temporary Prefect server's start for a first flow
    from flows.bench import bench_flow  # the bench deployment's entrypoint, the same way
    from space.analysis.bench import load_bench_spec

    spec = ROOT / "infra" / "bench" / "smoke.yaml"
    with pytest.raises(PreflightError, match=re.escape(f"MLflow: {uri} cannot be reached")):
        bench_flow(load_bench_spec(spec), str(spec.parent), str(tmp_path / "bench"), spec.read_text())
    assert not (tmp_path / "home" / "models").exists()  # nothing was built
    assert time.monotonic() - start < 180


@pytest.mark.slow
@pytest.mark.server
def test_curate_and_train_jobs_fail_the_preflight_on_rows_the_verifier_cannot_score(tmp_path, monkeypatch):
    """flows/jobs.py's curate_job and train_job (deployment entrypoints) on plain rows with the recipe's
    reasoning_gym verifier: the CLI's verifier check, naming the key and the alternatives, before any model,
    embedding or engine."""
    import time

    from flows.jobs import curate_job, train_job
    from space.preflight import PreflightError

    monkeypatch.setenv("SPACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    recipe = _plain_recipe(tmp_path, _numbered(12), "curate.clusters.num_clusters=2")
    for job in (curate_job, train_job):
        start = time.monotonic()
        with pytest.raises(PreflightError, match=re.escape("verifier.name = 'reasoning_gym'")) as caught:
            job(recipe)
        assert "9 of 9 pool rows" in str(caught.value) and "one of exact, math, numeric" in str(caught.value)
        assert time.monotonic() - start < 120
    assert not (tmp_path / "home" / "models").exists()
    assert not (tmp_path / "home" / "artifacts" / "embed").exists()
