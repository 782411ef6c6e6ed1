"""Data-parallel epochs for real: `run_epoch` with train.distributed.processes=2 launches torchrun with two CPU
ranks (gloo) on a tiny random Llama (space/train/launch.py, dp_worker.py).

Checked: the gathered rollouts are the union of the two ranks' own records (each rank trained its documented,
disjoint slots, whole groups); the bandit state after the epoch equals a single-process update on those
records, bit for bit, and differs from an update on one rank's share; rank 0 alone wrote one checkpoint per
epoch and epoch 2 resumed from epoch 1's; a rank killed with SIGKILL fails the epoch with an error naming it,
leaves no checkpoint, and a re-run of the epoch from the last checkpoint completes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from conftest_models import make_tiny_model_dir
from space.config import TrainConfig, VerifierConfig
from space.train.bandit import BanditConfig, make_policy
from space.train.checkpoint import is_complete, load_checkpoint
from space.train.distributed import DistributedConfig, rank_slots
from space.train.epoch import arm_members, arm_priors, group_results, run_epoch
from space.train.grpo import GRPOSettings
from space.train.launch import RankFailedError, epoch_job_dir
from space.train.rollouts import build_rollouts

pytestmark = pytest.mark.slow

ROWS = [("1+1=", "2", 0), ("2+2=", "4", 0), ("3+4=", "7", 1), ("5-1=", "4", 1), ("9-3=", "6", 1)]
ARMS = [{"cluster": 0, "ref_solve_rate": 0.5}, {"cluster": 1, "ref_solve_rate": None}]
EXACT = VerifierConfig(name="exact", extract="none")
SEED = 3


def table() -> pl.DataFrame:
    return pl.DataFrame({"prompt": [f"Q: {q}\nA: " for q, _, _ in ROWS], "prompt_id": [f"p{i}" for i in range(5)],
                         "cluster": [c for _, _, c in ROWS], "answer": [a for _, a, _ in ROWS],
                         "metadata": ["{}"] * 5})


def config(job_dir: Path) -> TrainConfig:
    """4 slots per step (B=4) over 2 ranks: each rank trains 2 prompts x 4 completions per step."""
    return TrainConfig(epochs=2, slots_per_epoch=8, bandit=BanditConfig(policy="ts_lp"),
                       grpo=GRPOSettings(prompts_per_step=4, num_generations=4, max_completion_length=8),
                       distributed=DistributedConfig(processes=2, job_dir=str(job_dir)))


def epoch(root: Path, index: int, state_in: dict | None):
    cfg = config(root / "jobs")
    return run_epoch(table(), ARMS, cfg, EXACT, root / "tiny", seed=SEED, epoch=index,
                     checkpoint_in=root / f"e{index - 1}" if index else None, state_in=state_in,
                     checkpoint_out=root / f"e{index}")


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launched")
    make_tiny_model_dir(root / "tiny")
    first = epoch(root, 0, None)
    second = epoch(root, 1, json.loads(json.dumps(first.state)))
    return root, first, second


def rank_records(root: Path, checkpoint: str) -> list[list[dict]]:
    job, _ = epoch_job_dir(config(root / "jobs").distributed, root / checkpoint)
    return [json.loads((job / "ranks" / f"rank_{r}.json").read_text()) for r in range(2)]


def test_gathered_rollouts_are_the_union_of_the_ranks_own_records(two_epochs):
    root, first, _ = two_epochs
    cfg = config(root / "jobs")
    parts = rank_records(root, "e0")
    union = build_rollouts(parts[0] + parts[1], 0, cfg.slots_per_epoch, 4, EXACT.theta_solve)
    assert union.equals(first.rollouts)
    for rank, part in enumerate(parts):
        slots = [r["group"] for r in part]
        assert sorted(set(slots)) == rank_slots(cfg.slots_per_epoch, 4, 2, rank)  # whole groups, disjoint
        assert all(slots.count(s) == 4 for s in set(slots))  # a prompt's G completions on one rank


def single_process_update(state_in: dict | None, index: int, rollouts: pl.DataFrame) -> dict:
    """What the bandit state would be after `rollouts` in one process: the same plan, then one update."""
    cfg = config(Path("unused"))
    policy = make_policy(cfg.bandit, [len(m) for m in arm_members(table())], SEED, arm_priors(ARMS))
    if state_in is not None:
        policy.load_state_dict(state_in["bandit"])
    policy.allocate(index, cfg.slots_per_epoch)
    policy.update(group_results(rollouts)[0])
    return policy.state_dict()


def test_bandit_state_equals_a_single_process_update_on_the_same_records(two_epochs):
    root, first, second = two_epochs
    for state_in, index, outcome in ((None, 0, first), (first.state, 1, second)):
        expected = single_process_update(state_in, index, outcome.rollouts)
        assert json.dumps(outcome.state["bandit"]) == json.dumps(expected)  # bit-identical floats
    own = pl.DataFrame(rank_records(root, "e0")[0]).with_columns(
        (pl.col("reward") >= EXACT.theta_solve).alias("solved"))
    alone = single_process_update(None, 0, own)
    assert json.dumps(alone) != json.dumps(first.state["bandit"])  # one rank's share would teach another state


def test_rank_0_writes_one_checkpoint_per_epoch_and_epoch_2_resumes_from_epoch_1(two_epochs):
    root, first, second = two_epochs
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("e")) == ["e0", "e1"]
    assert is_complete(root / "e0") and is_complete(root / "e1")
    assert load_checkpoint(root / "e0").global_step == 2 and load_checkpoint(root / "e1").global_step == 4
    assert first.metrics["steps"] == 2 and second.metrics["global_step"] == 4  # B=4 global: 8 slots, 2 steps
    assert first.rollouts.height == second.rollouts.height == 8 * 4


def worker_pid(job_dir: Path, rank: int) -> int | None:
    """The pid of the dp_worker process of `rank` launched for `job_dir` (found in /proc), if any."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"space.train.dp_worker" in cmdline and str(job_dir).encode() in cmdline \
                and f"RANK={rank}".encode() in environ:
            return pid
    return None


def kill_rank(job_dir: Path, rank: int, stop: threading.Event) -> list[int]:
    """SIGKILL `rank` once it logged its first optimiser step (mid-epoch: the epoch has two steps)."""
    log = job_dir / "launcher.log"
    while not stop.is_set():
        if log.exists() and f"rank {rank}: epoch 1 step 1/2" in log.read_text(errors="replace"):
            pid = worker_pid(job_dir, rank)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return [pid]
        time.sleep(0.05)
    return []


def test_a_killed_rank_fails_the_epoch_naming_it_and_a_rerun_resumes(two_epochs, tmp_path):
    root, first, second = two_epochs
    cfg = config(tmp_path / "jobs")
    job, _ = epoch_job_dir(cfg.distributed, tmp_path / "e1")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=lambda: killed.extend(kill_rank(job, 1, stop)))
    killer.start()
    try:
        with pytest.raises(RankFailedError, match=r"epoch 1: rank 1 \(local rank 1\) was killed by signal 9"):
            run_epoch(table(), ARMS, cfg, EXACT, root / "tiny", seed=SEED, epoch=1, checkpoint_in=root / "e0",
                      state_in=first.state, checkpoint_out=tmp_path / "e1")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1 and not (tmp_path / "e1").exists()  # nothing half-written where the epoch writes
    again = run_epoch(table(), ARMS, cfg, EXACT, root / "tiny", seed=SEED, epoch=1, checkpoint_in=root / "e0",
                      state_in=first.state, checkpoint_out=tmp_path / "e1")
    assert load_checkpoint(tmp_path / "e1").global_step == 4 and again.order == second.order
