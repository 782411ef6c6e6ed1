"""The main job: bootstrap -> curate -> train -> final eval, one Prefect flow with the stages as subflows.

    space run                       # the embedded default (builtin recipe, CPU, offline)
    space run --recipe smollm2 --register space-smollm2

One MLflow parent run per call holds the recipe and the headline metrics; curation, training and the
evaluation are its child runs.
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

import tasks  # noqa: F401
from flows.bootstrap import bootstrap_flow
from flows.curate import curate_flow
from flows.preflight import flow_preflight
from flows.train import train_flow
from space.config import Recipe, compare_keys, dump_recipe, flatten
from tasks import tracking
from tasks.gain import describe_gains, paired_gain


@flow(name="space-run", log_prints=True)
def run_flow(recipe: Recipe, register_as: str | None = None) -> dict[str, Any]:
    """Run SPaCe end to end on one recipe; returns MLflow run ids, the Prefect flow-run id, final metrics and
    the model path.

    `register_as`: a registered-model name in MLflow under which the final model is registered."""
    if not recipe.data.has_eval():  # fail before any work: training evaluates on a held-out set
        raise ValueError(f"recipe {recipe.name!r} has no eval set (data.path is a single file): set "
                         "data.eval_path or data.eval_fraction, or run `space curate` alone")
    flow_preflight("run", {recipe.name: recipe})  # a deployment's run too (skipped after the CLI's own)
    model = bootstrap_flow(recipe)
    tags = tracking.run_tags("run", recipe, model, "space-run", recipe, model["sha"])
    parent = tracking.open_run(f"{recipe.name}-{recipe.train.bandit.policy}-s{recipe.seed}", tags,
                               {**flatten(recipe), **compare_keys(recipe)}, dump_recipe(recipe))
    curation = curate_flow(recipe, model, parent_run_id=parent)
    training = train_flow(recipe, model, curation, parent_run_id=parent, register_as=register_as)
    accuracy, before = training["final_eval"]["metrics"], training["base_eval"]["metrics"]
    tracking.log_metrics(parent, {f"{stage}/{k}": v for stage, metrics in (("base", before), ("final", accuracy))
                                  for k, v in metrics.items() if k.startswith("eval/all/")})
    tracking.log_metrics(parent, {"train/unique_prompts": training["unique_prompts"]})
    gains = paired_gain(training["run_id"], training["base_eval"], training["final_eval"], recipe.seed)
    # on the parent too, so MLflow's compare view and `space compare` see the change with its CI
    tracking.log_metrics(parent, {f"gain/{name}/{key}": value for name, gain in gains.items()
                                  for key, value in gain.items()})
    tracking.close_run(parent)
    for name, metrics in (("base model", before), ("final model", accuracy)):
        print(f"{name}: greedy accuracy {metrics['eval/all/greedy_acc']:.3f}, "
              f"pass@1 {metrics['eval/all/pass_at_1']:.3f}")
    print(f"model: {training['model_dir']}")
    for line in describe_gains(gains):
        print(line)
    return {"run_id": parent, "flow_run_id": flow_run.get_id(), "gain": gains, "curate_run_id": curation["run_id"], "train_run_id": training["run_id"],
            "eval_run_id": training["eval_run_id"], "base_eval": before, "final_eval": accuracy,
            "model_dir": training["model_dir"], "unique_prompts": training["unique_prompts"]}

