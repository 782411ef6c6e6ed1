"""SPaCe against its baselines on one recipe family: final eval accuracy and unique prompts used.

    .venv/bin/python infra/bench_baselines.py [--seeds 0 1] [--recipes builtin uniform-full random-subset]

Runs `space run` for every recipe x seed in one process (shared cache: the model and curation are built
once per seed), then writes infra/results/baselines.json and a markdown table (mean and per-seed values)
to infra/results/baselines.md. Same trainer, same epochs and slots per epoch, so the same rollout budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def run_one(recipe_name: str, seed: int, overrides: list[str]) -> dict:
    from flows.run import run_flow
    from space.config import load_recipe

    recipe = load_recipe(recipe_name, [f"seed={seed}", *overrides])
    start = time.perf_counter()
    result = run_flow(recipe)
    metrics, base = result["final_eval"], result["base_eval"]
    return {"recipe": recipe_name, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "base_greedy_acc": base["eval/all/greedy_acc"], "base_pass_at_1": base["eval/all/pass_at_1"],
            "greedy_acc": metrics["eval/all/greedy_acc"], "pass_at_1": metrics["eval/all/pass_at_1"],
            "unique_prompts": result["unique_prompts"], "train_run_id": result["train_run_id"]}


def table(rows: list[dict]) -> str:
    lines = ["| recipe | seeds | base greedy / pass@1 | final greedy acc (mean) | final pass@1 (mean) | unique prompts "
             "| per-seed final greedy / pass@1 |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        per_seed = "; ".join(f"s{r['seed']}: {r['greedy_acc']:.3f} / {r['pass_at_1']:.3f}" for r in mine)
        base = f"{statistics.mean(r['base_greedy_acc'] for r in mine):.3f} / " \
               f"{statistics.mean(r['base_pass_at_1'] for r in mine):.3f}"
        lines.append(f"| {name} | {len(mine)} | {base} | {statistics.mean(r['greedy_acc'] for r in mine):.3f} | "
                     f"{statistics.mean(r['pass_at_1'] for r in mine):.3f} | "
                     f"{'/'.join(str(r['unique_prompts']) for r in mine)} | {per_seed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["builtin", "uniform-full", "random-subset"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    args = parser.parse_args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    import tasks  # noqa: F401  (environment defaults)

    rows = []
    for seed in args.seeds:
        for name in args.recipes:
            rows.append(run_one(name, seed, args.set))
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "baselines.json").write_text(json.dumps(rows, indent=2))
    (OUT / "baselines.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
