"""tasks/tracking.py `run_tags`: the one builder of the tags every space MLflow run carries (curate, train, eval,
the `space run` parent), written out by hand here so a change to what a run is tagged with shows."""

from space.config import load_recipe
from space.hashing import fingerprint
from space.provenance import code_version
from tasks.tracking import run_tags

MODEL = {"name": "tiny", "sha": "abc"}


def test_train_tags_carry_the_compare_keys_and_a_fingerprint_of_the_key_and_parts():
    recipe = load_recipe("builtin", ["seed=3", "train.bandit.policy=ucb"]).resolved()
    tags = run_tags("train", recipe, MODEL, "train-run", "data-sha", 7, None)
    assert tags == {"space.stage": "train", "space.recipe": "builtin", "space.policy": "ucb",
                    "space.pool": "informative", "space.K": str(recipe.curate.clusters.num_clusters),
                    "space.l": str(recipe.curate.selection.per_cluster), "space.seed": "3",
                    "space.selection": "farthest", "space.model": "tiny",
                    "space.fingerprint": fingerprint("train-run", code_version(), "data-sha", 7, None)}


def test_curate_tags_leave_out_the_bandit_keys_but_keep_the_seed():
    recipe = load_recipe("builtin").resolved()
    tags = run_tags("curate", recipe, MODEL, "curate-run", "sel-sha", "parent", compare=False)
    assert set(tags) == {"space.stage", "space.recipe", "space.seed", "space.selection", "space.model",
                         "space.fingerprint"}
    assert tags["space.seed"] == "0" and tags["space.stage"] == "curate"


def test_the_fingerprint_tells_apart_keys_and_parts():
    recipe = load_recipe("builtin").resolved()
    prints = {run_tags("eval", recipe, MODEL, key, *parts)["space.fingerprint"]
              for key, parts in (("eval-run", ("a", "b")), ("eval-run", ("a", "c")), ("train-run", ("a", "b")))}
    assert len(prints) == 3
