"""One SPaCe training epoch as a plain function: plan with the bandit, train GRPO, feed the rollouts back.

This is the method's inner loop (method.md 3), kept out of Prefect so it can be called and tested directly:

    outcome = run_epoch(table, arms, cfg, verifier, model_dir, seed=0, epoch=t,
                        checkpoint_in=previous_checkpoint, state_in=previous_state, checkpoint_out=out)

`state_in` / `outcome.state` hold the bandit's and the prompt picker's state (JSON-ready dicts), so the
caller persists them between epochs; the checkpoint holds the policy, optimiser and scheduler. Metrics come
back named for logging; the allocation and the per-arm results come back as data (`arms`, `probabilities`,
`arm_rows`: one dict per arm with its id), for reports that must not parse metric names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from space.data.verifiers import VerifierConfig
from space.train.config import INFORMATIVE_MIN_SIGNAL, TrainConfig


@dataclass
class EpochOutcome:
    """What `run_epoch` produced: the plan, the GRPO result, the updated bandit/picker state and metrics."""

    order: list[int]  # row index per slot
    arms: list[int]  # arm (cluster) per slot
    probabilities: list[float]  # the bandit's allocation probabilities this epoch
    rollouts: pl.DataFrame
    log_history: list[dict[str, Any]]
    metrics: dict[str, float]
    state: dict[str, Any]  # {"bandit": ..., "picker": ...}
    arm_rows: list[dict[str, Any]]  # per arm, with its id: see `epoch_arm_rows`
    checkpoint_out: Path


def training_table(curation: pl.DataFrame, tokenizer: Any, system_prompt: str | None, pool: str,
                   enable_thinking: bool | None = None,
                   min_signal: float = INFORMATIVE_MIN_SIGNAL
                   ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The rows `run_epoch` trains on, and one dict per arm (`cluster`, `size`, `ref_solve_rate`).

    `pool` "reduced" keeps the curation's selected prompts, "full" and "refill" every prompt (each in its
    cluster's arm; `selected` marks refill's first active set), "informative" the prompts that can teach
    (`informative_rows`, with `min_signal` for predicted difficulty). Questions are rendered through the model's
    chat template; rows come sorted by (cluster, prompt_id)."""
    from space.data.prompting import render_prompts

    table = {"reduced": curation.filter(pl.col("selected")),
             "informative": informative_rows(curation, min_signal)}.get(pool, curation)
    prompts = render_prompts(tokenizer, table["question"].to_list(), system_prompt, enable_thinking)
    table = table.with_columns(pl.Series("prompt", prompts)).select(
        "prompt_id", "question", "prompt", "answer", "metadata", "source", "level", "cluster", "solve_rate", "selected",
    ).sort("cluster", "prompt_id")
    arms = table.group_by("cluster", maintain_order=True).agg(pl.len().alias("size"),
                                                              pl.col("solve_rate").mean().alias("ref_solve_rate"))
    return table, arms.to_dicts()


def informative_rows(curation: pl.DataFrame, min_signal: float = INFORMATIVE_MIN_SIGNAL, k: int | None = None
                     ) -> pl.DataFrame:
    """The rows whose GRPO groups can carry a signal for the reference model, plus every row of a cluster that has
    none, so no arm goes empty.

    A measured row counts when its reference solve rate lies strictly between 0 and 1. A row without one (its
    difficulty predicted: `curate.difficulty.source: propagate`) counts when a group of k samples at its predicted
    solve rate p = 1 - difficulty would mix successes and failures with probability 1 - p^k - (1 - p)^k of at
    least `min_signal` (k: the measured rows' rollouts per prompt, or `k` when given, e.g. read from a whole curation
    of which `curation` is a part); 0.5 keeps p in about [0.08, 0.92] at k = 8."""
    measured = (pl.col("solve_rate") > 0) & (pl.col("solve_rate") < 1)
    informative = measured.fill_null(predicted_signal(curation, k) >= min_signal).fill_null(False)
    return curation.filter(informative | ~informative.any().over("cluster"))


def predicted_signal(curation: pl.DataFrame, k: int | None = None) -> pl.Expr:
    """Per row, the probability that k reference samples at the predicted solve rate 1 - difficulty mix successes
    and failures; null without a difficulty, or when no `k` is given and no measured row has one to take."""
    if k is None:
        k = rollouts_per_prompt(curation)
    if k is None or "difficulty" not in curation.columns:
        return pl.lit(None, dtype=pl.Float64)
    p = (1.0 - pl.col("difficulty")).clip(0.0, 1.0)
    return 1.0 - p.pow(int(k)) - (1.0 - p).pow(int(k))


def rollouts_per_prompt(curation: pl.DataFrame) -> int | None:
    """k of the curation's measured prompts (its `k` column's largest value); None when none was measured."""
    return curation["k"].max() if "k" in curation.columns else None


def arm_members(table: pl.DataFrame) -> list[list[int]]:
    """Row indices of each arm (cluster id = arm index)."""
    clusters = table["cluster"].to_list()
    members: list[list[int]] = [[] for _ in range(max(clusters) + 1)]
    for row, cluster in enumerate(clusters):
        members[cluster].append(row)
    return members


def group_results(rollouts: pl.DataFrame) -> tuple[list[Any], int]:
    """Bandit feedback per slot; judged rollouts only (a group left with < 2 judged rollouts is skipped)."""
    from space.train.bandit import GroupResult

    groups, skipped = [], 0
    for (_, cluster), part in rollouts.group_by("group", "cluster", maintain_order=True):
        judged = part.filter(pl.col("reward").is_not_null())
        if judged.height < 2:
            skipped += 1
            continue
        groups.append(GroupResult(int(cluster), tuple(judged["reward"].to_list()), tuple(judged["solved"].to_list())))
    return groups, skipped


def make_picker(table: pl.DataFrame, members: list[list[int]], cfg: TrainConfig, seed: int) -> Any:
    """The prompt picker of `cfg.pool`: an active pool that refills (refill), else per-cluster queues, without
    spent prompts when `cfg.skip.after` > 0."""
    from space.train.active_pool import ActivePool
    from space.train.sampler import ClusterPromptPicker
    from space.train.skipping import SkippingPicker

    if cfg.pool != "refill":
        return SkippingPicker(members, cfg.skip, seed) if cfg.skip.after else ClusterPromptPicker(members, seed)
    selected = table["selected"].to_list()
    active = [[row for row in m if selected[row]] or m[:1] for m in members]
    return ActivePool(members, active, table["solve_rate"].cast(pl.Float64).to_list(), cfg.refill,
                      cfg.bandit.target_solve_rate, seed)


def group_outcomes(rollouts: pl.DataFrame, order: list[int]) -> list[Any]:
    """Per judged group (>= 2 judged rollouts): its dataset row, arm, solved share and whether it had no signal."""
    from space.train.active_pool import GroupOutcome

    out = []
    for (group, cluster), part in rollouts.group_by("group", "cluster", maintain_order=True):
        judged = part.filter(pl.col("reward").is_not_null())
        if judged.height >= 2:
            rewards = judged["reward"]
            out.append(GroupOutcome(order[int(group)], int(cluster), float(judged["solved"].mean()),
                                    bool(rewards.max() - rewards.min() <= 1e-9)))
    return out


def arm_priors(arms: list[dict[str, Any]]) -> list[float | None]:
    """Each arm's mean reference solve rate; None (no prior) where curation measured none."""
    return [arm["ref_solve_rate"] for arm in arms]


def allocation_metrics(arms: np.ndarray, probabilities: np.ndarray, num_arms: int) -> dict[str, float]:
    """Each arm's share of the epoch's slots and its allocation probability, named for logging."""
    shares = {f"bandit/arm_{k:02d}/share": float((arms == k).mean()) for k in range(num_arms)}
    return shares | {f"bandit/arm_{k:02d}/p": float(p) for k, p in enumerate(probabilities)}


def epoch_arm_rows(epoch: int, planned: np.ndarray, probabilities: np.ndarray, rollouts: pl.DataFrame,
                   arm_table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per arm: the slots it got this epoch, its share and allocation probability, the solve rate and
    mean reward of its judged rollouts this epoch (None when it has none), then the bandit's state columns
    (`Policy.arm_table`, after this epoch's update)."""
    judged = rollouts.filter(pl.col("reward").is_not_null())
    seen = {row["cluster"]: row for row in judged.group_by("cluster").agg(
        pl.col("solved").mean().alias("solve_rate"), pl.col("reward").mean().alias("reward_mean")).to_dicts()}
    rows = []
    for state in arm_table:
        arm = state["arm"]
        slots = int((planned == arm).sum())
        rows.append({"epoch": epoch, "arm": arm, "slots": slots, "share": slots / max(1, len(planned)),
                     "p": float(probabilities[arm]), "solve_rate": seen.get(arm, {}).get("solve_rate"),
                     "reward_mean": seen.get(arm, {}).get("reward_mean"),
                     **{k: v for k, v in state.items() if k != "arm"}})
    return rows


def plan_epoch(policy: Any, picker: Any, epoch: int, slots: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(allocation probabilities, arm per slot, row index per slot) of epoch `epoch`: the one planning step shared
    by `run_epoch` and the trainer integrations (space/integrations), so their plans stay equal."""
    probabilities, planned = policy.allocate(epoch, slots)
    return probabilities, planned, picker.fill(planned)


def train_slots(rows: list[dict[str, Any]], order: list[int], cfg: TrainConfig, verifier: VerifierConfig,
                model_dir: Path, *, seed: int, epoch: int, checkpoint_in: Path | None, checkpoint_out: Path,
                progress: Any = None) -> Any:
    """The GRPO part of an epoch: in this process, or with `train.distributed.processes` > 1 as a torchrun job
    whose ranks share the slots (space/train/launch.py); the same `EpochResult` either way."""
    from space.data.verifiers import get_verifier
    from space.train import grpo
    from space.train.launch import train_epoch_launched

    if cfg.distributed.processes > 1:
        return train_epoch_launched(cfg.distributed, model_dir, checkpoint_in, checkpoint_out, rows, order,
                                    verifier.model_dump(), cfg.grpo, epoch, cfg.epochs, seed)
    return grpo.train_epoch(model_dir, checkpoint_in, checkpoint_out, rows, order,
                            get_verifier(verifier.name, extract=verifier.extract), cfg.grpo, epoch, cfg.epochs, seed,
                            progress=progress, theta_solve=verifier.theta_solve)


def run_epoch(
    table: pl.DataFrame,
    arms: list[dict[str, Any]],
    cfg: TrainConfig,
    verifier: VerifierConfig,
    model_dir: Path,
    *,
    seed: int,
    epoch: int,
    checkpoint_in: Path | None,
    state_in: dict[str, Any] | None,
    checkpoint_out: Path,
    rollouts_out: Path | None = None,
    progress: Any = None,
) -> EpochOutcome:
    """Plan epoch `epoch`'s M slots, train one GRPO epoch on them and update the bandit from its rollouts.

    `table` holds the training rows (prompt, prompt_id, cluster, answer, metadata) in arm order; `arms` one
    dict per arm with its `ref_solve_rate` prior. The rollouts are written to `rollouts_out` (when given) as
    soon as training ends, before the bandit update, so a failing update loses none of them. Raises
    RuntimeError when the verifier judged no group (the bandit would otherwise learn from nothing)."""
    from space.train.bandit import make_policy

    members = arm_members(table)
    policy = make_policy(cfg.bandit, [len(m) for m in members], seed, arm_priors(arms))
    picker = make_picker(table, members, cfg, seed)
    if state_in is not None:
        policy.load_state_dict(state_in["bandit"])
        picker.load_state_dict(state_in["picker"])
    probabilities, planned, order = plan_epoch(policy, picker, epoch, cfg.slots_per_epoch)
    result = train_slots(table.to_dicts(), order, cfg, verifier, Path(model_dir), seed=seed, epoch=epoch,
                         checkpoint_in=checkpoint_in, checkpoint_out=checkpoint_out, progress=progress)
    if rollouts_out is not None:
        result.rollouts.write_parquet(rollouts_out)
    groups, skipped = group_results(result.rollouts)
    if not groups:
        raise RuntimeError(f"epoch {epoch}: the verifier judged no group (see {rollouts_out or 'the rollouts'})")
    bandit_metrics = policy.update(groups)
    pool_metrics = picker.end_epoch(epoch, group_outcomes(result.rollouts, order))
    metrics = {**result.metrics, **bandit_metrics, **allocation_metrics(planned, probabilities, len(members)),
               **pool_metrics, "bandit/skipped_groups": skipped}
    return EpochOutcome(
        order=[int(i) for i in order], arms=[int(a) for a in planned],
        probabilities=[float(p) for p in probabilities], rollouts=result.rollouts,
        log_history=result.log_history, metrics=metrics,
        state={"bandit": policy.state_dict(), "picker": picker.state_dict()},
        arm_rows=epoch_arm_rows(epoch, planned, probabilities, result.rollouts, policy.arm_table()),
        checkpoint_out=Path(result.checkpoint_out),
    )
