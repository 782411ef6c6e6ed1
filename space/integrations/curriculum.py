"""The curriculum as a trainer-neutral object: SPaCe's bandit and prompt picker over another trainer's dataset.

The TRL plug-in (space/integrations/trl.py) and the verl sampler (space/integrations/verl.py) both drive this
class; it plans with the same functions as `space train` (`make_policy`, `ClusterPromptPicker`,
`space.train.epoch.plan_epoch`), so for the same curation, seed and rewards the plans are equal:

    curriculum = Curriculum(read_curation("export/"), row_ids=dataset["prompt_id"], bandit={"policy": "ts_lp"})
    rows = curriculum.plan(slots=16)                  # dataset row per slot of period 0
    curriculum.record_group("p17", [1.0, 0.0, 0.0, 1.0])   # one GRPO group's rewards, any order within a period
    rows = curriculum.plan(slots=16)                  # applies period 0's groups, then plans period 1

A period is what one `plan` call covers: an epoch by default, or N optimiser steps in the TRL plug-in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import polars as pl

from space.curate.export import ExportError, read_curation
from space.train.bandit import BanditConfig, GroupResult, make_policy
from space.train.config import INFORMATIVE_MIN_SIGNAL
from space.train.epoch import (allocation_metrics, arm_members, arm_priors, informative_rows, plan_epoch,
                               rollouts_per_prompt)
from space.train.sampler import ClusterPromptPicker


class Curriculum:
    """Bandit + picker over the rows of a trainer's dataset, matched to an exported curation by prompt id.

    `row_ids[i]` is the prompt id of dataset row i; every id must be in the curation. With `pool="reduced"` only
    rows of selected prompts are ever planned; with "full" every row, each in its cluster's arm; with "informative"
    (the builtin default) the rows that can teach, as `train.pool` does (`space.train.epoch.informative_rows`;
    `min_signal` is `train.informative_min_signal`, for prompts whose difficulty was predicted). `train.pool: refill` and `train.skip` need per-prompt feedback the
    plug-ins do not keep.
    A rollout is solved when its reward is at least `theta_solve` (the recipe's verifier threshold)."""

    def __init__(self, curation: Any, row_ids: Sequence[Any], bandit: BanditConfig | dict | None = None, *,
                 seed: int = 0, pool: str = "reduced", theta_solve: float = 1.0,
                 min_signal: float = INFORMATIVE_MIN_SIGNAL) -> None:
        if pool not in ("reduced", "full", "informative"):
            raise ValueError(f"pool={pool!r}: choose 'reduced' (the selected prompts), 'full' or 'informative'")
        self.cfg = bandit if isinstance(bandit, BanditConfig) else BanditConfig(**(bandit or {}))
        self.seed, self.theta_solve = int(seed), float(theta_solve)
        self.table, self.rows = member_table(read_curation(curation), [str(i) for i in row_ids], pool, min_signal)
        self.cluster_of = dict(zip(self.table["prompt_id"].to_list(), self.table["cluster"].to_list()))
        members = arm_members(self.table)
        self.policy = make_policy(self.cfg, [len(m) for m in members], self.seed, arm_priors(reference_arms(self.table)))
        self.picker = ClusterPromptPicker(members, self.seed)
        self.period = -1  # index of the period planned last (-1: none yet)
        self.planned_ids: list[str] = []
        self.outstanding: Counter[str] = Counter()
        self.pending: list[GroupResult] = []
        self.skipped = 0
        self.metrics: dict[str, float] = {}

    @property
    def num_arms(self) -> int:
        return self.policy.k

    def plan(self, slots: int) -> list[int]:
        """Apply the groups recorded since the last plan (if any arrived), then plan the next period's `slots`:
        returns the dataset row index of each slot."""
        if self.period >= 0:
            self.update()
        self.period += 1
        probabilities, arms, order = plan_epoch(self.policy, self.picker, self.period, slots)
        self.planned_ids = [self.table["prompt_id"][i] for i in order]
        self.outstanding = Counter(self.planned_ids)
        self.metrics.update({**allocation_metrics(arms, probabilities, self.num_arms),
                             "bandit/period": float(self.period)})
        self.last_plan = {"period": self.period, "p": [float(p) for p in probabilities],
                          "arms": [int(a) for a in arms], "prompt_ids": list(self.planned_ids)}
        return [self.rows[i] for i in order]

    def record_group(self, prompt_id: Any, rewards: Sequence[float | None]) -> None:
        """One GRPO group of the current period: its prompt id and its rollouts' rewards (None = not judged).

        Raises naming the id when it is not in the curation or not (or no longer) in this period's plan.
        As in the flow (`space.train.epoch.group_results`), a group with fewer than 2 judged rollouts is skipped."""
        pid = str(prompt_id)
        if pid not in self.cluster_of:
            raise ExportError(f"rewards for prompt_id {pid!r}, which is not in the curation's training rows")
        if self.outstanding[pid] <= 0:
            raise ValueError(f"rewards for prompt_id {pid!r}, which period {self.period}'s plan does not contain "
                             f"(or already got all its groups): the rewards do not match the planned prompts")
        self.outstanding[pid] -= 1
        judged = [float(r) for r in rewards if r is not None]
        if len(judged) < 2:
            self.skipped += 1
            return
        self.pending.append(GroupResult(int(self.cluster_of[pid]), tuple(judged),
                                        tuple(r >= self.theta_solve for r in judged)))

    def update(self) -> None:
        """Feed the recorded groups to the bandit (nothing arrived: no update). Raises when groups arrived but
        none could be judged, as `run_epoch` does."""
        if not self.pending and not self.skipped:
            return
        if not self.pending:
            raise RuntimeError(f"period {self.period}: the reward function judged no group ({self.skipped} groups "
                               "had fewer than 2 judged rollouts)")
        self.metrics.update({**self.policy.update(self.pending), "bandit/skipped_groups": float(self.skipped)})
        self.pending, self.skipped = [], 0

    def pop_metrics(self) -> dict[str, float]:
        """Metrics since the last call (allocation shares and probabilities, the bandit's per-arm feedback)."""
        out, self.metrics = self.metrics, {}
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state to resume at a period boundary (after `update`)."""
        return {"period": self.period, "bandit": self.policy.state_dict(), "picker": self.picker.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["bandit"])
        self.picker.load_state_dict(state["picker"])
        self.period = int(state["period"])
        self.pending, self.skipped, self.outstanding = [], 0, Counter()


def member_table(curation: pl.DataFrame, row_ids: list[str], pool: str, min_signal: float
                 ) -> tuple[pl.DataFrame, list[int]]:
    """The planned rows as the flow orders them (by cluster, then prompt id), and each one's dataset row index.

    Raises naming the first dataset id missing from the curation, a repeated id, or a cluster left without rows."""
    known = set(curation["prompt_id"].to_list())
    for i, pid in enumerate(row_ids):
        if pid not in known:
            raise ExportError(f"dataset row {i} has prompt_id {pid!r}, which is not in the curation")
    position: dict[str, int] = {}
    for i, pid in enumerate(row_ids):
        if pid in position:
            raise ExportError(f"prompt_id {pid!r} is on dataset rows {position[pid]} and {i}: ids must be unique")
        position[pid] = i
    table = curation.filter(pl.col("prompt_id").is_in(row_ids))
    if pool == "reduced":
        table = table.filter(pl.col("selected"))
    if "solve_rate" not in table.columns:
        table = table.with_columns(pl.lit(None, dtype=pl.Float64).alias("solve_rate"))
    if pool == "informative":  # k from the whole curation: the dataset may hold no measured prompt
        table = informative_rows(table, min_signal, k=rollouts_per_prompt(curation))
    table = table.sort("cluster", "prompt_id")
    if table.height == 0:
        raise ExportError(f"no dataset row is a {'selected ' if pool == 'reduced' else ''}prompt of the curation")
    present = set(table["cluster"].to_list())
    empty = [k for k in range(int(table["cluster"].max()) + 1) if k not in present]
    if empty:
        raise ExportError(f"cluster {empty[0]} has no row in the training dataset (pool={pool!r}): every arm needs "
                          "at least one prompt")
    return table, [position[pid] for pid in table["prompt_id"].to_list()]


def reference_arms(table: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per arm with `ref_solve_rate`, computed as `space.train.epoch.training_table` does."""
    return table.group_by("cluster", maintain_order=True).agg(
        pl.len().alias("size"), pl.col("solve_rate").mean().alias("ref_solve_rate")).to_dicts()


def split_groups(prompt_ids: Sequence[Any], rewards: Sequence[float | None], group_size: int
                 ) -> list[tuple[str, list[float | None]]]:
    """Cut a batch laid out as consecutive groups of `group_size` rollouts (TRL's layout) into (id, rewards)."""
    if len(prompt_ids) != len(rewards) or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards for {len(prompt_ids)} prompt ids: expected whole groups of "
                         f"{group_size}")
    groups = []
    for start in range(0, len(rewards), group_size):
        ids = {str(p) for p in prompt_ids[start:start + group_size]}
        if len(ids) != 1:
            raise ValueError(f"rollouts {start}..{start + group_size - 1} mix prompt ids {sorted(ids)}: "
                             f"not one group of {group_size}")
        groups.append((ids.pop(), list(rewards[start:start + group_size])))
    return groups
