"""Tests for space/train/distributed.py and launch.py's pure parts: the recipe section, the slot layout, the
launcher command and the failure message (the launched epochs themselves: test_launch.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from space.config import load_recipe
from space.train.distributed import DistributedConfig, check_layout, rank_slots
from space.train.launch import failure_message, launch_command
from space.train.sampler import EpochSampler


def test_the_default_recipe_trains_in_one_process():
    assert load_recipe("builtin").train.distributed.processes == 1


def test_several_nodes_need_a_rendezvous_and_a_shared_job_dir():
    with pytest.raises(ValidationError, match="rdzv_endpoint"):
        DistributedConfig(processes=8, nnodes=2)
    assert DistributedConfig(processes=8, nnodes=2, rdzv_endpoint="node0:29500", job_dir="/shared").nnodes == 2


def test_a_step_must_split_into_whole_prompts_per_rank():
    check_layout(prompts_per_step=4, num_generations=4, accumulation=2, processes=2)
    with pytest.raises(ValueError, match="prompts_per_step=3 is not divisible by train.distributed.processes=2"):
        check_layout(prompts_per_step=3, num_generations=4, accumulation=1, processes=2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=3"):
        check_layout(prompts_per_step=2, num_generations=4, accumulation=3, processes=2)


def test_rank_slots_on_known_values():
    assert rank_slots(8, 4, 2, 0) == [0, 1, 4, 5] and rank_slots(8, 4, 2, 1) == [2, 3, 6, 7]
    assert rank_slots(6, 2, 1, 0) == list(range(6))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_accelerates_shards_of_the_epoch_sampler_are_rank_slots(accumulation):
    """What each rank's data loader yields: accelerate deals the sampler's batches of B/N prompts x G
    completions round robin (BatchSamplerShard, as `Accelerator.prepare` does for TRL's loader)."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    slots, prompts_per_step, generations, processes = 8, 4, 4, 2
    sampler = EpochSampler(list(range(slots)), generations, prompts_per_step * generations,
                           steps_per_generation=accumulation)
    batch = prompts_per_step // processes * generations  # the loader's per-rank batch (per device x steps/gen)
    for rank in range(processes):
        shard = BatchSamplerShard(BatchSampler(sampler, batch, drop_last=False), num_processes=processes,
                                  process_index=rank)
        seen = [i for b in shard for i in b]
        assert sorted(set(seen)) == rank_slots(slots, prompts_per_step, processes, rank)
        assert all(seen.count(i) == generations * accumulation for i in set(seen))


def test_launch_command_on_one_node_and_on_several():
    one = launch_command(DistributedConfig(processes=2), Path("/jobs/a"))
    assert one == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
                   "-m", "space.train.dp_worker", "/jobs/a"]
    two = launch_command(DistributedConfig(processes=8, nnodes=2, rdzv_endpoint="node0:29500", job_dir="/s"),
                         Path("/s/a"))
    assert "--nnodes=2" in two and "--rdzv-endpoint=node0:29500" in two and "--rdzv-backend=c10d" in two
    assert any(arg.startswith("--rdzv-id=space-") for arg in two) and "--standalone" not in two


def test_failure_message_without_a_torchrun_summary_shows_the_logs_tail():
    message = failure_message("line 1\nTraceback: boom", 2, 3, Path("/jobs/a/launcher.log"))
    assert message.startswith("epoch 3: the torchrun job exited with code 2; log /jobs/a/launcher.log")
    assert message.endswith("Traceback: boom")


def _torchrun_summary(failures: dict[int, int]) -> str:
    """torchrun's own failure summary (torch's ChildFailedError) for ranks -> exit codes, all in one second."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    recorded = {rank: ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=code, error_file="<N/A>")
                for rank, code in failures.items()}
    for failure in recorded.values():
        failure.timestamp = 1_765_000_000  # whole seconds, as torch records a failure without an error file
    return ChildFailedError("space.train.dp_worker", recorded).format_msg()


def test_failure_message_names_the_killed_rank_not_the_one_torchrun_stopped_in_the_same_second():
    summary = _torchrun_summary({0: -15, 1: -9})  # rank 1 SIGKILLed, rank 0 then stopped by torchrun
    assert "Root Cause" in summary and "rank      : 0 (local_rank: 0)\n  exitcode  : -15" in summary.split("Root")[1]
    message = failure_message(summary, 1, 1, Path("/jobs/a/launcher.log"))
    assert message == ("epoch 1: rank 1 (local rank 1) was killed by signal 9; torchrun stopped the others; "
                       "log /jobs/a/launcher.log")


def test_failure_message_keeps_torchruns_root_cause_when_every_rank_got_sigterm_or_one_raised():
    assert "rank 1 (local rank 1) was killed by signal 15" in failure_message(
        _torchrun_summary({1: -15}), 1, 0, Path("log"))
    message = failure_message(_torchrun_summary({0: 1, 1: -15}), 1, 0, Path("log"))
    assert "rank 0 (local rank 0) exited with code 1" in message
