"""Skip spent prompts (`train.skip`): leave a prompt out of its arm's draws once its groups carried no signal.

A GRPO group whose rollouts all got the same reward (all solved or all failed) has advantage 0 everywhere and
trains nothing, and a prompt that gave such a group is likely to give another at its next use (on the builtin
benches about 0.6-0.8 against 0.2-0.3 after a group with signal: infra/no_signal_persistence.py). With
`train.skip.after` r > 0 the prompt picker leaves out a prompt after r no-signal groups in a row, for `cooldown`
epochs (None: for the rest of the run), and its arm's slots go to the arm's other prompts: the same slots, more of
them informative. This is the idea of GRESO (skip prompts predicted to give zero-variance groups) and Polaris (drop
mastered items as training goes) on space's own feedback, the training rollouts; it costs no extra rollout. An arm
whose every prompt is skipped draws from all of them again rather than going empty (reported as
`skip/fallback_arms`).

    picker = SkippingPicker(members, SkipConfig(after=1), seed=0)
    rows = picker.fill(arms)                         # as ClusterPromptPicker, without the skipped rows
    metrics = picker.end_epoch(epoch, outcomes)      # GroupOutcome per judged group (space/train/active_pool.py)

The whole state is JSON-ready (`state_dict`); draws are `ClusterPromptPicker`'s seeded queues with the same seed
stream, so until the first skip a run draws exactly what the same run without `train.skip` draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from space.train.active_pool import GroupOutcome
from space.train.sampler import ClusterPromptPicker


class SkipConfig(BaseModel):
    """When the prompt picker leaves a spent prompt out (train.skip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: int = Field(0, ge=0, description="r: leave a prompt out after this many no-signal groups in a row "
                       "(all rollouts rewarded alike); 0: never (off)")
    cooldown: int | None = Field(None, ge=1, description="epochs a skipped prompt stays out (None: the rest of "
                                 "the run)")


class SkippingPicker(ClusterPromptPicker):
    """Per-arm seeded queues over the members not currently skipped (module docstring)."""

    def __init__(self, members: Sequence[Sequence[int]], cfg: SkipConfig, seed: int) -> None:
        super().__init__(members, seed)
        if cfg.after < 1:
            raise ValueError(f"skip.after = {cfg.after}: a skipping picker needs after >= 1")
        self.cfg = cfg
        self.streak: dict[int, int] = {}  # row -> no-signal groups in a row
        self.skipped: dict[int, int] = {}  # row -> epoch it was left out
        self.trained: set[int] = set()
        self.fallbacks = 0  # queue refills this epoch that found every member of their arm skipped

    def candidates(self, arm: int) -> list[int]:
        """The arm's members not skipped; all of them when every one is."""
        rows = [r for r in self.members[arm] if r not in self.skipped]
        if not rows:
            self.fallbacks += 1
        return rows or self.members[arm]

    def end_epoch(self, epoch: int, outcomes: Sequence[GroupOutcome]) -> dict[str, float]:
        """Update streaks, skip spent prompts, let back those past their cooldown; return `skip/...` metrics."""
        newly = 0
        for o in outcomes:
            self.trained.add(o.row)
            self.streak[o.row] = self.streak.get(o.row, 0) + 1 if o.no_signal else 0
            if self.streak[o.row] >= self.cfg.after and o.row not in self.skipped:
                self.skipped[o.row], self.streak[o.row] = epoch, 0
                newly += 1
        back = [r for r, e in self.skipped.items() if self.cfg.cooldown is not None and epoch - e >= self.cfg.cooldown]
        for row in back:
            del self.skipped[row]
        self.queues = [[r for r in q if r not in self.skipped] for q in self.queues]
        pool_size = sum(len(m) for m in self.members)
        metrics = {"skip/skipped": float(newly), "skip/returned": float(len(back)),
                   "skip/out": float(len(self.skipped)), "skip/fallback_arms": float(self.fallbacks),
                   "pool/unique_trained": float(len(self.trained)), "pool/share_trained": len(self.trained) / pool_size}
        self.fallbacks = 0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kind": "skip", "streak": [[r, s] for r, s in sorted(self.streak.items())],
                "skipped": [[r, e] for r, e in sorted(self.skipped.items())], "trained": sorted(self.trained)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("kind") != "skip":
            raise ValueError(f"picker state[kind] = {d.get('kind')!r} does not match this skipping picker's 'skip'")
        super().load_state_dict(d)
        self.streak = {int(r): int(s) for r, s in d["streak"]}
        self.skipped = {int(r): int(e) for r, e in d["skipped"]}
        self.trained = {int(r) for r in d["trained"]}
