"""space/scaleout.py without a cluster: shard plans are content-addressed, the `ray` recipe section is strict,
`ray.init` arguments follow the recipe, and replayed completions come back by prompt id."""

import pytest

from space.config import RecipeError, load_recipe
from space.scaleout import RayConfig, init_kwargs, plan_shards, replay, shard_digest

IDS = [f"p{i}" for i in range(10)]
TEXTS = [f"question {i}" for i in range(10)]


def test_shards_cover_the_pool_in_order():
    shards = plan_shards(IDS, TEXTS, 4)
    assert [(s.index, s.start, s.stop) for s in shards] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert shards[1].digest == shard_digest(IDS[4:8], TEXTS[4:8])


def test_editing_one_prompt_changes_only_its_shards_digest():
    before = plan_shards(IDS, TEXTS, 4)
    edited = TEXTS[:5] + ["question 5, reworded"] + TEXTS[6:]
    after = plan_shards(IDS, edited, 4)
    assert [a.digest == b.digest for a, b in zip(before, after)] == [True, False, True]


def test_a_digest_depends_on_ids_and_on_order():
    assert shard_digest(["a", "b"], ["x", "y"]) != shard_digest(["b", "a"], ["y", "x"])
    assert shard_digest(["a", "b"], ["x", "y"]) != shard_digest(["a", "c"], ["x", "y"])


def test_plan_refuses_misaligned_columns_and_empty_shards():
    with pytest.raises(ValueError, match="10 prompt ids but 9 texts"):
        plan_shards(IDS, TEXTS[:9], 4)
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        plan_shards(IDS, TEXTS, 0)


def test_recipe_runner_and_ray_section_load_and_unknown_keys_fail():
    recipe = load_recipe("builtin", ["runner=ray", "ray.shard_size=5000", "ray.rollout_actor.num_gpus=1"])
    assert recipe.runner == "ray" and recipe.ray.shard_size == 5000 and recipe.ray.rollout_actor.num_gpus == 1
    assert load_recipe("builtin").runner == "local"
    with pytest.raises(RecipeError, match="ray.actor_count"):
        load_recipe("builtin", ["ray.actor_count=2"])
    with pytest.raises(RecipeError, match="runner"):
        load_recipe("builtin", ["runner=dask"])


def test_init_kwargs_size_a_local_cluster_but_not_a_joined_one():
    local = init_kwargs(RayConfig(num_cpus=2, object_store_memory_mib=100, temp_dir="/tmp/r"), {"A": "1"})
    assert local["num_cpus"] == 2 and local["object_store_memory"] == 100 * 2**20 and local["_temp_dir"] == "/tmp/r"
    assert local["runtime_env"] == {"env_vars": {"A": "1"}}
    joined = init_kwargs(RayConfig(address="auto", num_cpus=2, env_vars={"B": "2"}), {"A": "1"})
    assert "num_cpus" not in joined and "_temp_dir" not in joined
    assert joined["runtime_env"] == {"env_vars": {"A": "1", "B": "2"}}


def test_replay_returns_groups_by_prompt_id_and_checks_n():
    generate = replay({"a": ["a1", "a2"], "b": ["b1", "b2"]})
    assert generate(["B?", "A?"], n=2, prompt_ids=["b", "a"], seed=0) == [["b1", "b2"], ["a1", "a2"]]
    with pytest.raises(ValueError, match="n=3"):
        generate(["A?"], n=3, prompt_ids=["a"])
