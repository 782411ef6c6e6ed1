"""Tests for space/train/sampler.py: prompt picking inside clusters and TRL RepeatSampler's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from space.train.bandit import BanditConfig, make_policy
from space.train.sampler import ClusterPromptPicker, EpochSampler

MEMBERS = [[10, 11, 12], [20], [30, 31, 32, 33, 34]]


def test_picker_draws_without_replacement_and_reshuffles_when_used_up() -> None:
    picker = ClusterPromptPicker(MEMBERS, seed=0)
    first, second = picker.fill([2] * 5), picker.fill([2] * 5)
    assert sorted(first) == MEMBERS[2] and sorted(second) == MEMBERS[2]
    assert first != second  # a fresh shuffle per cycle (fixed seed: checked to differ)
    rows = picker.fill([0, 1, 0, 1, 0, 1])
    assert sorted(rows[0::2]) == MEMBERS[0] and rows[1::2] == [20, 20, 20]


def test_picker_is_seeded_and_resumes_exactly() -> None:
    arms = [0, 2, 2, 1, 0, 2, 0, 0, 2, 2, 2, 1, 0]
    a, b = ClusterPromptPicker(MEMBERS, seed=3), ClusterPromptPicker(MEMBERS, seed=3)
    assert a.fill(arms) == b.fill(arms)
    assert ClusterPromptPicker(MEMBERS, seed=4).fill(arms * 3) != ClusterPromptPicker(MEMBERS, seed=3).fill(arms * 3)
    restored = ClusterPromptPicker(MEMBERS, seed=3)
    restored.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert restored.fill(arms * 2) == a.fill(arms * 2)
    with pytest.raises(ValueError, match="'seed'"):
        ClusterPromptPicker(MEMBERS, seed=5).load_state_dict(a.state_dict())


def test_picker_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"members\[1\] is empty"):
        ClusterPromptPicker([[1], []], seed=0)
    with pytest.raises(ValueError, match="arm 3"):
        ClusterPromptPicker(MEMBERS, seed=0).fill([0, 3])


def trl_order(indices: list[int], num_generations: int, generation_batch_size: int, reuse: int) -> list[int]:
    """What TRL 1.16's own RepeatSampler yields for this fixed order (shuffle=False yields positions)."""
    from trl.trainer.utils import RepeatSampler

    sampler = RepeatSampler(indices, mini_repeat_count=num_generations,
                            batch_size=generation_batch_size // num_generations, repeat_count=reuse, shuffle=False)
    positions = list(sampler)
    assert len(positions) == len(sampler)
    return [indices[i] for i in positions]


@pytest.mark.parametrize(
    ("num_generations", "generation_batch_size", "num_iterations", "steps_per_generation", "slots"),
    [(4, 8, 1, 1, 8), (2, 8, 1, 4, 16), (4, 16, 2, 2, 12), (3, 9, 1, 3, 6), (8, 8, 1, 1, 3)],
)
def test_epoch_sampler_layout_equals_trl_repeat_sampler(
    num_generations: int, generation_batch_size: int, num_iterations: int, steps_per_generation: int, slots: int
) -> None:
    rng = np.random.default_rng(slots)
    indices = rng.integers(0, 50, size=slots).tolist()  # repeats allowed, as in a real plan
    sampler = EpochSampler(indices, num_generations, generation_batch_size, num_iterations, steps_per_generation)
    expected = trl_order(indices, num_generations, generation_batch_size, num_iterations * steps_per_generation)
    assert list(sampler) == expected
    assert len(sampler) == len(expected) == slots * num_generations * num_iterations * steps_per_generation


def test_epoch_sampler_from_grpo_config(tmp_path) -> None:
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                      steps_per_generation=3, num_iterations=2, use_cpu=True, bf16=False, report_to="none")
    indices = list(range(100, 112))
    sampler = EpochSampler.from_args(indices, args)
    assert (sampler.per_chunk, sampler.reuse) == (6, 6)  # generation_batch_size = 4 * 1 process * 3
    assert list(sampler) == trl_order(indices, 2, args.generation_batch_size, 6)


def test_epoch_sampler_layout_and_validation() -> None:
    sampler = EpochSampler([9, 8, 7, 6], num_generations=2, generation_batch_size=4)
    assert list(sampler) == [9, 9, 8, 8, 7, 7, 6, 6] and len(sampler) == 8
    with pytest.raises(ValueError, match="multiple of the chunk size 2"):
        EpochSampler([1, 2, 3], num_generations=2, generation_batch_size=4)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        EpochSampler([1, 2], num_generations=3, generation_batch_size=4)


def test_plan_fill_serve_end_to_end() -> None:
    policy = make_policy(BanditConfig(policy="learnability"), [len(m) for m in MEMBERS], seed=0)
    _, arms = policy.allocate(0, 8)
    rows = ClusterPromptPicker(MEMBERS, seed=0).fill(arms)
    arm_of = {row: k for k, m in enumerate(MEMBERS) for row in m}
    assert [arm_of[r] for r in rows] == arms.tolist()
    served = Counter(EpochSampler(rows, num_generations=4, generation_batch_size=8))
    assert served == Counter({r: 4 * n for r, n in Counter(rows).items()})


def test_sampler_module_does_not_import_trl() -> None:
    code = "import sys, space.train.sampler; assert 'trl' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
