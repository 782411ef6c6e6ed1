"""Regime search: which builtin settings make the default `space run` measurably improve held-out pass@1?

    SPACE_HOME=.space/regime/m2000 python infra/regime_search.py run queue.json   # [{name, note, seeds, set}]
    SPACE_HOME=/tmp/fresh python infra/regime_search.py cli --name default-cold   # a real cold `space run`
    python infra/regime_search.py table      # rewrite infra/results/regime.md from regime.json

One SPACE_HOME per tiny-model variant, so configurations of that model reuse its build and curation (stage
folders are keyed by their inputs). `run` executes a queue of (configuration, seed) cells in one process
(one Prefect server start), each exactly as `space run` does (bootstrap -> curate -> train with base and
final evaluation); `cli` times a real `python -m flows.cli run` in its own process first, then runs the same
flows again (all cache hits) to locate the eval tables. For each cell it computes the paired bootstrap 95%
CI of final-minus-base pass@1 (and greedy accuracy) over eval prompts, 10,000 resamples, seeded, and appends
one row to infra/results/regime.json (raw numbers, load averages, wall-clock) and regime.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from space.analysis.stats import paired_bootstrap_ci

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("REGIME_RESULTS", ROOT / "infra" / "results"))  # tests point it elsewhere
JSON_PATH, MD_PATH = RESULTS / "regime.json", RESULTS / "regime.md"
RESAMPLES, CI_SEED = 10_000, 0


def compare(base_path: str, final_path: str) -> dict:
    """Paired differences of pass@1 and greedy accuracy between two per-prompt eval tables."""
    import polars as pl

    base, final = pl.read_parquet(base_path), pl.read_parquet(final_path)
    joined = base.join(final, on="prompt_id", suffix="_final", how="inner")
    if joined.height != base.height or joined.height != final.height:
        raise ValueError(f"eval tables differ in prompts: {base_path} ({base.height}) vs {final_path} ({final.height})")
    out = {"eval_prompts": joined.height}
    for column in ("pass1", "greedy"):
        both = joined.drop_nulls([column, f"{column}_final"])
        mean, low, high = paired_bootstrap_ci(both[column].to_numpy(), both[f"{column}_final"].to_numpy(),
                                              n_boot=RESAMPLES, seed=CI_SEED)
        out[column] = {"base": float(both[column].mean()), "final": float(both[f"{column}_final"].mean()),
                       "diff": mean, "ci_low": low, "ci_high": high, "judged_prompts": both.height}
    return out


# ---------------------------------------------------------------------------------------------
# cells: one process runs a queue of (configuration, seed) cells of one SPACE_HOME


def run_flows(recipe_name: str, seed: int, overrides: list[str]) -> dict:
    """bootstrap -> curate -> train exactly as `space run` does; timings, metrics and eval table paths."""
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from flows.train import train_flow
    from space.config import load_recipe

    recipe = load_recipe(recipe_name, [f"seed={seed}", *overrides])
    marks = [time.perf_counter()]
    model = bootstrap_flow(recipe)
    marks.append(time.perf_counter())
    curation = curate_flow(recipe, model)
    marks.append(time.perf_counter())
    training = train_flow(recipe, model, curation)
    marks.append(time.perf_counter())
    train = recipe.train
    return {
        "seconds": dict(zip(("bootstrap", "curate", "train"), np.diff(marks).tolist(), strict=True)),
        "base_eval": training["base_eval"], "final_eval": training["final_eval"],
        "unique_prompts": training["unique_prompts"],
        "steps": train.epochs * train.slots_per_epoch // train.grpo.prompts_per_step * train.grpo.num_iterations,
        "train_run_id": training["run_id"], "model_sha": model["sha"],
        "zero_std": [e["metrics"].get("frac_reward_zero_std") for e in training["epochs"]],
        "train_solve_rate": [e["metrics"].get("solve_rate") for e in training["epochs"]],
    }


def run_queue(queue: list[dict], home: str, cli_seconds: float | None = None) -> None:
    """Run every queued cell in this process (one Prefect server start) and append a row per cell."""
    import tasks  # noqa: F401  (environment defaults from SPACE_HOME)

    for item in queue:
        for seed in item["seeds"]:
            load_before, started, t0 = os.getloadavg(), time.time(), time.perf_counter()
            result = run_flows(item.get("recipe", "builtin"), seed, item["set"])
            wall = time.perf_counter() - t0
            row = {
                "name": item["name"], "note": item.get("note", ""), "recipe": item.get("recipe", "builtin"),
                "overrides": item["set"], "seed": seed, "home": Path(home).name,
                "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
                "wall_seconds": round(cli_seconds if cli_seconds is not None else wall, 1),
                "via_cli": cli_seconds is not None,
                "stage_seconds": {k: round(v, 1) for k, v in result.pop("seconds").items()},
                "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
                **{k: v for k, v in result.items() if k not in ("base_eval", "final_eval")},
                "base_metrics": result["base_eval"]["metrics"], "final_metrics": result["final_eval"]["metrics"],
                "base_eval_path": _under_home(result["base_eval"]["path"], home),
                "final_eval_path": _under_home(result["final_eval"]["path"], home),
                **compare(result["base_eval"]["path"], result["final_eval"]["path"]),
            }
            write_results([*load_rows(), row])  # re-read: several queues may append in turn
            print("REGIME-ROW " + json.dumps({k: row[k] for k in ("name", "seed", "steps", "wall_seconds", "pass1",
                                                                 "greedy")}), flush=True)


def _under_home(path: str, home: str) -> str:
    """A path as recorded in the results: relative to SPACE_HOME, so no machine's folders are committed."""
    return str(Path(path).resolve().relative_to(Path(home).resolve()))


def run_cli(home: Path, recipe: str, seed: int, overrides: list[str]) -> float:
    """A real cold `python -m flows.cli run` in its own process; returns its wall-clock seconds."""
    env = dict(os.environ, SPACE_HOME=str(home), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "flows.cli", "run", "--recipe", recipe, f"--set=seed={seed}",
           *[f"--set={s}" for s in overrides]]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - t0


def load_rows() -> list[dict]:
    return json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else []


def fmt_ci(d: dict) -> str:
    mark = " **excl. 0**" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""
    return f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]{mark}"


def table(rows: list[dict]) -> str:
    lines = ["| # | config | seed | overrides | steps | unique prompts | base greedy / pass@1 | final greedy / pass@1 "
             "| pass@1 diff [95% CI], points | greedy diff [95% CI] | wall (stages b/c/t) s | load 1-min before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        st = r["stage_seconds"]
        over = " ".join(f"`{o}`" for o in r["overrides"]) or "(recipe defaults)"
        lines.append(
            f"| {i} | {r['name']}{' (CLI, cold)' if r['via_cli'] else ''} | {r['seed']} | {over} | {r['steps']} | "
            f"{r['unique_prompts']} | {r['greedy']['base']:.3f} / {r['pass1']['base']:.3f} | "
            f"{r['greedy']['final']:.3f} / {r['pass1']['final']:.3f} | {fmt_ci(r['pass1'])} | {fmt_ci(r['greedy'])} | "
            f"{r['wall_seconds']:.0f} ({st['bootstrap']:.0f}/{st['curate']:.0f}/{st['train']:.0f}) | "
            f"{_load(r, 'load_before')} / {_load(r, 'load_after')} |")
    return "\n".join(lines)


def _load(row: dict, key: str) -> str:
    return "n/a" if row.get(key) is None else f"{row[key][0]:.1f}"


def write_results(rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(rows, indent=2) + "\n")
    header = MD_PATH.read_text().split("<!-- table -->")[0] if MD_PATH.is_file() else "# Regime search\n\n"
    MD_PATH.write_text(header + "<!-- table -->\n" + table(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a queue of configurations in this process (SPACE_HOME must be set)")
    run.add_argument("queue", type=Path, help="JSON list of {name, note, recipe, seeds, set: [overrides]}")
    cli = sub.add_parser("cli", help="time a real cold `space run` (fresh SPACE_HOME), then record its figures")
    cli.add_argument("--name", required=True)
    cli.add_argument("--note", default="")
    cli.add_argument("--recipe", default="builtin")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--set", action="append", default=[])
    sub.add_parser("table", help="rewrite regime.md from regime.json")
    args = parser.parse_args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    home = os.environ.get("SPACE_HOME")
    if args.command == "table":
        write_results(load_rows())
    elif home is None:
        parser.error("set SPACE_HOME (one per tiny-model variant)")
    elif args.command == "run":
        run_queue(json.loads(args.queue.read_text()), home)
    else:  # the flows below are then all cache hits: they only locate the eval tables
        seconds = run_cli(Path(home), args.recipe, args.seed, args.set)
        run_queue([{"name": args.name, "note": args.note, "recipe": args.recipe, "seeds": [args.seed],
                    "set": args.set}], home, cli_seconds=seconds)


if __name__ == "__main__":
    main()
