"""Curation and training as deployable jobs: one typed `recipe` parameter each (the Prefect UI shows a form).

`space curate` and `space train` compose the same subflows from the CLI; these wrappers exist so a work-pool
deployment (prefect.yaml) can run a stage from nothing but a recipe. Each runs the CLI's pre-flight first
(flows/preflight.py), so a deployment with an unreachable MLflow or bad data fails in seconds, saying why.
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from flows.bootstrap import bootstrap_flow
from flows.curate import curate_flow
from flows.preflight import flow_preflight
from flows.train import train_flow
from space.config import Recipe


@flow(name="space-curate", log_prints=True)
def curate_job(recipe: Recipe) -> dict[str, Any]:
    """Bootstrap the model and curate the pool; returns the MLflow run id and the reduced pool's path."""
    flow_preflight("curate", {recipe.name: recipe})
    curation = curate_flow(recipe, bootstrap_flow(recipe))
    return {"run_id": curation["run_id"], "reduced": curation["stages"]["select"]["reduced"]}


@flow(name="space-train", log_prints=True)
def train_job(recipe: Recipe, register_as: str | None = None) -> dict[str, Any]:
    """Bootstrap, curate (cached when done before) and train; returns run ids, final metrics and the model."""
    flow_preflight("train", {recipe.name: recipe})
    model = bootstrap_flow(recipe)
    training = train_flow(recipe, model, curate_flow(recipe, model), register_as=register_as)
    return {"run_id": training["run_id"], "eval_run_id": training["eval_run_id"],
            "final_eval": training["final_eval"]["metrics"], "model_dir": training["model_dir"]}
