"""The main job: bootstrap -> curate -> train -> final eval, one Prefect flow with the stages as subflows.

    space run                       # the embedded default (builtin recipe, CPU, offline)
    space run --recipe smollm2
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from flows.bootstrap import bootstrap_flow
from flows.curate import curate_flow
from flows.train import train_flow
from space.config import Recipe
from tasks.gain import describe_gains, paired_gain


@flow(name="space-run", log_prints=True)
def run_flow(recipe: Recipe) -> dict[str, Any]:
    """Run SPaCe end to end on one recipe; returns MLflow run ids, final metrics and the model path."""
    recipe = recipe.resolved()
    if not recipe.data.has_eval():  # fail before any work: training evaluates on a held-out set
        raise ValueError(f"recipe {recipe.name!r} has no eval set (data.path is a single file): set "
                         "data.eval_path or data.eval_fraction, or run `space curate` alone")
    model = bootstrap_flow(recipe)
    curation = curate_flow(recipe, model)
    training = train_flow(recipe, model, curation)
    accuracy, before = training["final_eval"]["metrics"], training["base_eval"]["metrics"]
    print(f"curate MLflow run: {curation['run_id']}")
    print(f"train MLflow run: {training['run_id']}")
    for name, metrics in (("base model", before), ("final model", accuracy)):
        print(f"{name}: greedy accuracy {metrics['eval/all/greedy_acc']:.3f}, "
              f"pass@1 {metrics['eval/all/pass_at_1']:.3f}")
    print(f"model: {training['model_dir']}")
    gains = paired_gain(training["run_id"], training["base_eval"], training["final_eval"], recipe.seed)
    for line in describe_gains(gains):
        print(line)
    return {"gain": gains, "curate_run_id": curation["run_id"], "train_run_id": training["run_id"],
            "base_eval": before, "final_eval": accuracy, "model_dir": training["model_dir"], "unique_prompts": training["unique_prompts"]}
