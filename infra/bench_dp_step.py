"""Seconds per GRPO step with one training process and with two (train.distributed.processes=2, issue 21).

    nice -n 10 .venv/bin/python infra/bench_dp_step.py [--repeats 3] [--slots 16] [--prompts-per-step 4]
        [--generations 4] [--max-tokens 32] [--threads 1] [--out infra/results/dp_step]

Both arms train the same planned epoch (same rows, slot order, seed and global batch: B prompts x G rollouts
per optimiser step) on the test suite's tiny random Llama (tests/conftest_models.py): one arm calls
`space.train.grpo.train_epoch` in this process, the other `space.train.launch.train_epoch_launched`, a
torchrun job of two CPU ranks (gloo) that each train B/2 prompts per step and all-gather their records. Both
use `--threads` torch threads per process (default 1, torchrun's own default for several ranks): on the shared
cores a 2-thread process was seen to take 72-298 s per step against 0.1-0.2 s for the 1-thread ranks (OpenMP
threads waiting for each other while descheduled), which measures threads, not processes. The arms alternate, `--repeats`
times each. Per-step seconds are TRL's `step_time` logs (rank 0's in the launched arm); the epoch's wall time
is also recorded, launch and imports included. On a 2-core machine two ranks cannot speed a step up: the
figure is the overhead of splitting and gathering. The load average is read before and after each epoch, as
the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

QUESTIONS = ["1+1=", "2+2=", "3+4=", "5-1=", "9-3=", "7+2=", "8-5=", "6+6="]


def rows() -> list[dict]:
    return [{"prompt": f"Q: {q}\nA: ", "prompt_id": f"p{i}", "cluster": i % 2, "answer": str(eval(q[:-1])),
             "metadata": "{}"} for i, q in enumerate(QUESTIONS)]


def run_arm(processes: int, model_dir: Path, out: Path, args: argparse.Namespace) -> dict:
    """One epoch with `processes` training processes: per-step seconds, wall seconds and the load average."""
    from space.data.verifiers import get_verifier
    from space.train import grpo
    from space.train.distributed import DistributedConfig
    from space.train.launch import train_epoch_launched

    settings = grpo.GRPOSettings(prompts_per_step=args.prompts_per_step, num_generations=args.generations,
                                 max_completion_length=args.max_tokens, learning_rate=1e-4)
    order = [i % len(QUESTIONS) for i in range(args.slots)]
    load_before, started = os.getloadavg()[0], time.perf_counter()
    if processes == 1:
        import torch

        torch.set_num_threads(args.threads)
        result = grpo.train_epoch(model_dir, None, out, rows(), order, get_verifier("exact", extract="none"),
                                  settings, 0, 1, 0)
    else:
        verifier = {"name": "exact", "extract": "none", "theta_solve": 1.0}
        dist = DistributedConfig(processes=processes, threads_per_process=args.threads)
        result = train_epoch_launched(dist, model_dir, None, out, rows(), order, verifier, settings, 0, 1, 0)
    wall = time.perf_counter() - started
    steps = [e["step_time"] for e in result.log_history if "step_time" in e]
    lengths = [e.get("completions/mean_length") for e in result.log_history if "step_time" in e]
    return {"processes": processes, "step_seconds": steps, "mean_lengths": lengths, "nice": os.nice(0),
            "train_seconds": result.metrics["seconds"],
            "wall_seconds": wall, "load_before": load_before, "load_after": os.getloadavg()[0],
            "rank_slots": result.extra["rank_slots"]}


def summarise(runs: list[dict]) -> dict:
    """Median per-step seconds per arm (all steps of all repeats) and their ratio."""
    out: dict = {}
    for processes in sorted({r["processes"] for r in runs}):
        steps = [s for r in runs if r["processes"] == processes for s in r["step_seconds"]]
        walls = [r["wall_seconds"] for r in runs if r["processes"] == processes]
        lengths = [n for r in runs if r["processes"] == processes for n in r.get("mean_lengths", []) if n is not None]
        out[processes] = {"median_step": statistics.median(steps), "min_step": min(steps), "max_step": max(steps),
                          "steps": len(steps), "median_wall": statistics.median(walls),
                          "median_length": statistics.median(lengths) if lengths else None}
    out["ratio"] = out[2]["median_step"] / out[1]["median_step"]
    return out


def write_report(out: Path, args: argparse.Namespace, runs: list[dict], summary: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    recorded = {**vars(args), "out": os.path.relpath(args.out, ROOT)}  # no path outside the repository
    out.with_suffix(".json").write_text(json.dumps({"args": recorded, "runs": runs, "summary": summary}, indent=1,
                                                default=str))
    lines = [f"# Seconds per GRPO step, 1 vs 2 training processes ({time.strftime('%Y-%m-%d')})", "",
             f"`{' '.join(sys.argv)}`; tiny random Llama, {args.slots} slots, B={args.prompts_per_step}, "
             f"G={args.generations}, {args.max_tokens} new tokens, {args.threads} torch thread(s) per process; "
             f"{os.cpu_count()} cores, shared.", "",
             "| processes | steps | median s/step | min | max | median epoch wall s (launch included) "
             "| median tokens per completion |",
             "|---|---|---|---|---|---|---|"]
    for processes in (1, 2):
        s = summary[processes]
        length = f"{s['median_length']:.1f}" if s.get("median_length") is not None else "n/a"
        lines.append(f"| {processes} | {s['steps']} | {s['median_step']:.3f} | {s['min_step']:.3f} | "
                     f"{s['max_step']:.3f} | {s['median_wall']:.1f} | {length} |")
    lines += ["", f"Ratio of median step times, 2 processes / 1: **{summary['ratio']:.2f}** (target: at most 1.3).",
              f"Run at nice {runs[0]['nice']} (the bench's processes and the ranks it starts). Per step, the "
              "epoch's mean completion length (the work of a step; the arms sample differently): "
              + "; ".join(f"{r['processes']}p {[round(n, 1) for n in r['mean_lengths'] if n is not None]}" for r in runs),
              "Load averages (1 min) before/after each epoch: "
              + ", ".join(f"{r['processes']}p {r['load_before']:.1f}/{r['load_after']:.1f}" for r in runs)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process, both arms")
    parser.add_argument("--out", type=Path, default=ROOT / "infra" / "results" / "dp_step")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # ranks import this tree
    from conftest_models import make_tiny_model_dir

    runs = []
    with tempfile.TemporaryDirectory(prefix="space-dp-bench-") as scratch:
        model_dir = make_tiny_model_dir(Path(scratch) / "tiny")
        for repeat in range(args.repeats):
            for processes in (1, 2):
                runs.append(run_arm(processes, model_dir, Path(scratch) / f"ckpt_{processes}_{repeat}", args))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "rank_slots"}), flush=True)
    summary = summarise(runs)
    write_report(args.out, args, runs, summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
