"""Curate flow (method.md section 2): embed -> difficulty -> features -> cluster -> select, then report.

    space curate --recipe builtin
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from space.config import Recipe, dump_recipe, flatten
from tasks import curate as stage
from tasks import tracking
from tasks.curate_report import report_curation


@flow(name="curate", log_prints=True)
def curate_flow(recipe: Recipe, model: dict[str, Any], parent_run_id: str | None = None) -> dict[str, Any]:
    """Reduce the pool to a small, diverse, difficulty-aware subset tagged by cluster."""
    cfg = recipe.curate
    data = stage.fit_context(stage.load_data(recipe.data), model, recipe.model.system_prompt,
                             _max_new_tokens(recipe), recipe.data.bad_rows, recipe.model.enable_thinking)
    stage.check_lengths(data, model, recipe)  # before any engine starts
    print(stage.load_summary(data))
    if recipe.runner == "ray":  # the same two stages, sharded on Ray (flows/ray_curate.py)
        from flows.ray_curate import heavy_stages_on_ray

        heavy = heavy_stages_on_ray(data["pool"], model, recipe)
        embedded, difficulty = heavy["embed"], heavy["difficulty"]
    else:
        embedded = stage.embed(data["pool"], cfg.embedding)
        difficulty = stage.estimate_difficulty(data["pool"], model, recipe.model.system_prompt,
                                               recipe.verifier, cfg.difficulty, recipe.engine, cfg.difficulty.seed,
                                               recipe.model.enable_thinking, embedded)
    features = stage.build_features(embedded, difficulty, cfg.features)
    clusters = stage.cluster(features, cfg.clusters)
    selected = stage.select(data["pool"], difficulty, features, clusters, cfg.selection)

    stages = {"data": data, "embed": embedded, "difficulty": difficulty, "features": features,
              "cluster": clusters, "select": selected}
    # the parent is in the fingerprint so that concurrent bench cells with the same curation never resume
    # (and share) each other's unfinished run
    tags = tracking.run_tags("curate", recipe, model, "curate-run", selected["sha"], parent_run_id, compare=False)
    run_id = tracking.open_run(f"curate-{recipe.name}", tags, flatten(recipe), dump_recipe(recipe), parent_run_id)
    metrics = report_curation(run_id, recipe.name, stages)
    tracking.close_run(run_id)
    print(f"curation: kept {selected['selected']} of {selected['pool']} prompts "
          f"in {clusters['num_clusters']} clusters (MLflow run {run_id})")
    return {"run_id": run_id, "stages": stages, "metrics": metrics}


def _max_new_tokens(recipe: Recipe) -> int:
    """The longest completion any stage asks for: a prompt must leave this much of the context free."""
    return max(recipe.curate.difficulty.max_tokens, recipe.train.grpo.max_completion_length, recipe.eval.max_tokens)


@flow(name="curate-add", log_prints=True)
def curate_add_flow(recipe: Recipe, model: dict[str, Any], add_path: str, drift_quantile: float = 0.95,
                    ) -> dict[str, Any]:
    """Place the prompts of a new file in the recipe's existing clusters; only their difficulty is estimated."""
    from tasks import curate_add

    cfg = recipe.curate
    curation = curate_flow(recipe, model)["stages"]
    data = curate_add.additions_config(recipe.data, add_path)
    additions = curate_add.load_additions(data, curate_add.file_digest(add_path), curation["data"]["pool"])
    embedded = stage.embed(additions, cfg.embedding)
    difficulty = stage.estimate_difficulty(additions, model, recipe.model.system_prompt, recipe.verifier,
                                           cfg.difficulty, recipe.engine, cfg.difficulty.seed,
                                           recipe.model.enable_thinking, embedded)
    placed = curate_add.place_additions(additions, embedded, difficulty, curation["features"], curation["cluster"],
                                        drift_quantile)
    print(f"added {placed['added']} prompts to {curation['cluster']['num_clusters']} existing clusters "
          f"({additions['already_in_pool']} already in the pool); drift: {placed['drift']:.1%} are beyond their "
          f"cluster's {drift_quantile:.0%} distance quantile; table: {placed['path']}")
    return placed
