"""Built-in models on the builtin pool: greedy accuracy and solve-rate spread, through space's own stages.

    .venv/bin/python infra/bench_models.py --recipe builtin [--pool 2000]
    .venv/bin/python infra/bench_models.py --recipe smollm2 --pool 200

Builds or converts the recipe's model (timed), estimates difficulty with k samples per prompt on vLLM
(the curation stage), evaluates greedy accuracy on the same pool, and reports: share of prompts with
0 < solve rate < 1, greedy accuracy, mean solve rate by task and level, per-task Spearman(level, solve rate).
Writes infra/results/models_<recipe>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="builtin")
    parser.add_argument("--pool", type=int, default=2000)
    args = parser.parse_args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    import tasks  # noqa: F401  (environment defaults)
    import polars as pl
    from scipy.stats import spearmanr
    from transformers import AutoTokenizer

    from flows.bootstrap import bootstrap_flow
    from space.config import load_recipe
    from space.engines import EngineConfig, make_engine
    from space.train.evaluation import evaluate
    from space.data.prompting import render_prompts
    from space.data.verifiers import get_verifier
    from tasks.curate import estimate_difficulty, load_data

    recipe = load_recipe(args.recipe, [f"data.pool_size={args.pool}"])
    start = time.perf_counter()
    model = bootstrap_flow(recipe)
    build_s = time.perf_counter() - start
    pool = load_data.fn(recipe.data)["pool"]
    engine = EngineConfig(kind="vllm")
    difficulty = estimate_difficulty.fn(pool, model, recipe.model.system_prompt, recipe.verifier,
                                        recipe.curate.difficulty, engine, recipe.seed)
    table = pl.read_parquet(pool["path"]).join(pl.read_parquet(difficulty["path"]), on="prompt_id")
    prompts = render_prompts(AutoTokenizer.from_pretrained(model["path"]), table["question"].to_list(),
                             recipe.model.system_prompt)
    with make_engine(engine, model["path"]) as rollout:
        metrics, _ = evaluate(rollout.generate, prompts, table, get_verifier(recipe.verifier.name,
                              extract=recipe.verifier.extract), k=1, temperature=1.0,
                              max_tokens=recipe.curate.difficulty.max_tokens, theta_solve=recipe.verifier.theta_solve,
                              seed=recipe.seed)
    rates = table["solve_rate"]
    per_task = {}
    for (source,), part in table.group_by("source", maintain_order=True):
        levels = part.group_by("level").agg(pl.col("solve_rate").mean()).sort("level")["solve_rate"].to_list()
        per_task[source] = {"solve_rate_by_level": [round(x, 3) for x in levels],
                            "spearman": round(float(spearmanr(part["level"], part["solve_rate"]).statistic), 3)}
    result = {"recipe": args.recipe, "model": model["name"], "build_or_load_s": round(build_s, 1),
              "pool": table.height, "k": recipe.curate.difficulty.k,
              "share_mixed": round(float(((rates > 0) & (rates < 1)).mean()), 3),
              "mean_solve_rate": round(float(rates.mean()), 3),
              "greedy_acc": round(metrics["eval/all/greedy_acc"], 3),
              "difficulty_seconds": round(difficulty["seconds"], 1), "per_task": per_task}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"models_{args.recipe}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
