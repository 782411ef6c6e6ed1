"""Shared by tests/integrations: a small curation, a seeded reward world, and the plans `space train`'s bandit path
makes in it (`make_policy`, `ClusterPromptPicker`, `plan_epoch`, `group_results`, the state saved and restored
between epochs as `run_epoch` does), for the trainer integrations to be compared with."""

from __future__ import annotations

import hashlib

import polars as pl

from space.train.bandit import BanditConfig, make_policy
from space.train.epoch import arm_members, arm_priors, group_results, plan_epoch
from space.train.sampler import ClusterPromptPicker

G, PER_CHUNK, SLOTS, EPOCHS, SEED = 4, 2, 6, 5, 3
SOLVE = {0: 0.9, 1: 0.5, 2: 0.1}  # each cluster's chance that a rollout is solved in the replayed world


def curation() -> pl.DataFrame:
    ids = [f"q{c}{i}" for c in range(3) for i in range(4)]
    return pl.DataFrame({
        "prompt_id": ids, "question": [f"question {p}" for p in ids], "answer": ["1"] * 12,
        "metadata": ["{}"] * 12, "cluster": [c for c in range(3) for _ in range(4)],
        "selected": [i < 3 for _ in range(3) for i in range(4)],
        "solve_rate": [0.8, 0.7, 0.9, 0.6, 0.5, 0.4, 0.6, 0.5, 0.1, 0.0, 0.2, None],
        "k": [8] * 11 + [None], "difficulty": [0.2] * 12, "distance": [0.1] * 12,
    })


def reward(prompt_id: str, epoch: int, sample: int, cluster: int, unjudged: bool = True) -> float | None:
    """A seeded Bernoulli reward; with `unjudged`, every 7th draw is None, as a verifier may leave some."""
    h = int(hashlib.sha256(f"{prompt_id}/{epoch}/{sample}".encode()).hexdigest()[:8], 16)
    if unjudged and h % 7 == 0:
        return None
    return 1.0 if (h % 1000) / 1000 < SOLVE[cluster] else 0.0


BANDIT = BanditConfig(policy="ts_lp", prior_strength=2.0, lp_window=1)


def flow_plans(unjudged: bool = True) -> tuple[list[list[str]], dict]:
    """The plans `run_epoch` makes for these rewards: policy and picker rebuilt from the saved state each epoch."""
    table = curation().filter(pl.col("selected")).sort("cluster", "prompt_id")
    arms = table.group_by("cluster", maintain_order=True).agg(pl.col("solve_rate").mean().alias("ref_solve_rate"))
    members = arm_members(table)
    state, plans = None, []
    for epoch in range(EPOCHS):
        policy = make_policy(BANDIT, [len(m) for m in members], SEED, arm_priors(arms.to_dicts()))
        picker = ClusterPromptPicker(members, SEED)
        if state is not None:
            policy.load_state_dict(state["bandit"])
            picker.load_state_dict(state["picker"])
        _, _, order = plan_epoch(policy, picker, epoch, SLOTS)
        ids = [table["prompt_id"][i] for i in order]
        rollouts = pl.DataFrame(
            [{"group": slot, "cluster": table["cluster"][row],
              "reward": reward(pid, epoch, s, table["cluster"][row], unjudged)}
             for slot, (row, pid) in enumerate(zip(order, ids)) for s in range(G)],
            schema={"group": pl.Int64, "cluster": pl.Int64, "reward": pl.Float64}, orient="row",
        ).with_columns((pl.col("reward") >= 1.0).alias("solved"))
        groups, _ = group_results(rollouts)
        policy.update(groups)
        state = {"bandit": policy.state_dict(), "picker": picker.state_dict()}
        plans.append(ids)
    return plans, state["bandit"]
