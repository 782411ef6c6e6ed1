"""Overhead of the TRL plug-in per GRPO step on the tiny model (issue 20's target: at most 1 %).

    PYTHONPATH=. python infra/bench_trl_plugin.py --curation EXPORT --model TINY_MODEL_DIR --runs 3

Runs stock `GRPOTrainer` (TRL's RepeatSampler over the selected prompts) and `SpaceCurriculum.trainer(GRPOTrainer)`
(same rows, same settings, same number of steps) alternately, `--runs` times each, and writes
infra/results/trl_plugin_overhead.{json,md}. Two figures, because on shared cores step times move by more than 1 %:
- TRL's `step_time` per step, median per run (includes generation, reward, backward);
- the plug-in's own CPU time (planning, recording the groups, updating the bandit: thread CPU time around those
  calls) per step, which is the overhead itself, divided by the same run's median step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer

from space.integrations import curriculum as core
from space.integrations.trl import SpaceCurriculum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from trl_grpo_curriculum import load  # noqa: E402

OWN_TIME = {"seconds": 0.0, "depth": 0}


def timed(fn):
    """Add fn's CPU time on the calling thread (time.thread_time: immune to being descheduled on shared cores) to
    OWN_TIME, counting nested timed calls once (plan calls update)."""
    def wrapper(*args, **kwargs):
        OWN_TIME["depth"] += 1
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            OWN_TIME["depth"] -= 1
            if OWN_TIME["depth"] == 0:
                OWN_TIME["seconds"] += time.thread_time() - start
    return wrapper


core.Curriculum.plan = timed(core.Curriculum.plan)
core.Curriculum.record_group = timed(core.Curriculum.record_group)
core.Curriculum.update = timed(core.Curriculum.update)


def one_run(args: argparse.Namespace, plugin: bool, seed: int, out: Path) -> dict:
    model, tokenizer, accuracy = load(args.model, seed)  # the example's model, tokenizer and reward
    curriculum = SpaceCurriculum(args.curation, bandit={"policy": "ts_lp"}, seed=seed)
    dataset = curriculum.train_dataset(tokenizer)
    config = GRPOConfig(output_dir=str(out), seed=seed, num_train_epochs=args.epochs,
                        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
                        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                        learning_rate=1e-4, lr_scheduler_type="constant", use_cpu=True, bf16=False,
                        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                        dataloader_num_workers=0, disable_tqdm=True)
    trainer_class = curriculum.trainer(GRPOTrainer) if plugin else GRPOTrainer
    reward = curriculum.reward(accuracy) if plugin else accuracy
    trainer = trainer_class(model=model, processing_class=tokenizer, args=config, train_dataset=dataset,
                            reward_funcs=[reward])
    OWN_TIME["seconds"] = 0.0
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    steps = [e["step_time"] for e in trainer.state.log_history if "step_time" in e]
    return {"plugin": plugin, "seed": seed, "steps": trainer.state.global_step, "wall_seconds": wall,
            "median_step_seconds": statistics.median(steps[1:] or steps),
            "plugin_seconds": OWN_TIME["seconds"] if plugin else 0.0}


def report(runs: list[dict], command: str) -> str:
    stock = [r["median_step_seconds"] for r in runs if not r["plugin"]]
    plug = [r["median_step_seconds"] for r in runs if r["plugin"]]
    own = [r["plugin_seconds"] / r["steps"] / r["median_step_seconds"] for r in runs if r["plugin"]]
    lines = ["# TRL plug-in overhead per GRPO step (tiny model, CPU)", "", f"Command: `{command}`", "",
             "| # | variant | seed | steps | median step (s) | plug-in's own CPU time per step (s) | own / step |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs):
        own_step = r["plugin_seconds"] / r["steps"]
        share = f"{own_step / r['median_step_seconds']:.3%}" if r["plugin"] else ""
        lines.append(f"| {i} | {'plug-in' if r['plugin'] else 'stock'} | {r['seed']} | {r['steps']} | "
                     f"{r['median_step_seconds']:.3f} | {own_step:.5f} | {share} |")
    lines += ["", f"Median step, stock: {statistics.median(stock):.3f} s (runs {', '.join(f'{s:.3f}' for s in stock)}); "
              f"plug-in: {statistics.median(plug):.3f} s (runs {', '.join(f'{s:.3f}' for s in plug)}); "
              f"difference of the medians {statistics.median(plug) / statistics.median(stock) - 1:+.1%}; step times "
              "of one variant vary more than that between runs on these shared cores, so this figure cannot resolve 1 %.",
              f"The plug-in's own CPU time is {max(own):.3%} of a median step at most over the runs, "
              f"{statistics.median(own):.3%} in the median run (target: at most 1 %)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curation", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=18)
    parser.add_argument("--out", default="infra/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for run in range(args.runs):
        for plugin in (False, True):  # alternated, so load changes hit both variants alike
            runs.append(one_run(args, plugin, seed=run, out=Path("/tmp/bench-trl-plugin")))
            print(json.dumps(runs[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trl_plugin_overhead.json").write_text(json.dumps(runs, indent=1))
    command = "PYTHONPATH=. python infra/bench_trl_plugin.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    (out / "trl_plugin_overhead.md").write_text(report(runs, command))
    print((out / "trl_plugin_overhead.md").read_text())


if __name__ == "__main__":
    main()
