"""A self-paced pool that refills (`train.pool: refill`): l active prompts per cluster, renewed every epoch.

Each cluster (bandit arm) keeps an active set, first the curation's l representatives. The bandit's slots for
an arm are filled from its active set (a seeded shuffled queue: `ActivePool` is a `ClusterPromptPicker` whose
queues draw from the active set). After the epoch, a prompt whose last `retire_after` groups carried no signal (every rollout got the
same reward: all solved or all failed, so GRPO's advantage is 0) is retired and replaced by a member of its
cluster that has not been active yet, the one whose predicted current solve rate is nearest the target:
its reference solve rate (measured or propagated at curation) plus the arm's drift, the mean of (observed -
reference) solve rate over the arm's groups this epoch. Retired prompts may come back after `cooldown` epochs
(to check for forgetting) once a cluster has no unused member left; a prompt is retired only when a
replacement exists, so an arm never runs empty, and an arm that could not replace a spent prompt is reported
as exhausted.

    pool = ActivePool(members, active, ref_solve, RefillConfig(), target=0.5, seed=0)
    rows = pool.fill(arms)                       # dataset row per planned slot
    metrics = pool.end_epoch(epoch, outcomes)    # outcomes: (row, arm, solved share, rewards all equal) per group

The whole state is JSON-ready (`state_dict`), and every draw comes from `derive_rng(seed, "active-pool", ...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from space.train.sampler import ClusterPromptPicker


class RefillConfig(BaseModel):
    """How the active pool retires and refills prompts (train.pool: refill)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retire_after: int = Field(1, ge=1, description="r: retire a prompt after this many no-signal groups in a row")
    cooldown: int | None = Field(
        4, ge=1, description="epochs before a retired prompt may return, once its cluster has no unused member "
        "left (None: never)")
    target_solve_rate: float | None = Field(
        None, gt=0, lt=1, description="refill prefers predicted solve rates near this; None: the bandit's target")


@dataclass(frozen=True)
class GroupOutcome:
    """One trained group: the dataset row it came from, its arm, solved share and whether it had no signal."""

    row: int
    arm: int
    solve_rate: float
    no_signal: bool


class ActivePool(ClusterPromptPicker):
    """Active prompts per arm, retired and refilled between epochs (module docstring)."""

    def __init__(self, members: Sequence[Sequence[int]], active: Sequence[Sequence[int]],
                 ref_solve: Sequence[float], cfg: RefillConfig, target: float, seed: int) -> None:
        super().__init__(members, seed)
        self.active = [[int(i) for i in a] for a in active]
        for k, (m, a) in enumerate(zip(self.members, self.active, strict=True)):
            if not a or not set(a) <= set(m):
                raise ValueError(f"arm {k}: the active set must be a non-empty subset of the arm's members")
        self.ref = np.asarray(ref_solve, dtype=float)
        self.cfg = cfg
        self.target = cfg.target_solve_rate if cfg.target_solve_rate is not None else float(target)
        self.used = {i for a in self.active for i in a}  # rows ever active
        self.trained: set[int] = set()
        self.retired: dict[int, int] = {}  # row -> epoch it was retired
        self.streak: dict[int, int] = {}  # row -> no-signal groups in a row

    # --- planning: `fill` and `take` are ClusterPromptPicker's, drawing from `candidates`

    rng_tag = "active-pool"

    def candidates(self, arm: int) -> list[int]:
        """A refilled queue shuffles the arm's active set."""
        return self.active[arm]

    # --- feedback

    def end_epoch(self, epoch: int, outcomes: Sequence[GroupOutcome]) -> dict[str, float]:
        """Update streaks, retire spent prompts, refill each arm; return `pool/...` metrics."""
        drift = self.arm_drift(outcomes)
        for o in outcomes:
            self.trained.add(o.row)
            self.streak[o.row] = self.streak.get(o.row, 0) + 1 if o.no_signal else 0
        retired = refilled = returned = exhausted = 0
        for arm in range(len(self.members)):
            spent = [r for r in self.active[arm] if self.streak.get(r, 0) >= self.cfg.retire_after]
            arm_short = False
            for row in spent:
                new = self.replacement(arm, epoch, drift[arm])
                if new is None:
                    arm_short = True
                    break
                returned += int(new in self.retired)
                self.swap(arm, row, new, epoch)
                retired, refilled = retired + 1, refilled + 1
            exhausted += int(arm_short)
        self.queues = [[r for r in q if r in set(self.active[k])] for k, q in enumerate(self.queues)]
        pool_size = sum(len(m) for m in self.members)
        return {"pool/active": float(sum(len(a) for a in self.active)), "pool/retired": float(retired),
                "pool/refilled": float(refilled), "pool/returned": float(returned),
                "pool/exhausted_arms": float(exhausted), "pool/unique_trained": float(len(self.trained)),
                "pool/share_trained": len(self.trained) / pool_size, "pool/ever_active": float(len(self.used))}

    def arm_drift(self, outcomes: Sequence[GroupOutcome]) -> np.ndarray:
        """Per arm, the mean of (observed - reference) solve rate over this epoch's groups (0 where none)."""
        k = len(self.members)
        diff = np.zeros(k)
        count = np.zeros(k)
        for o in outcomes:
            if np.isfinite(self.ref[o.row]):
                diff[o.arm] += o.solve_rate - self.ref[o.row]
                count[o.arm] += 1
        return np.divide(diff, count, out=np.zeros(k), where=count > 0)

    def replacement(self, arm: int, epoch: int, drift: float) -> int | None:
        """An unused member nearest the target after drift, else the longest-retired member past its cooldown."""
        active = set(self.active[arm])
        unused = [r for r in self.members[arm] if r not in self.used]
        if unused:
            predicted = np.nan_to_num(self.ref[unused], nan=self.target) + drift
            return unused[int(np.argmin(np.abs(predicted - self.target)))]  # first (lowest row) on ties
        if self.cfg.cooldown is None:
            return None
        ready = [r for r in self.members[arm] if r in self.retired and r not in active
                 and epoch - self.retired[r] >= self.cfg.cooldown]
        return min(ready, key=lambda r: (self.retired[r], r)) if ready else None

    def swap(self, arm: int, old: int, new: int, epoch: int) -> None:
        self.active[arm][self.active[arm].index(old)] = new
        self.retired[old] = epoch
        self.retired.pop(new, None)
        self.streak[new] = 0
        self.used.add(new)

    # --- persistence

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "refill", "seed": self.seed, "members": self.members, "active": self.active,
                "queues": self.queues, "refills": self.refills, "used": sorted(self.used),
                "trained": sorted(self.trained), "retired": [[r, e] for r, e in sorted(self.retired.items())],
                "streak": [[r, s] for r, s in sorted(self.streak.items())]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for key, value in (("kind", "refill"), ("seed", self.seed), ("members", self.members)):
            if d.get(key) != value:
                raise ValueError(f"picker state[{key!r}] does not match this active pool's {key}")
        self.active = [[int(i) for i in a] for a in d["active"]]
        self.queues = [[int(i) for i in q] for q in d["queues"]]
        self.refills = [int(n) for n in d["refills"]]
        self.used, self.trained = {int(i) for i in d["used"]}, {int(i) for i in d["trained"]}
        self.retired = {int(r): int(e) for r, e in d["retired"]}
        self.streak = {int(r): int(s) for r, s in d["streak"]}
