"""Recipes: shipped recipes load, overrides apply, unknown keys and bad values name the key and file."""

import pytest

from space.config import RecipeError, dump_recipe, fingerprint, flatten, load_recipe, parse_override, shipped_recipes


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
    assert flatten(recipe)["curate.clusters.num_clusters"] == 4
