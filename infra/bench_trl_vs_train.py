"""Does a stock TRL script with the plug-in reproduce `space train`? Issue 20's second target, on several seeds.

    PYTHONPATH=. SPACE_HOME=... nice -n 19 python infra/bench_trl_vs_train.py --recipe spaCe-paper --seeds 0 1 2 \
        --set train.epochs=4 --set train.slots_per_epoch=128 --work /tmp/trl-vs-train

Per seed S, with the recipe and overrides plus `seed=S`:
1. `space train` (the CLI, a subprocess): bootstrap, curation (both cached), bandit-paced GRPO, evaluation;
2. `space export` of the same recipe and seed (the same cached curation) into WORK/seedS/curation;
3. examples/trl_grpo_curriculum.py (stock `GRPOTrainer` + `SpaceCurriculum`) on that export, from the same base
   model, with the recipe's seed, epochs, slots, B, G, completion length and bandit policy;
4. both final models through the same evaluate task (`tasks.train.evaluate`: the recipe's held-out split, eval
   settings, engine and seed). For `space train`'s model that is a cache hit on the evaluation the flow ran.
Writes infra/results/trl_vs_train.{json,md}: each seed's pass@1 of both, their difference with a 95 % interval
over the held-out prompts (paired by prompt), the mean difference over seeds with a 95 % t interval, and the
seed-to-seed spread (SD over seeds of `space train`'s pass@1). The example fixes the GRPO and bandit settings it
shares with the builtin recipe; the script refuses a recipe whose settings differ from them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(Path(sys.executable).parent / "space")
EXAMPLE = ROOT / "examples" / "trl_grpo_curriculum.py"
# What examples/trl_grpo_curriculum.py hard-codes (GRPOConfig and the bandit), as recipe keys.
EXAMPLE_FIXED = {"train.pool": "reduced", "train.grpo.learning_rate": 1e-4, "train.grpo.lr_scheduler": "constant",
                 "train.grpo.warmup_ratio": 0.0, "train.grpo.weight_decay": 0.0, "train.grpo.beta": 0.0,
                 "train.grpo.temperature": 1.0, "train.grpo.num_iterations": 1, "train.grpo.loss_type": "dapo",
                 "train.grpo.scale_rewards": "group", "train.grpo.gradient_accumulation_steps": 1,
                 "train.bandit.floor": 0.2, "train.bandit.lp_window": 1, "verifier.theta_solve": 1.0}


def run(command: list[str], log: Path) -> str:
    """Run a command with the repo on PYTHONPATH, its output appended to `log`; raise with the tail on failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    with log.open("a") as handle:
        handle.write(done.stdout + done.stderr)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def check_example_matches(recipe) -> None:
    """Refuse a recipe the example cannot reproduce (it fixes these settings)."""
    from space.config import flatten

    flat = flatten(recipe)
    differ = {k: (flat.get(k), v) for k, v in EXAMPLE_FIXED.items() if flat.get(k) != v}
    if differ:
        raise SystemExit(f"the example fixes these settings; the recipe has others (recipe, example): {differ}")


def evaluate_both(recipe, models: dict[str, str]) -> dict[str, dict]:
    """{label: {metrics, path}}: each model through the flow's evaluate task on the recipe's held-out split."""
    from prefect import flow

    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from tasks.common import file_sha256
    from tasks.train import evaluate

    @flow(name="bench-trl-vs-train-eval")
    def both() -> dict[str, dict]:
        base = bootstrap_flow(recipe)
        split = curate_flow(recipe, base)["stages"]["data"]["eval"]
        return {label: evaluate(path, file_sha256(Path(path) / "model.safetensors"), split, recipe.model.system_prompt,
                                recipe.verifier, recipe.eval, recipe.eval_engine(), recipe.seed,
                                recipe.model.enable_thinking)
                for label, path in models.items()}

    return both()


def paired_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of b - a and its 95 % t interval (a and b paired by position)."""
    from scipy.stats import t

    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    from flows.bootstrap import bootstrap_flow
    from space.config import load_recipe

    overrides = [*args.set, f"seed={seed}"]
    recipe = load_recipe(args.recipe, overrides).resolved()
    check_example_matches(recipe)
    work = Path(args.work) / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    log, sets = work / "log.txt", [x for o in overrides for x in ("--set", o)]
    timings = {}
    start = time.perf_counter()
    printed = run([SPACE, "train", "--recipe", args.recipe, *sets], log)
    train_model = re.findall(r"^model: (.+)$", printed, re.MULTILINE)[-1].strip()
    timings["space_train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    run([SPACE, "export", "--recipe", args.recipe, *sets, "--out", str(work / "curation"), "--force"], log)
    timings["space_export_s"] = time.perf_counter() - start
    base = bootstrap_flow(recipe)["path"]
    grpo, trl_out = recipe.train.grpo, work / "trl"
    start = time.perf_counter()
    printed = run([sys.executable, str(EXAMPLE), "--curation", str(work / "curation"), "--model", base,
                   "--out", str(trl_out), "--epochs", str(recipe.train.epochs),
                   "--slots", str(recipe.train.slots_per_epoch), "--prompts-per-step", str(grpo.prompts_per_step),
                   "--num-generations", str(grpo.num_generations),
                   "--max-completion-length", str(grpo.max_completion_length),
                   "--policy", recipe.train.bandit.policy, "--seed", str(seed)], log)
    timings["example_s"] = time.perf_counter() - start
    start = time.perf_counter()
    evals = evaluate_both(recipe, {"space_train": train_model, "trl_plugin": str(trl_out)})
    timings["eval_s"] = time.perf_counter() - start
    import polars as pl

    tables = {k: pl.read_parquet(v["path"]).sort("prompt_id") for k, v in evals.items()}
    assert tables["space_train"]["prompt_id"].to_list() == tables["trl_plugin"]["prompt_id"].to_list()
    per_prompt = paired_interval(tables["space_train"]["pass1"].to_list(), tables["trl_plugin"]["pass1"].to_list())
    return {"seed": seed, "overrides": overrides, "space_train_model": train_model, "trl_model": str(trl_out),
            "example_printed": printed.strip().splitlines()[-1],
            "pass_at_1": {k: v["metrics"]["eval/all/pass_at_1"] for k, v in evals.items()},
            "greedy_acc": {k: v["metrics"]["eval/all/greedy_acc"] for k, v in evals.items()},
            "diff_per_prompt": {"mean": per_prompt[0], "low": per_prompt[1], "high": per_prompt[2],
                                "prompts": tables["space_train"].height},
            "seconds": timings}


def report(cells: list[dict], command: str) -> tuple[str, dict]:
    train = [c["pass_at_1"]["space_train"] for c in cells]
    trl = [c["pass_at_1"]["trl_plugin"] for c in cells]
    mean, low, high = paired_interval(train, trl)
    spread = statistics.stdev(train) if len(train) > 1 else math.nan
    summary = {"seeds": [c["seed"] for c in cells], "mean_diff": mean, "diff_low": low, "diff_high": high,
               "space_train_sd": spread, "trl_sd": statistics.stdev(trl) if len(trl) > 1 else math.nan,
               "within_spread": None if math.isnan(spread) else bool(abs(mean) <= spread)}
    lines = ["# A stock TRL script with the plug-in against `space train` (same recipe, seed, budget)", "",
             f"Command: `{command}`", "",
             "| seed | `space train` pass@1 | TRL + plug-in pass@1 | difference (TRL - train) [95 % CI over prompts] "
             "| greedy: train / TRL | minutes: train / export / TRL / eval |", "|---|---|---|---|---|---|"]
    for c in cells:
        d, s = c["diff_per_prompt"], c["seconds"]
        lines.append(f"| {c['seed']} | {c['pass_at_1']['space_train']:.3f} | {c['pass_at_1']['trl_plugin']:.3f} | "
                     f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | {c['greedy_acc']['space_train']:.3f} / "
                     f"{c['greedy_acc']['trl_plugin']:.3f} | {s['space_train_s'] / 60:.1f} / "
                     f"{s['space_export_s'] / 60:.1f} / {s['example_s'] / 60:.1f} / {s['eval_s'] / 60:.1f} |")
    lines += ["", f"Mean difference over {len(cells)} seeds: {mean:+.3f} [{low:+.3f}, {high:+.3f}] (95 % t interval); "
              f"seed-to-seed SD of `space train`'s pass@1: {spread:.3f} (of the TRL runs: {summary['trl_sd']:.3f}).",
              "Target (|mean difference| <= that SD): "
              + {True: "met.", False: "missed.", None: "not assessed (one seed)."}[summary["within_spread"]]]
    return "\n".join(lines) + "\n", summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="spaCe-paper")
    parser.add_argument("--set", action="append", default=[], help="recipe override for both (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", required=True, help="folder for exports, TRL models and logs")
    parser.add_argument("--out", default=str(ROOT / "infra" / "results"))
    args = parser.parse_args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    cells = []
    for seed in args.seeds:
        done = Path(args.work) / f"seed{seed}" / "cell.json"
        cell = json.loads(done.read_text()) if done.exists() else one_seed(args, seed)  # a killed run resumes
        done.write_text(json.dumps(cell, indent=1))
        print(json.dumps(cell), flush=True)
        cells.append(cell)
    command = "PYTHONPATH=. python infra/bench_trl_vs_train.py --recipe " + args.recipe + "".join(
        f" --set {s}" for s in args.set) + " --seeds " + " ".join(map(str, args.seeds)) + " --work WORK"
    text, summary = report(cells, command)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trl_vs_train.json").write_text(json.dumps({"summary": summary, "cells": cells}, indent=1))
    (out / "trl_vs_train.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
