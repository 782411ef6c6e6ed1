"""One `space bench` cell as a cached Prefect task: the stages of `space run` (bootstrap -> curate -> train -> final
eval, as subflows) under its own MLflow run, a child of the bench's parent run.

It composes flows, so it lives in flows/ (imports only go down: flows -> tasks -> space). Cells are cached on
(arm, seed, resolved recipe, parent run) plus the task's source, so re-running a killed or finished grid skips the
finished cells; inside a cell, the stage caches make shared curation (the same pool, model and settings) cheap.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task

from flows.bootstrap import bootstrap_flow
from flows.curate import curate_flow
from flows.train import train_flow
from space.config import Recipe, compare_keys, dump_recipe, fingerprint, flatten
from space.provenance import code_version
from tasks import tracking
from tasks.bench import cell_summary
from tasks.common import CACHED
from tasks.gain import paired_gain
from tasks.stages import STAGE_OPTIONS


@task(**STAGE_OPTIONS, name="bench-cell", cache_policy=CACHED, persist_result=True)
def run_cell(bench: str, arm: str, seed: int, recipe: Recipe, parent_run_id: str) -> dict[str, Any]:
    """Run one cell (the stages of `space run`) under a child MLflow run; return its raw results.

    The cached value holds facts (per-epoch metrics, evaluations, gains, seconds), not derived numbers:
    the report derives curves and statistics afresh (`cell_summary`), so a change to the report code never
    meets a stale cached summary (TASK_SOURCE covers only this function's lines, PrefectHQ/prefect#23062).
    """
    start = time.perf_counter()
    tags = {"space.stage": "bench-cell", "space.bench": bench, "space.arm": arm, "space.recipe": recipe.name,
            **compare_keys(recipe), "space.seed": str(seed),
            "space.fingerprint": fingerprint("bench-cell", code_version(), parent_run_id, arm, seed, recipe)}
    run_id = tracking.open_run(f"{bench}-{arm}-s{seed}", tags, {**flatten(recipe), **compare_keys(recipe)},
                               dump_recipe(recipe), parent_run_id)
    model = bootstrap_flow(recipe)
    curation = curate_flow(recipe, model, parent_run_id=run_id)
    training = train_flow(recipe, model, curation, parent_run_id=run_id)
    gains = paired_gain(run_id, training["base_eval"], training["final_eval"], recipe.seed)
    raw = {"arm": arm, "seed": seed, "run_id": run_id, "seconds": time.perf_counter() - start, "gains": gains,
           "curation": curation_facts(curation["stages"]),
           "training": {"epochs": [{"epoch": e["epoch"], "metrics": e["metrics"]} for e in training["epochs"]],
                        "base_eval": {"metrics": training["base_eval"]["metrics"]},
                        "final_eval": {"metrics": training["final_eval"]["metrics"]},
                        "epoch_evals": training["epoch_evals"], "unique_prompts": training["unique_prompts"]}}
    cell = cell_summary(raw)
    for point in cell["curve"]:
        tracking.log_metrics(run_id, {"eval/pass_at_1": point["pass1"], "eval/greedy_acc": point["greedy"]},
                             step=int(point["step"]))
    tracking.log_metrics(run_id, {"final/pass_at_1": cell["final"]["pass1"],
                                  "final/greedy_acc": cell["final"]["greedy"], "unique_prompts": cell["unique_prompts"],
                                  "seconds/cell": cell["seconds"], "steps": cell["steps"], "rollouts": cell["rollouts"]})
    tracking.close_run(run_id)
    return raw


def curation_facts(stages: dict[str, Any]) -> dict[str, int]:
    """What curation spent and kept: difficulty rollouts drawn (0 when the difficulty came from labels), pool
    size and the reduced pool's size."""
    import polars as pl

    path = stages["difficulty"].get("rollouts")
    rollouts = pl.scan_parquet(path).select(pl.len()).collect().item() if path else 0
    return {"difficulty_rollouts": int(rollouts), "pool": int(stages["select"]["pool"]),
            "selected": int(stages["select"]["selected"])}


