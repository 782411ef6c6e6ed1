"""`runner: ray` on a real local Ray cluster (2 CPUs, loopback, no auth, temp HOME and session folder): sharded
curation matches the local runner for the same seed (with propagated difficulty too, whose shards hold only the
measured rows), and a damaged shard is recomputed alone.

Everything is real: Ray (cluster started by prefect-ray's RayTaskRunner), Ray Data actors, Prefect (the test
session's ephemeral server, which the Ray workers report to), MLflow, the transformers engine on a random-init
tiny model (tests/conftest_models.py) and the MiniLM embedder.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("ray")
pytest.importorskip("prefect_ray")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

POOL, SHARD_SIZE = 72, 20  # 4 shards: 20 + 20 + 20 + 12 prompts
RECIPE_OVERRIDES = [f"data.pool_size={POOL}", "data.eval_size=8", "engine.kind=transformers", "curate.difficulty.k=3",
                    "curate.clusters.num_clusters=3", "curate.selection.per_cluster=3"]


def _our_ray_processes(temp_dir: str) -> list[int]:
    """Pids of processes whose command line names our Ray session folder."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if temp_dir in line]


@pytest.fixture(scope="module")
def ray_settings():
    """Environment for a private local cluster; afterwards no process of that cluster may be left."""
    home = tempfile.mkdtemp(prefix="ray-home-")
    temp_dir = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {"HOME": home, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield [f"ray.temp_dir={temp_dir}", "ray.num_cpus=2", "ray.object_store_memory_mib=100",
               f"ray.shard_size={SHARD_SIZE}", "ray.batch_size=8"]
    leftovers = _our_ray_processes(temp_dir)
    for pid in leftovers:  # only the processes of the cluster this module started
        os.kill(pid, signal.SIGTERM)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(temp_dir, ignore_errors=True)
    assert leftovers == [], f"Ray processes still running after the flows: {leftovers}"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from conftest_models import make_tiny_model_dir

    from tasks.common import file_sha256

    directory = make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))
    return {"name": "tiny-random", "path": str(directory), "sha": file_sha256(directory / "model.safetensors")}


def _recipe(*overrides):
    from conftest import E2E_RECIPE

    from space.config import load_recipe

    return load_recipe(E2E_RECIPE, [*RECIPE_OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def local_run(model):
    from flows.curate import curate_flow

    return curate_flow(_recipe(), model)["stages"]


@pytest.fixture(scope="module")
def ray_run(model, ray_settings):
    from flows.curate import curate_flow

    return curate_flow(_recipe("runner=ray", *ray_settings), model)["stages"]


PROPAGATE = ["curate.difficulty.source=propagate", "curate.difficulty.measure_fraction=0.5",
             "curate.difficulty.predictor=knn+likelihood"]


@pytest.fixture(scope="module")
def local_propagated(model):
    from flows.curate import curate_flow

    return curate_flow(_recipe(*PROPAGATE), model)["stages"]


@pytest.fixture(scope="module")
def ray_propagated(model, ray_settings):
    from flows.curate import curate_flow

    return curate_flow(_recipe("runner=ray", *ray_settings, *PROPAGATE), model)["stages"]


def test_ray_run_maps_one_task_per_shard_and_computes_them_all(ray_run):
    for name in ("embed", "difficulty"):
        shards = ray_run[name]["shards"]
        assert [s["rows"] for s in shards] == [20, 20, 20, 12]
        assert {s["state"] for s in shards} == {"Completed"}
        assert len({s["digest"] for s in shards}) == 4


def test_sharded_embeddings_match_the_local_runner(local_run, ray_run):
    from space.curate.embedding import load_embeddings

    local_ids, local = load_embeddings(local_run["embed"]["path"])
    ray_ids, on_ray = load_embeddings(ray_run["embed"]["path"])
    assert ray_ids == local_ids and len(ray_ids) == POOL
    assert on_ray.dtype == np.float32 and on_ray.shape == local.shape
    np.testing.assert_allclose(on_ray, local, atol=1e-5)


def test_sharded_difficulty_matches_the_local_runner(local_run, ray_run):
    local = pl.read_parquet(local_run["difficulty"]["path"])
    on_ray = pl.read_parquet(ray_run["difficulty"]["path"])
    assert on_ray["prompt_id"].to_list() == local["prompt_id"].to_list()
    assert on_ray["solve_rate"].to_list() == local["solve_rate"].to_list()
    assert on_ray.equals(local)  # successes, k, truncated and difficulty too
    rollouts = [pl.read_parquet(run["difficulty"]["rollouts"]) for run in (local_run, ray_run)]
    assert rollouts[0].height == 3 * POOL and rollouts[1].equals(rollouts[0])  # the same completions, sample by sample
    assert rollouts[0]["completion"].n_unique() > POOL  # sampled text, not a constant


def test_sharded_curation_gives_the_same_clusters_and_selection(local_run, ray_run):
    tables = [pl.read_parquet(run["select"]["path"]).sort("prompt_id") for run in (local_run, ray_run)]
    assert tables[0].height == POOL
    assert tables[1]["cluster"].to_list() == tables[0]["cluster"].to_list()
    assert tables[1]["selected"].to_list() == tables[0]["selected"].to_list()
    assert tables[0]["cluster"].n_unique() == 3


def test_a_deleted_shard_is_recomputed_alone(model, ray_run, ray_settings):
    from flows.curate import curate_flow

    damaged = ray_run["difficulty"]["shards"][2]
    target = Path(damaged["dir"]) / "rollouts.parquet"
    before = pl.read_parquet(target)
    others = [Path(s["dir"]) / name for s in ray_run["difficulty"]["shards"] if s is not damaged
              for name in ("difficulty.parquet", "rollouts.parquet")]
    others += [Path(s["dir"]) / "shard.parquet" for s in ray_run["embed"]["shards"]]
    mtimes = {path: path.stat().st_mtime_ns for path in others}
    target.unlink()

    again = curate_flow(_recipe("runner=ray", *ray_settings), model)["stages"]
    assert [s["state"] for s in again["difficulty"]["shards"]] == ["Cached", "Cached", "Completed", "Cached"]
    assert {s["state"] for s in again["embed"]["shards"]} == {"Cached"}
    assert {path: path.stat().st_mtime_ns for path in others} == mtimes  # nothing else was rewritten
    assert pl.read_parquet(target).equals(before)  # the same rollouts again (seeds follow prompt ids)
    assert again["difficulty"]["sha"] == ray_run["difficulty"]["sha"]
    assert again["select"]["sha"] == ray_run["select"]["sha"]


@pytest.mark.vllm
def test_vllm_inside_a_ray_data_actor_draws_the_local_engines_samples(model, ray_settings):
    pytest.importorskip("vllm")
    import ray

    from space.config import load_recipe
    from space.engines import EngineConfig, make_engine
    from space.scaleout import generate_on_actors, init_kwargs

    engine = EngineConfig(kind="vllm", max_model_len=256)
    ray_cfg = load_recipe("builtin", ["runner=ray", *ray_settings, "ray.batch_size=4"]).ray
    ids = [f"q{i}" for i in range(10)]
    prompts = [f"<|user|>what is {i} + {i}?<|assistant|>" for i in range(10)]
    sampling = {"n": 2, "temperature": 1.0, "max_tokens": 12, "seed": 5}
    ray.init(**init_kwargs(ray_cfg, {}))
    try:
        on_ray = generate_on_actors(ids, prompts, engine.model_dump_json(), model["path"], sampling, ray_cfg)
    finally:
        ray.shutdown()
    with make_engine(engine, model["path"]) as local_engine:
        local = local_engine.generate(prompts, prompt_ids=ids, **sampling)
    assert [[c.text for c in group] for group in on_ray] == [[c.text for c in group] for group in local]
    assert on_ray == local  # token counts and finish reasons too
    assert len({c.text for group in local for c in group}) > 10  # sampled, not one constant completion


def test_propagated_difficulty_on_ray_rolls_out_only_the_measured_rows_and_matches_the_local_runner(
        local_propagated, ray_propagated):
    local = pl.read_parquet(local_propagated["difficulty"]["path"])
    on_ray = pl.read_parquet(ray_propagated["difficulty"]["path"])
    measured = local.filter(pl.col("measured"))["prompt_id"].to_list()
    assert 0 < len(measured) < POOL
    shards = ray_propagated["difficulty"]["shards"]
    assert sum(s["rows"] for s in shards) == len(measured) and {s["state"] for s in shards} == {"Completed"}
    assert on_ray.equals(local)  # measured solve rates and predicted difficulty alike
    rollouts = [pl.read_parquet(run["difficulty"]["rollouts"]) for run in (local_propagated, ray_propagated)]
    assert rollouts[1].equals(rollouts[0]) and sorted(set(rollouts[0]["prompt_id"])) == sorted(measured)
    assert rollouts[0].height == 3 * len(measured)
