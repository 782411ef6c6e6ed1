"""Regime probe: plain GRPO (uniform prompt order over the builtin pool) on a tiny model, outside Prefect.

A fast way to ask "does this GRPO setting move held-out accuracy at all?" before paying for `space run`
cells (infra/regime_search.py). One JSON line per probe is appended to infra/results/regime_probes.jsonl:

    python infra/regime_probe.py '{"model": "DIR", "eval": 200, "epochs": 4, "slots": 512,
                                   "prompts_per_step": 8, "num_generations": 8, "learning_rate": 1e-4}'

Keys besides the GRPOSettings fields: model (a built tiny model directory), seed (0), epochs, slots (prompt
slots per epoch), eval (held-out prompts; 0 skips evaluation), fixed (train on the first N pool prompts only,
to check that the training reward rises), tag. Held-out evaluation is greedy + 8 samples at T = 1.0 with the
24-token length, base and final model with the same sampling seed; the pass@1 change gets a paired
bootstrap 95% CI over eval prompts (space.analysis.stats, 10,000 resamples, seed 0).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from space.data.builtin_tasks import generate_items
from space.engines import EngineConfig, make_engine
from space.train.evaluation import evaluate
from space.train.grpo import GRPOSettings, train_epoch
from space.data.prompting import render_prompts
from space.analysis.stats import paired_bootstrap_ci
from space.data.verifiers import get_verifier

RESULTS = Path(__file__).resolve().parent / "results" / "regime_probes.jsonl"
LENGTH = 24


def _metadata(item: dict) -> str:
    return item["metadata"] if isinstance(item["metadata"], str) else json.dumps(item["metadata"])


def _eval_fn(tokenizer, items: list[dict], verifier, seed: int):
    table = pl.DataFrame({"prompt_id": [str(i) for i in range(len(items))], "source": [it["source"] for it in items],
                          "answer": [str(it["answer"]) for it in items], "metadata": [_metadata(it) for it in items]})
    prompts = render_prompts(tokenizer, [it["question"] for it in items])

    def run(model_dir: Path) -> pl.DataFrame:
        with make_engine(EngineConfig(kind="transformers"), model_dir) as engine:
            _, per_prompt = evaluate(engine.generate, prompts, table, verifier, k=8, temperature=1.0,
                                     max_tokens=LENGTH, theta_solve=1.0, seed=seed)
        return per_prompt

    return run


def _paired(base: pl.DataFrame, final: pl.DataFrame, column: str) -> dict:
    mean, low, high = paired_bootstrap_ci(base[column].to_numpy(), final[column].to_numpy(), n_boot=10_000, seed=0)
    return {"base": float(base[column].mean()), "final": float(final[column].mean()), "diff": mean,
            "ci_low": low, "ci_high": high}


def probe(cfg: dict) -> dict:
    from transformers import AutoTokenizer

    spec = dict(cfg)
    model_dir, seed = Path(cfg.pop("model")), cfg.pop("seed", 0)
    epochs, slots, eval_n = cfg.pop("epochs", 4), cfg.pop("slots", 64), cfg.pop("eval", 400)
    fixed, tag = cfg.pop("fixed", 0), cfg.pop("tag", "")
    settings = GRPOSettings(max_completion_length=LENGTH, **cfg)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    verifier = get_verifier("reasoning_gym", extract="none")
    pool = generate_items("pool", 2000, seed=0)[: fixed or None]
    rows = [{"prompt": p, "prompt_id": str(i), "cluster": 0, "answer": str(it["answer"]), "metadata": _metadata(it)}
            for i, (p, it) in enumerate(zip(render_prompts(tokenizer, [it["question"] for it in pool]), pool))]
    run_eval = _eval_fn(tokenizer, generate_items("eval", eval_n, seed=0), verifier, seed) if eval_n else None
    started = time.perf_counter()
    base = run_eval(model_dir) if run_eval else None
    rng, checkpoint, rewards = random.Random(seed), None, []
    with tempfile.TemporaryDirectory(prefix="space-probe-") as scratch:
        for epoch in range(epochs):
            order = [i % len(rows) for i in range(slots)] if fixed else [rng.randrange(len(rows)) for _ in range(slots)]
            out = Path(scratch) / f"epoch_{epoch}"
            result = train_epoch(model_dir, checkpoint, out, rows, order, verifier, settings, epoch=epoch,
                                 total_epochs=epochs, seed=seed)
            checkpoint = out
            rewards.append(result.metrics["reward/mean"])
        final = run_eval(checkpoint) if run_eval else None
    row = {"spec": spec, "tag": tag, "steps": epochs * slots // settings.prompts_per_step,
           "train_reward_per_epoch": rewards, "seconds": round(time.perf_counter() - started, 1)}
    if base is not None:
        row |= {"eval_prompts": eval_n, "pass1": _paired(base, final, "pass1"), "greedy": _paired(base, final, "greedy")}
    return row


if __name__ == "__main__":
    result = probe(json.loads(sys.argv[1]))
    with open(RESULTS, "a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps(result))
