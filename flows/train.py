"""Train flow (method.md section 3): bandit-paced GRPO epochs, evaluated every N epochs, logged to MLflow.

    space train --recipe builtin

Two MLflow runs, children of `parent_run_id` when given: the training run (per-epoch metrics and tables, the
final model) and the evaluation run (base and final model on the held-out split).
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from space.config import Recipe, dump_recipe, flatten
from tasks import tracking
from tasks.model_registry import log_final_model
from tasks.train import evaluate, prepare_training, train_epoch
from tasks.train_report import log_epoch, report_evaluation, report_training, start_progress, update_progress


@flow(name="train", log_prints=True)
def train_flow(recipe: Recipe, model: dict[str, Any], curation: dict[str, Any],
               parent_run_id: str | None = None, register_as: str | None = None) -> dict[str, Any]:
    """Epoch by epoch: allocate with the bandit, train with GRPO, update the bandit, evaluate."""
    cfg = recipe.train
    if curation["stages"]["data"]["eval"] is None:
        raise ValueError(f"recipe {recipe.name!r} has no eval set, which training needs for its evaluations: "
                         "set data.eval_path, data.eval_fraction or data.eval_split")
    data = prepare_training(curation["stages"]["select"], model, recipe.model.system_prompt, cfg.pool,
                            recipe.model.enable_thinking, cfg.informative_min_signal)
    eval_split = curation["stages"]["data"]["eval"]
    # the parent is in the fingerprint: concurrent bench cells with the same training never share a run
    tags = tracking.run_tags("train", recipe, model, "train-run", data["sha"], model["sha"], recipe.train,
                             recipe.verifier, recipe.eval, recipe.seed, parent_run_id)
    run_id = tracking.open_run(f"train-{recipe.name}-{cfg.bandit.policy}-s{recipe.seed}", tags, flatten(recipe),
                               dump_recipe(recipe), parent_run_id)
    progress = start_progress(cfg.epochs)
    base = _evaluate(recipe, model["path"], model["sha"], eval_split, "base")
    tracking.log_metrics(run_id, {f"base/{k}": v for k, v in base["metrics"].items()}, step=0)
    epochs: list[dict[str, Any]] = []
    epoch_evals: list[dict[str, Any]] = []  # held-out metrics after each evaluated epoch (accuracy curves)
    for epoch in range(cfg.epochs):
        done = train_epoch(data, model, cfg, recipe.verifier, recipe.seed, epoch, epochs[-1] if epochs else None)
        due = recipe.eval.every > 0 and (epoch + 1) % recipe.eval.every == 0
        evaluation = (_evaluate(recipe, done["checkpoint"], done["checkpoint_sha"], eval_split,
                                f"after epoch {epoch + 1} of {cfg.epochs}") if due else None)
        log_epoch(run_id, done, evaluation, data)
        update_progress(progress, epoch, cfg.epochs, done)
        if evaluation is not None:
            epoch_evals.append({"epoch": epoch, "metrics": evaluation["metrics"]})
        epochs.append(done)
    # a cache hit when the last epoch was already evaluated (same checkpoint hash, same inputs)
    final = _evaluate(recipe, epochs[-1]["checkpoint"], epochs[-1]["checkpoint_sha"], eval_split, "final")
    tracking.log_metrics(run_id, {f"final/{k}": v for k, v in final["metrics"].items()}, step=cfg.epochs)
    report_training(run_id, epochs, final)
    log_final_model(run_id, epochs[-1]["checkpoint"], register_as)
    tracking.close_run(run_id)

    eval_tags = tracking.run_tags("eval", recipe, model, "eval-run", epochs[-1]["checkpoint_sha"], eval_split["sha"])
    eval_run = tracking.open_run(f"eval-{recipe.name}-{cfg.bandit.policy}-s{recipe.seed}", eval_tags,
                                 flatten(recipe.eval), dump_recipe(recipe), parent_run_id or run_id)
    report_evaluation(eval_run, base, final)
    tracking.close_run(eval_run)
    return {"run_id": run_id, "eval_run_id": eval_run, "epochs": epochs, "base_eval": base, "final_eval": final,
            "epoch_evals": epoch_evals,
            "model_dir": epochs[-1]["checkpoint"],
            "unique_prompts": len({i for e in epochs for i in e["order"]})}


def _evaluate(recipe: Recipe, model_path: str, model_sha: str, eval_split: dict[str, Any],
              label: str) -> dict[str, Any]:
    """The evaluate task, its run named `evaluate-<label>` (base, after epoch 2 of 3, final)."""
    named = evaluate.with_options(task_run_name=f"evaluate-{label}")
    return named(model_path, model_sha, eval_split, recipe.model.system_prompt, recipe.verifier, recipe.eval,
                 recipe.eval_engine(), recipe.seed, recipe.model.enable_thinking)

