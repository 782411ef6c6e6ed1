"""Recipes: shipped recipes load, overrides apply, unknown keys and bad values name the key and file; one
completion length unless set explicitly; the recipe seed reaches k-means and selection."""

import numpy as np
import pytest

from space.curate.clustering import cluster_features
from space.config import (
    Recipe,
    RecipeError,
    dump_recipe,
    fingerprint,
    flatten,
    load_recipe,
    parse_override,
    shipped_recipes,
)
from space.curate.reduction import select_representatives


def test_every_shipped_recipe_loads():
    assert "builtin" in shipped_recipes()
    for name in shipped_recipes():
        assert load_recipe(name).name


def test_builtin_is_the_default_and_offline():
    recipe = load_recipe()
    assert recipe.name == "builtin" and recipe.model.name == "tiny" and recipe.data.source == "builtin"


def test_override_sets_nested_values_with_yaml_types():
    recipe = load_recipe("builtin", ["train.epochs=5", "curate.clusters.num_clusters=6", "model.system_prompt=hi"])
    assert (recipe.train.epochs, recipe.curate.clusters.num_clusters, recipe.model.system_prompt) == (5, 6, "hi")
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: builtin\ntrain:\n  epohcs: 3\n")
    with pytest.raises(RecipeError, match=r"mine\.yaml(.|\n)*train\.epohcs"):
        load_recipe(str(path))


def test_bad_value_names_key_and_value():
    with pytest.raises(RecipeError, match=r"train\.epochs(.|\n)*-1"):
        load_recipe("builtin", ["train.epochs=-1"])


def _registered_names():
    from space.train.bandit import registered_policies
    from space.engines import engine_names
    from space.curate.reduction import known_selections
    from space.data.verifiers import known_verifiers

    return {"train.bandit.policy": registered_policies(), "engine.kind": ["auto", *engine_names()],
            "eval.engine_kind": ["auto", *engine_names()], "curate.selection.selection": known_selections(),
            "verifier.name": known_verifiers()}


@pytest.mark.parametrize("key", ["train.bandit.policy", "engine.kind", "eval.engine_kind",
                                 "curate.selection.selection", "verifier.name"])
def test_unregistered_name_fails_at_load_naming_key_and_the_registered_names(key):
    with pytest.raises(RecipeError) as err:
        load_recipe("builtin", [f"{key}=no_such_name"])
    message = str(err.value)
    assert f"{key}: " in message and "'no_such_name'" in message
    names = _registered_names()[key]
    assert len(names) >= 3 and all(repr(name) in message for name in names)


def test_recipe_schema_lists_the_registered_names_for_forms():
    from space.config import Recipe

    defs = Recipe.model_json_schema()["$defs"]
    names = _registered_names()
    assert defs["BanditConfig"]["properties"]["policy"]["enum"] == names["train.bandit.policy"]
    assert defs["EngineConfig"]["properties"]["kind"]["enum"] == names["engine.kind"]
    assert defs["SelectionConfig"]["properties"]["selection"]["enum"] == names["curate.selection.selection"]
    assert defs["VerifierConfig"]["properties"]["name"]["enum"] == names["verifier.name"]


def test_malformed_override_and_missing_recipe():
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe("builtin", ["train.epochs"])
    with pytest.raises(RecipeError, match="no recipe named"):
        load_recipe("does-not-exist")


def test_base_chain_and_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\nname: a\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\nname: b\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(str(tmp_path / "a.yaml"))


def test_dump_round_trips_and_fingerprint_tracks_config(tmp_path):
    recipe = load_recipe("builtin")
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_recipe(recipe))
    assert load_recipe(str(path)) == recipe
    changed = load_recipe("builtin", ["curate.clusters.num_clusters=7"])
    assert fingerprint(recipe.curate.clusters) != fingerprint(changed.curate.clusters)
    assert fingerprint(recipe.curate.embedding) == fingerprint(changed.curate.embedding)
    assert flatten(recipe)["curate.clusters.num_clusters"] == 10


def test_one_completion_length_unless_set_explicitly():
    recipe = load_recipe("builtin", ["train.grpo.max_completion_length=40"])  # validating resolves, once
    assert recipe.curate.difficulty.max_tokens == recipe.eval.max_tokens == 40
    assert recipe.resolved() == recipe
    explicit = load_recipe("builtin", ["train.grpo.max_completion_length=40", "eval.max_tokens=24"])
    assert (explicit.curate.difficulty.max_tokens, explicit.eval.max_tokens) == (40, 24)
    # a resolved recipe keeps the values it was given: a saved YAML reloads as it ran
    assert Recipe.model_validate(recipe.model_dump()).eval.max_tokens == 40
    # what Prefect hands a deployment (the YAML with nulls) is resolved when validated
    raw = recipe.model_dump() | {"eval": {**recipe.eval.model_dump(), "max_tokens": None}}
    raw["train"]["grpo"]["max_completion_length"] = 64
    assert Recipe.model_validate(raw).eval.max_tokens == 64
    for name in shipped_recipes():  # every shipped recipe resolves to positive lengths
        shipped = load_recipe(name).resolved()
        assert min(shipped.curate.difficulty.max_tokens, shipped.eval.max_tokens) > 0


def test_recipe_seed_reaches_kmeans_and_selection_seeds():
    s0, s1 = load_recipe("random-subset").resolved(), load_recipe("random-subset", ["seed=1"]).resolved()
    assert s0.curate.clusters.seed != s1.curate.clusters.seed
    assert s0.curate.selection.seed != s1.curate.selection.seed
    assert s0.curate.clusters.seed != s0.curate.selection.seed
    assert load_recipe("random-subset").resolved() == s0
    assert load_recipe("random-subset").model_copy(update={"seed": 1}).resolved().curate == s1.curate
    pinned = load_recipe("builtin", ["seed=1", "curate.clusters.seed=1234"]).resolved()
    assert pinned.curate.clusters.seed == 1234
    # difficulty rollouts keep their own seed, so run seeds share the difficulty cache
    assert s0.curate.difficulty == s1.curate.difficulty


def _features(n: int = 120, d: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def test_two_recipe_seeds_give_different_kmeans_inits_one_seed_twice_the_same():
    x = _features()

    def centroids(seed: int) -> np.ndarray:
        cfg = load_recipe("builtin", [f"seed={seed}", "curate.clusters.niter=1", "curate.clusters.nredo=1",
                                      "curate.clusters.init=random"]).resolved().curate.clusters
        return cluster_features(x, cfg)[1]

    np.testing.assert_array_equal(centroids(0), centroids(0))
    assert not np.allclose(centroids(0), centroids(1))


def test_two_recipe_seeds_give_different_random_subsets_one_seed_twice_the_same():
    x = _features()
    labels = np.repeat(np.arange(4), 30)
    centroids = np.stack([x[labels == k].mean(axis=0) for k in range(4)])
    ids = [f"p{i:03d}" for i in range(len(x))]

    def subset(seed: int) -> list[str]:
        cfg = load_recipe("random-subset", [f"seed={seed}"]).resolved().curate.selection
        mask, _ = select_representatives(x, labels, centroids, ids, cfg)
        return [pid for pid, keep in zip(ids, mask) if keep]

    assert subset(0) == subset(0)
    assert subset(0) != subset(1)
