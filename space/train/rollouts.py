"""Rollout records of a GRPO epoch: the reward wrapper that keeps every rollout, the epoch table, its aggregates."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from space.data.lengths import ids_truncated

RewardFn = Callable[..., list]  # the user's reward function: one float or None per completion


class RolloutRecorder:
    """Wraps the user's reward function for TRL and keeps each rollout's reward, once per slot.

    The epoch dataset has one row per slot with a `slot` column, which TRL passes back to the reward
    function next to each completion, so a completion maps to its slot even when a prompt fills
    several slots. TRL calls the reward once per generation batch (never again for reused batches when
    num_iterations or steps_per_generation > 1); a slot seen twice is an error, not a silent overwrite.
    A completion whose ids do not end in an EOS id ran to max_completion_length: it is recorded as truncated
    and the reward function gets `truncated=` so it never scores it solved by a fallback extraction.
    """

    def __init__(self, reward_fn: RewardFn, num_generations: int, step_offset: int, eos_ids: Sequence[int]):
        self.reward_fn, self.num_generations, self.step_offset = reward_fn, num_generations, step_offset
        if not eos_ids:
            raise ValueError("RolloutRecorder needs the policy's EOS ids to tell truncated completions")
        self.eos_ids = list(eos_ids)
        self.records: list[dict[str, Any]] = []
        self.seen: dict[int, int] = {}
        self.__name__ = getattr(reward_fn, "__name__", "reward")

    def __call__(self, prompts, completions, completion_ids=None, *, slot, prompt_id, cluster, answer, metadata,
                 trainer_state=None, **_: Any) -> list[float | None]:
        if completion_ids is None or len(completion_ids) != len(completions):
            raise ValueError("the trainer passed no completion_ids aligned with the completions")
        cut = [ids_truncated(ids, self.eos_ids) for ids in completion_ids]
        rewards = list(self.reward_fn(list(completions), answer=list(answer), metadata=list(metadata), truncated=cut))
        check_rewards(rewards, len(completions), self.__name__)
        rewards = [None if r is None else float(r) for r in rewards]
        step = self.step_offset + (trainer_state.global_step if trainer_state is not None else 0) + 1
        for i, completion in enumerate(completions):
            sample = self.seen.get(slot[i], 0)
            if sample >= self.num_generations:
                raise RuntimeError(f"slot {slot[i]} got more than {self.num_generations} completions in one epoch")
            self.seen[slot[i]] = sample + 1
            self.records.append(
                {"step": step, "group": int(slot[i]), "sample": sample, "prompt_id": str(prompt_id[i]),
                 "cluster": int(cluster[i]), "completion": completion,
                 "reward": rewards[i], "truncated": cut[i]}
            )
        return rewards


def check_rewards(rewards: list, expected: int, name: str) -> None:
    """The reward function must return one float or None per completion; NaN is refused (use None)."""
    if len(rewards) != expected:
        raise ValueError(f"reward function {name!r} returned {len(rewards)} rewards for {expected} completions")
    for i, value in enumerate(rewards):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise TypeError(f"reward function {name!r} returned {value!r} for completion {i}; expected float or None")


def summarise(rollouts: Any, log_history: list[dict], seconds: float, steps: int, global_step: int) -> dict[str, float]:
    """Epoch aggregates: reward mean over judged rollouts, None count, solve rate, TRL's zero-std share, and the
    share of truncated rollouts overall (`truncated/all`) and per arm (`truncated/arm_03`)."""
    import polars as pl

    judged = rollouts.filter(pl.col("reward").is_not_null())
    zero_std = [e["frac_reward_zero_std"] for e in log_history if "frac_reward_zero_std" in e]
    nan = float("nan")
    return {
        "reward/mean": float(judged["reward"].mean()) if judged.height else nan,
        "reward/none_count": float(rollouts.height - judged.height),
        "reward/none_frac": float((rollouts.height - judged.height) / max(1, rollouts.height)),
        "solve_rate": float(judged["solved"].cast(pl.Float64).mean()) if judged.height else nan,
        "frac_reward_zero_std": float(sum(zero_std) / len(zero_std)) if zero_std else nan,
        "rollouts": float(rollouts.height),
        "steps": float(steps),
        "global_step": float(global_step),
        "seconds": float(seconds),
        "truncated/all": float(rollouts["truncated"].cast(pl.Float64).mean()) if rollouts.height else nan,
        **{f"truncated/arm_{int(arm):02d}": float(share) for arm, share in
           rollouts.group_by("cluster").agg(pl.col("truncated").cast(pl.Float64).mean()).sort("cluster").iter_rows()},
    }


def build_rollouts(records: list[dict], epoch: int, num_slots: int, num_generations: int, theta: float) -> Any:
    """The rollout table, sorted by (group, sample); checks each slot has exactly G completions."""
    import polars as pl

    counts: dict[int, int] = {}
    for record in records:
        counts[record["group"]] = counts.get(record["group"], 0) + 1
    missing = [slot for slot in range(num_slots) if counts.get(slot) != num_generations]
    if missing:
        raise RuntimeError(
            f"epoch {epoch}: slots {missing[:10]} did not get exactly {num_generations} recorded completions"
        )
    schema = {"step": pl.Int64, "group": pl.Int64, "sample": pl.Int64, "prompt_id": pl.String,
              "cluster": pl.Int64, "completion": pl.String, "reward": pl.Float64, "truncated": pl.Boolean}
    frame = pl.DataFrame(records, schema=schema, orient="row").sort("group", "sample")
    return frame.with_columns(
        pl.lit(epoch, dtype=pl.Int64).alias("epoch"),
        (pl.col("reward") >= theta).alias("solved"),
    ).select("epoch", "step", "group", "sample", "prompt_id", "cluster", "completion", "reward", "solved",
             "truncated")
