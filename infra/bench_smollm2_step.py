"""Seconds per GRPO step on SmolLM2-135M-Instruct on CPU: full fine-tuning, and LoRA when peft is installed.

    nice -n 10 .venv/bin/python infra/bench_smollm2_step.py [--steps 4] [--prompts-per-step 2] [--generations 4]
        [--max-tokens 48] [--modes full lora] [--out infra/results/smollm2_step.md]

Each mode runs in its own child process (so its peak RSS is its own): the model converted by
space/models/smollm2.py, the smollm2 recipe's prompts (builtin pool, reasoning-gym wording, its system prompt,
chat template), TRL's GRPOTrainer with space's GRPO config (space.train.grpo.build_config: CPU settings, B prompts x
G rollouts per step, transformers generation) and the recipe's reasoning-gym verifier as reward. LoRA: r = 16,
alpha = 32 on the attention and MLP projections. Per-step seconds are TRL's `step_time` logs; the load average
is read before and after, since the 2 cores are usually shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_dataset(model_dir: Path, rows: int):
    """The smollm2 recipe's first `rows` pool prompts, rendered with the chat template."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from space.config import load_recipe
    from space.data.sources import load_split
    from space.data.prompting import render_prompts

    recipe = load_recipe("smollm2", [f"data.pool_size={max(rows, 12)}"])
    table, _ = load_split(recipe.data, "pool")
    table = table.head(rows)
    prompts = render_prompts(AutoTokenizer.from_pretrained(model_dir), table["question"].to_list(),
                             recipe.model.system_prompt)
    return recipe, Dataset.from_dict({"prompt": prompts, "answer": table["answer"].to_list(),
                                      "metadata": table["metadata"].to_list()})


def run_mode(mode: str, model_dir: Path, args: argparse.Namespace) -> dict:
    """One mode in this process: `steps` GRPO steps; returns timings and memory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from space.engines import collect_eos_ids
    from space.train.grpo import GRPOSettings, build_config
    from space.data.lengths import ids_truncated
    from space.data.verifiers import get_verifier

    torch.set_num_threads(os.cpu_count() or 1)
    recipe, dataset = build_dataset(model_dir, args.steps * args.prompts_per_step)
    settings = GRPOSettings(prompts_per_step=args.prompts_per_step, num_generations=args.generations,
                            max_completion_length=args.max_tokens, learning_rate=recipe.train.grpo.learning_rate)
    verifier = get_verifier(recipe.verifier.name, extract=recipe.verifier.extract)

    def reward(prompts, completions, completion_ids, *, answer, metadata, **_):
        truncated = [ids_truncated(ids, eos_ids) for ids in completion_ids]
        return verifier(completions, answer=answer, metadata=metadata, truncated=truncated)

    reward.__name__ = "reasoning_gym"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    eos_ids = collect_eos_ids(tokenizer.eos_token_id, model.generation_config.eos_token_id)
    peft_config = None
    if mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                 task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix="bench-smollm2-") as scratch:
        config = build_config(settings, output_dir=Path(scratch), seed=0, use_cpu=True)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config,
                              callbacks=[step_printer(mode)])
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        load_before = os.getloadavg()
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
    steps = [e for e in trainer.state.log_history if "step_time" in e]
    return {"mode": mode, "steps": len(steps), "step_seconds": [round(e["step_time"], 2) for e in steps],
            "train_wall_seconds": round(wall, 1), "trainable_parameters": int(trainable),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "mean_completion_length": [round(e.get("completions/mean_length", float("nan")), 1) for e in steps],
            "clipped_ratio": [round(e.get("completions/clipped_ratio", float("nan")), 2) for e in steps],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "batch": f"{args.prompts_per_step} prompts x {args.generations} rollouts x <= {args.max_tokens} tokens"}


def step_printer(mode: str):
    """Print each step's time to stderr as it happens, so a run stopped early still shows what it measured."""
    from transformers import TrainerCallback

    class StepPrinter(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "step_time" in logs:
                print(f"{mode} step {state.global_step}: {logs['step_time']:.1f} s, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, flush=True)

    return StepPrinter()


def convert_model() -> Path:
    from space.models.smollm2 import convert_smollm2
    from space.paths import models_dir

    out = models_dir() / "smollm2-135m-instruct"
    convert_smollm2(out)
    return out


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    niceness = os.nice(0)  # as run, not as documented: the figures depend on it
    prefix = f"nice -n {niceness} " if niceness else ""
    lines = ["# GRPO step on SmolLM2-135M-Instruct (CPU)", "",
             f"Command: `{prefix}python infra/bench_smollm2_step.py --steps {args.steps} --prompts-per-step "
             f"{args.prompts_per_step} --generations {args.generations} --max-tokens {args.max_tokens} "
             f"--modes {' '.join(args.modes)}`", "",
             "| mode | trainable params | batch | step seconds (each step) | peak RSS GiB | load avg before / after |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['mode']} | - | - | failed: {r['error']} | - | - |")
            continue
        lines.append(f"| {r['mode']} | {r['trainable_parameters']:,} | {r['batch']} | "
                     f"{', '.join(str(s) for s in r['step_seconds'])} | {r['peak_rss_gib']} | "
                     f"{r['load_average_before'][0]} / {r['load_average_after'][0]} |")
    lines += ["", "Raw results:", "", "```json", json.dumps(results, indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--out", type=Path, default=ROOT / "infra" / "results" / "smollm2_step.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.child:
        print(json.dumps(run_mode(args.child, convert_model(), args)))
        return
    convert_model()
    results = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps), "--prompts-per-step",
               str(args.prompts_per_step), "--generations", str(args.generations), "--max-tokens", str(args.max_tokens)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr (per-step lines) passes through
        if done.returncode != 0:
            results.append({"mode": mode, "error": f"exit code {done.returncode} (see stderr)"})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
