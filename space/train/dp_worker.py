"""One rank of a data-parallel GRPO epoch; `space/train/launch.py` starts N of them through torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m space.train.dp_worker JOB_DIR

`JOB_DIR/plan.json` (written by the flow's process) holds the epoch's rows, its planned slot order and the
GRPO settings, the same arguments `space.train.grpo.train_epoch` takes in a single process. Every rank trains
its share of the slots (space/train/distributed.py), writes its own records to `JOB_DIR/ranks/rank_<r>.json`
(the launch folder, never a stage folder) and receives every rank's records through
`torch.distributed.all_gather_object`. Rank 0 alone writes the checkpoint (atomically, as in one process) and
`JOB_DIR/result/` (rollouts.parquet, then result.json last). Nothing here plans or updates the bandit: the
flow's process does both, once.

`torch.distributed.elastic`'s `record` puts a failing rank's traceback into torchrun's failure summary, which
`launch.py` turns into an error naming the rank.

torchrun starts each rank in a session of its own and sets no parent-death signal, so a rank outlives a torchrun
that is SIGKILLed (say, with the `space` command's whole process group, the CLI's watchdog included) and would
train on, rank 0 writing its checkpoint. Each rank therefore asks the kernel for SIGKILL when its parent, the
torchrun agent, dies (`die_with_launcher`, Linux); elsewhere the watchdog alone stops ranks.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from space.train.distributed import World, all_gather, current_rank, torch_backend

PLAN, RESULT, RANKS = "plan.json", "result", "ranks"


def write_then_gather(job_dir: Path) -> Any:
    """A gather that first leaves this rank's own records in the launch folder, then all-gathers them."""

    def gather(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        folder = job_dir / RANKS
        folder.mkdir(exist_ok=True)
        (folder / f"rank_{current_rank()}.json").write_text(json.dumps(records))
        return all_gather(records)

    return gather


def train_rank(job_dir: Path) -> Any:
    """Train this rank's share of the planned epoch; every rank returns the gathered EpochResult."""
    from space.data.verifiers import get_verifier
    from space.train.grpo import GRPOSettings, train_epoch

    plan = json.loads((job_dir / PLAN).read_text())
    world = World(processes=plan["world_size"], backend=torch_backend(plan["backend"]),
                  gather=write_then_gather(job_dir))
    verifier = plan["verifier"]
    return train_epoch(
        Path(plan["base_model_dir"]), Path(plan["checkpoint_in"]) if plan["checkpoint_in"] else None,
        Path(plan["checkpoint_out"]), plan["rows"], plan["order"],
        get_verifier(verifier["name"], extract=verifier["extract"]), GRPOSettings(**plan["settings"]),
        plan["epoch"], plan["total_epochs"], plan["seed"], progress=print_progress(plan["epoch"]),
        theta_solve=verifier["theta_solve"], world=world,
    )


def print_progress(epoch: int) -> Any:
    """Each rank prints a line per optimiser step (torchrun sends it to the launcher's log)."""

    def progress(done: int, total: int, log: dict) -> None:
        print(f"rank {current_rank()}: epoch {epoch} step {done}/{total}", flush=True)

    return progress


def write_result(job_dir: Path, result: Any) -> None:
    """Rank 0: the gathered rollouts, then result.json (last, so its presence means the result is whole)."""
    out = job_dir / RESULT
    out.mkdir(exist_ok=True)
    result.rollouts.write_parquet(out / "rollouts.parquet")
    body = {"log_history": result.log_history, "metrics": result.metrics, "global_step": result.global_step,
            "extra": result.extra}
    (out / "result.json").write_text(json.dumps(body))


def die_with_launcher() -> bool:
    """SIGKILL this rank when its parent (torchrun) dies: PR_SET_PDEATHSIG on Linux. A parent that died before
    the call (this rank re-parented to init, or the parent changed meanwhile) ends the rank at once. True when
    set."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)  # torchrun is already gone: nothing is left to report to
    return True


def main(argv: list[str] | None = None) -> None:
    """Entry point of one rank: `python -m space.train.dp_worker JOB_DIR` under torchrun."""
    die_with_launcher()
    from torch.distributed.elastic.multiprocessing.errors import record

    @record
    def run() -> None:
        import torch.distributed as dist

        job_dir = Path((argv or sys.argv[1:])[0])
        result = train_rank(job_dir)
        if current_rank() == 0:
            write_result(job_dir, result)
        dist.barrier()  # no rank exits (and tears the group down) before rank 0 has written the result
        dist.destroy_process_group()

    run()


if __name__ == "__main__":
    main()
