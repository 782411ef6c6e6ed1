"""Bandit feedback from an epoch's own GRPO groups: per-arm solve rates, zero-signal shares, mean |advantage|."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ADV_EPS = 1e-4  # TRL GRPOTrainer: advantages / (std_rewards + 1e-4)


@dataclass(frozen=True)
class GroupResult:
    """One prompt's GRPO group: its arm, the G verifier scores and whether each rollout solved it."""

    arm: int
    rewards: tuple[float, ...]
    solved: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.rewards) != len(self.solved):
            raise ValueError(f"GroupResult(arm={self.arm}): {len(self.rewards)} rewards but {len(self.solved)} solved")
        if len(self.rewards) < 2:
            raise ValueError(f"GroupResult(arm={self.arm}): a group needs >= 2 rollouts, got {len(self.rewards)}")
        if not all(math.isfinite(r) for r in self.rewards):
            raise ValueError(f"GroupResult(arm={self.arm}): non-finite reward in {self.rewards}")


def group_advantages(rewards: Sequence[float]) -> np.ndarray:
    """GRPO advantages of one group, scaled as TRL's GRPOTrainer does (scale_rewards="group").

    TRL divides by `nanstd`, which applies Bessel's correction (unbiased sample std, like torch.std),
    so we use ddof=1 here, plus the same eps of 1e-4.
    """
    r = np.asarray(rewards, dtype=float)
    return (r - r.mean()) / (r.std(ddof=1) + ADV_EPS)


@dataclass(frozen=True)
class EpochStats:
    """Per-arm feedback of one epoch (arrays of length K; NaN rates for arms not pulled)."""

    n: np.ndarray  # prompts (groups) per arm
    o: np.ndarray  # rollouts per arm
    y: np.ndarray  # solved rollouts per arm
    s_hat: np.ndarray  # y / o
    z: np.ndarray  # share of the arm's groups whose rewards are all equal
    a_hat: np.ndarray  # mean |A| over the arm's rollouts
    group_arm: np.ndarray  # per group: arm id
    group_solve: np.ndarray  # per group: solved share
    group_abs_adv: np.ndarray  # per group: mean |A|


def summarise_epoch(groups: Sequence[GroupResult], num_arms: int) -> EpochStats:
    """Count n_k, o_k, y_k and compute s_hat_k, z_k, a_hat_k from the epoch's groups."""
    if not groups:
        raise ValueError("update needs at least one GroupResult")
    for j, g in enumerate(groups):
        if not 0 <= g.arm < num_arms:
            raise ValueError(f"groups[{j}].arm = {g.arm} is outside 0..{num_arms - 1}")
    arm = np.array([g.arm for g in groups], dtype=np.int64)
    size = np.array([len(g.rewards) for g in groups], dtype=float)
    solved = np.array([sum(bool(s) for s in g.solved) for g in groups], dtype=float)
    stds = np.array([np.std(g.rewards, ddof=1) for g in groups])
    abs_adv_sum = np.array([np.abs(group_advantages(g.rewards)).sum() for g in groups])
    zero = np.isclose(stds, 0.0).astype(float)  # TRL's frac_reward_zero_std uses torch.isclose(std, 0)
    n = np.bincount(arm, minlength=num_arms).astype(float)
    o = np.bincount(arm, weights=size, minlength=num_arms)
    y = np.bincount(arm, weights=solved, minlength=num_arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_hat = y / o
        z = np.bincount(arm, weights=zero, minlength=num_arms) / n
        a_hat = np.bincount(arm, weights=abs_adv_sum, minlength=num_arms) / o
    return EpochStats(n, o, y, s_hat, z, a_hat, arm, solved / size, abs_adv_sum / size)
