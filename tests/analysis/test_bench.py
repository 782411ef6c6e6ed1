"""Bench specs: validation errors name the key or arm, cells resolve arms x seeds, one budget for all."""

import pytest
import yaml

from space.analysis.bench import BenchSpecError, load_bench_spec, resolve_cells, rollout_budget

SPEC = {"name": "t", "seeds": [0, 1], "reference": "uniform-full", "budget": ["train.epochs=2"],
        "arms": [{"name": "spaCe", "recipe": "builtin", "set": ["train.bandit.policy=ts_hard"]},
                 {"name": "uniform-full", "recipe": "uniform-full"}]}


def _write(tmp_path, spec, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cells_are_arms_times_seeds_with_name_seed_budget_and_arm_overrides(tmp_path):
    spec = load_bench_spec(_write(tmp_path, SPEC))
    cells = resolve_cells(spec, tmp_path)
    assert [(c.arm, c.seed) for c in cells] == [("spaCe", 0), ("spaCe", 1), ("uniform-full", 0), ("uniform-full", 1)]
    first = cells[0].recipe
    assert (first.name, first.seed, first.train.epochs, first.train.bandit.policy) == ("spaCe", 0, 2, "ts_hard")
    assert cells[3].recipe.train.pool == "full" and cells[3].recipe.seed == 1
    assert len({rollout_budget(c.recipe) for c in cells}) == 1


def test_each_seed_gets_its_own_base_model_unless_turned_off(tmp_path):
    cells = resolve_cells(load_bench_spec(_write(tmp_path, SPEC)), tmp_path)
    assert [c.recipe.model.tiny.seed for c in cells] == [0, 1, 0, 1]
    shared = resolve_cells(load_bench_spec(_write(tmp_path, {**SPEC, "vary_base_model": False})), tmp_path)
    assert {c.recipe.model.tiny.seed for c in shared} == {0}


def test_unknown_key_is_named(tmp_path):
    bad = {**SPEC, "arms": [{**SPEC["arms"][0], "sett": []}, SPEC["arms"][1]]}
    with pytest.raises(BenchSpecError, match=r"arms\.0\.sett"):
        load_bench_spec(_write(tmp_path, bad))


@pytest.mark.parametrize("change, message", [
    ({"reference": "nope"}, "reference 'nope' is not one of the arms"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"seeds": []}, "seeds"),
    ({"max_parallel": 0}, "max_parallel"),
])
def test_bad_values_are_named(tmp_path, change, message):
    with pytest.raises(BenchSpecError, match=message):
        load_bench_spec(_write(tmp_path, {**SPEC, **change}))


def test_duplicate_arm_names_are_refused(tmp_path):
    with pytest.raises(BenchSpecError, match="repeated: \\['spaCe'\\]"):
        load_bench_spec(_write(tmp_path, {**SPEC, "arms": [SPEC["arms"][0]] * 2 + [SPEC["arms"][1]]}))


def test_an_arm_that_changes_the_budget_is_an_error_naming_the_arms(tmp_path):
    arms = [{**SPEC["arms"][0], "set": ["train.slots_per_epoch=16"]}, SPEC["arms"][1]]
    spec = load_bench_spec(_write(tmp_path, {**SPEC, "arms": arms}))
    with pytest.raises(BenchSpecError, match="differ in rollout budget.*spaCe"):
        resolve_cells(spec, tmp_path)


def test_a_bad_override_names_the_arm_and_the_key(tmp_path):
    arms = [{**SPEC["arms"][0], "set": ["train.epoks=3"]}, SPEC["arms"][1]]
    spec = load_bench_spec(_write(tmp_path, {**SPEC, "arms": arms}))
    with pytest.raises(BenchSpecError, match="arm 'spaCe'.*train.epoks"):
        resolve_cells(spec, tmp_path)


def test_relative_recipe_paths_are_read_beside_the_spec(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("base: builtin\ntrain:\n  slots_per_epoch: 8\n")
    arms = [{"name": "mine", "recipe": "recipes/mine.yaml"}, {"name": "uniform-full", "recipe": "uniform-full",
                                                              "set": ["train.slots_per_epoch=8"]}]
    spec = load_bench_spec(_write(tmp_path, {**SPEC, "arms": arms}))
    assert resolve_cells(spec, tmp_path)[0].recipe.train.slots_per_epoch == 8


@pytest.mark.parametrize("name", ["smoke", "headline", "ablations", "curriculum", "curriculum-arms", "curriculum-fresh",
                                  "curriculum-512", "curriculum-variants",
                                  "curriculum-informative"])
def test_shipped_specs_resolve(name):
    from pathlib import Path

    path = Path(__file__).parents[2] / "infra" / "bench" / f"{name}.yaml"
    spec = load_bench_spec(path)
    cells = resolve_cells(spec, path.parent)
    assert len(cells) == len(spec.arms) * len(spec.seeds)
    if name == "headline":
        assert len(spec.seeds) >= 5 and spec.reference == "uniform-full"
