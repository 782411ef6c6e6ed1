"""Data-parallel GRPO epochs: the recipe's `train.distributed` section and what a rank needs to know.

The flow stays the one orchestrator. With `train.distributed.processes > 1`, `run_epoch` plans the epoch
(bandit + picker, once, in the flow's process), then `space/train/launch.py` runs the GRPO part as a
`torchrun` job of `space/train/dp_worker.py` and reads back the gathered rollouts; the bandit update
happens afterwards, once, in the flow's process (docs/distributed.md).

Inside a rank, `World` is what `space.train.grpo.train_epoch` asks about its place in the job:

    world = World(processes=2, backend="gloo", gather=write_then_gather)
    result = grpo.train_epoch(..., world=world)     # rank 0 writes the checkpoint, every rank gets all records

Slot layout: the global step's B prompts are split into N contiguous runs of B/N prompts, rank r training
run r (`rank_slots`); accelerate deals the data loader's per-rank batches round robin and each batch is
B/N prompts x G completions, so a prompt's G completions stay on one rank. Imports neither torch nor trl
at module level.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DistributedConfig(BaseModel):
    """How an epoch's GRPO part runs: in the flow's process (processes 1) or as a torchrun job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    processes: int = Field(1, ge=1, description="training processes per node (one per GPU); 1: no launcher")
    launcher: Literal["torchrun"] = Field(
        "torchrun", description="how ranks start: `python -m torch.distributed.run` (docs/distributed.md says why)"
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend; auto: accelerate's choice (nccl on GPU, gloo on CPU)"
    )
    nnodes: int = Field(1, ge=1, description="nodes in the job; above 1 the other nodes start the same command")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the c10d rendezvous when nnodes > 1 (the flow's node); None on one node"
    )
    job_dir: str | None = Field(
        None, description="folder for each epoch's launch files (plan in, results out); must be shared by every "
        "node when nnodes > 1; None: a temporary folder on the flow's node"
    )
    threads_per_process: int | None = Field(
        None, ge=1, description="OMP_NUM_THREADS of each rank; None: torchrun's default (1 when processes > 1)"
    )

    @model_validator(mode="after")
    def _check_nodes(self) -> DistributedConfig:
        if self.nnodes > 1 and (self.rdzv_endpoint is None or self.job_dir is None):
            raise ValueError("train.distributed.nnodes > 1 needs rdzv_endpoint (host:port) and a shared job_dir")
        return self


def check_layout(prompts_per_step: int, num_generations: int, accumulation: int, processes: int) -> None:
    """Each rank must get whole prompts (all G completions of a prompt on one rank) and whole micro-batches."""
    if prompts_per_step % processes:
        raise ValueError(f"train.grpo.prompts_per_step={prompts_per_step} is not divisible by "
                         f"train.distributed.processes={processes}: each rank trains B/N whole prompts per step")
    per_rank = prompts_per_step // processes * num_generations
    if per_rank % accumulation:
        raise ValueError(f"each rank's {per_rank} completions per step are not divisible by "
                         f"gradient_accumulation_steps={accumulation}")


def rank_slots(num_slots: int, prompts_per_step: int, processes: int, rank: int) -> list[int]:
    """The epoch slots rank `rank` trains: in every step's B slots, the rank-th run of B/N."""
    share = prompts_per_step // processes
    return [slot for slot in range(num_slots) if (slot % prompts_per_step) // share == rank]


def torch_backend(backend: str) -> str | None:
    """The `ddp_backend` handed to TRL's config: None lets accelerate choose."""
    return None if backend == "auto" else backend


def single_gather(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One process: its records are all the records."""
    return [records]


def all_gather(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Every rank's records, in rank order, on every rank (`torch.distributed.all_gather_object`)."""
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, records)
    return parts


def current_rank() -> int:
    """This process's global rank (0 outside a launched job)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_rollouts(world: World, records: list[dict[str, Any]], epoch: int, num_slots: int, settings: Any,
                    theta: float) -> tuple[Any, list[list[int]]]:
    """Every rank's records (in one process: its own) as the epoch's rollout table, and the slots each rank
    trained, in rank order."""
    from space.train.rollouts import build_rollouts

    per_rank = world.gather(records)
    rollouts = build_rollouts([r for part in per_rank for r in part], epoch, num_slots, settings.num_generations, theta)
    return rollouts, [sorted({int(r["group"]) for r in part}) for part in per_rank]


@dataclass(frozen=True)
class World:
    """A rank's view of the job: how many processes train, the backend, and how records are gathered."""

    processes: int = 1
    backend: str | None = None
    gather: Callable[[list[dict[str, Any]]], list[list[dict[str, Any]]]] = field(default=single_gather)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the checkpoint and the results (asked after torch.distributed is initialised)."""
        return self.processes == 1 or current_rank() == 0

    def device(self, use_cpu: bool) -> str:
        """Where this rank's model lives: cpu, else the rank's own GPU (torchrun's LOCAL_RANK)."""
        return "cpu" if use_cpu else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


SINGLE = World()
