"""Where a GRPO step's time goes, in one training process and in each rank of a 2-rank torchrun job (issue 21).

    nice -n 19 .venv/bin/python infra/profile_dp_step.py [--repeats 2] [--slots 32] [--threads 1]
        [--out infra/results/dp_step_profile]

The same planned epoch as infra/bench_dp_step.py (the tiny random Llama, B=4 prompts x G=4 completions of up to
32 tokens per optimiser step, 1 torch thread per process), trained in this process and as a torchrun job of two
CPU ranks, alternating. Timers wrap TRL's phases (generation, reward scoring with its gather, the loss forward,
backward, the optimiser step), accelerate's gathers and `torch.distributed.all_gather_object`; a DDP
communication hook times each gradient bucket's all-reduce from launch to completion. Each records wall seconds
and the calling thread's CPU seconds (`time.thread_time`), so a phase that waits (for a peer rank, or for a core
the machine's other work holds) shows wall well above CPU. Each rank also reports its torch intra-op and
inter-op threads and OMP_NUM_THREADS. The ranks run this file (`--worker JOB_DIR`) instead of
`space.train.dp_worker`: the timers are installed first, then the rank runs as shipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "infra")]

TOTALS: dict = defaultdict(lambda: [0.0, 0.0, 0])  # phase -> [wall s, thread CPU s, calls]
ALLREDUCE: list[float] = []  # per gradient bucket: seconds from launching its all-reduce to its completion
PHASES = [("training_step", "step"), ("_generate_single_turn", "generate"), ("_calculate_rewards", "rewards"),
          ("compute_loss", "loss forward")]


def timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = TOTALS[name]
            entry[0] += time.perf_counter() - wall
            entry[1] += time.thread_time() - cpu
            entry[2] += 1
    return wrapper


def install_timers() -> None:
    """Wrap TRL's, accelerate's and torch.distributed's phases; time DDP's bucket all-reduces."""
    import accelerate
    import torch
    import torch.distributed as dist
    import trl.trainer.grpo_trainer as grpo_trainer
    from accelerate.optimizer import AcceleratedOptimizer

    for method, name in PHASES:
        setattr(grpo_trainer.GRPOTrainer, method, timed(name, getattr(grpo_trainer.GRPOTrainer, method)))
    accelerate.Accelerator.backward = timed("backward (with DDP all-reduce)", accelerate.Accelerator.backward)
    accelerate.Accelerator.gather = timed("accelerator.gather", accelerate.Accelerator.gather)
    grpo_trainer.gather_object = timed("gather_object (TRL's logs)", grpo_trainer.gather_object)
    AcceleratedOptimizer.step = timed("optimizer step", AcceleratedOptimizer.step)
    original = torch.nn.parallel.DistributedDataParallel.__init__

    def ddp_init(self, *args, **kwargs):
        original(self, *args, **kwargs)

        def hook(state, bucket):  # DDP's default all-reduce (sum, then divide by the world size), timed
            started, world = time.perf_counter(), dist.get_world_size()

            def done(future):
                ALLREDUCE.append(time.perf_counter() - started)
                return future.value()[0].div_(world)
            return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(done)
        self.register_comm_hook(None, hook)

    torch.nn.parallel.DistributedDataParallel.__init__ = ddp_init


def report(path: Path) -> None:
    """This process's phase totals and thread settings to `path` (one file per rank)."""
    import torch

    body = {"rank": int(os.environ.get("RANK", 0)), "torch_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "phases": {k: {"wall": v[0], "cpu": v[1], "calls": v[2]} for k, v in TOTALS.items()},
            "allreduce": {"buckets": len(ALLREDUCE), "wall": sum(ALLREDUCE)}}
    path.write_text(json.dumps(body, indent=1))


def worker(job_dir: str) -> None:
    """One rank: timers first, then `space.train.dp_worker` as shipped."""
    install_timers()
    from space.train import dp_worker

    try:
        dp_worker.main([job_dir])
    finally:
        report(Path(job_dir) / f"profile_rank{os.environ.get('RANK', 0)}.json")


def run_arm(processes: int, model_dir: Path, scratch: Path, args: argparse.Namespace) -> tuple[list[dict], list]:
    """One epoch: the phase totals of each training process (one, or one per rank) and each step's mean
    completion length (the step's work: the arms sample differently)."""
    import bench_dp_step as bench
    import space.train.launch as launch
    from space.data.verifiers import get_verifier
    from space.train import grpo
    from space.train.distributed import DistributedConfig

    settings = grpo.GRPOSettings(prompts_per_step=4, num_generations=4, max_completion_length=32, learning_rate=1e-4)
    order = [i % len(bench.QUESTIONS) for i in range(args.slots)]
    out = Path(tempfile.mkdtemp(dir=scratch))
    if processes == 1:
        import torch

        torch.set_num_threads(args.threads)
        TOTALS.clear()
        result = grpo.train_epoch(model_dir, None, out / "ckpt", bench.rows(), order,
                                  get_verifier("exact", extract="none"), settings, 0, 1, 0)
        report(out / "profile_rank0.json")
        return [json.loads((out / "profile_rank0.json").read_text())], lengths(result)
    shipped = launch.launch_command
    launch.launch_command = lambda cfg, job: shipped(cfg, job)[:-3] + [__file__, "--worker", str(job)]  # not -m
    cfg = DistributedConfig(processes=processes, threads_per_process=args.threads, job_dir=str(out / "jobs"))
    result = launch.train_epoch_launched(cfg, model_dir, None, out / "ckpt", bench.rows(), order,
                                {"name": "exact", "extract": "none", "theta_solve": 1.0}, settings, 0, 1, 0)
    launch.launch_command = shipped
    return [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*/profile_rank*.json"))], lengths(result)


def lengths(result) -> list:
    return [round(e["completions/mean_length"], 1) for e in result.log_history if "completions/mean_length" in e]


def write_report(out: Path, args: argparse.Namespace, runs: list[dict]) -> None:
    """Per arm and process: each phase's wall and CPU seconds per step, medians over the repeats."""
    recorded = {**vars(args), "out": os.path.relpath(args.out, ROOT)}  # no path outside the repository
    out.with_suffix(".json").write_text(json.dumps({"args": recorded, "runs": runs}, indent=1, default=str))
    names = ["step", "generate", "rewards", "accelerator.gather", "gather_object (TRL's logs)", "loss forward",
             "backward (with DDP all-reduce)", "optimizer step"]
    lines = [f"# Where a GRPO step's time goes, 1 vs 2 training processes ({time.strftime('%Y-%m-%d')})", "",
             f"`{' '.join(sys.argv)}`: {args.slots} slots, B=4, G=4, 32 new tokens, {args.threads} torch thread(s) per "
             f"process, nice {os.nice(0)}; {os.cpu_count()} cores shared with other work. Seconds per optimiser "
             "step, wall / thread CPU, median over the repeats.", "",
             "| phase | " + " | ".join(f"{p} process(es), rank {r}" for p, r in ((1, 0), (2, 0), (2, 1))) + " |",
             "|---|---|---|---|"]

    def cell(processes: int, rank: int, name: str) -> str:
        values = [(p["phases"][name]["wall"] / steps, p["phases"][name]["cpu"] / steps)
                  for run in runs if run["processes"] == processes for p in run["profiles"]
                  if p["rank"] == rank and name in p["phases"]
                  for steps in [p["phases"]["step"]["calls"]]]
        if not values:
            return "-"
        return f"{statistics.median(v[0] for v in values):.3f} / {statistics.median(v[1] for v in values):.3f}"

    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(p, r, name) for p, r in ((1, 0), (2, 0), (2, 1))) + " |")
    for run in runs:
        for p in run["profiles"]:
            steps = p["phases"]["step"]["calls"]
            calls = sum(p["phases"].get(n, {"calls": 0})["calls"] for n in ("accelerator.gather",
                                                                              "gather_object (TRL's logs)"))
            lines.append(f"- {run['processes']}p rank {p['rank']}: torch threads {p['torch_threads']}, inter-op "
                         f"{p['interop_threads']}, OMP_NUM_THREADS {p['OMP_NUM_THREADS']}; {calls / steps:.0f} gathers "
                         f"and {p['allreduce']['buckets'] / steps:.0f} bucket all-reduces per step "
                         f"({p['allreduce']['wall'] / steps:.3f} s); load {run['load']:.1f}; tokens per completion, "
                         f"by step: {run['mean_lengths']}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        return worker(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "infra" / "results" / "dp_step_profile")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    from conftest_models import make_tiny_model_dir

    install_timers()
    runs = []
    with tempfile.TemporaryDirectory(prefix="space-dp-profile-") as scratch:
        model_dir = make_tiny_model_dir(Path(scratch) / "tiny")
        for _ in range(args.repeats):
            for processes in (1, 2):
                profiles, steps = run_arm(processes, model_dir, Path(scratch), args)
                runs.append({"processes": processes, "profiles": profiles, "load": os.getloadavg()[0],
                             "mean_lengths": steps})
                print(json.dumps({"processes": processes, "step_wall": [p["phases"]["step"]["wall"] for p in profiles],
                                  "load": runs[-1]["load"]}), flush=True)
    write_report(args.out, args, runs)


if __name__ == "__main__":
    main()
