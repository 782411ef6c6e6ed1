"""Tests for space/train/epoch.py: the SPaCe epoch loop called directly (no Prefect), on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from conftest_models import make_tiny_model_dir
from space.train.bandit import BanditConfig
from space.config import TrainConfig, VerifierConfig
from space.train.checkpoint import load_checkpoint
from space.train.epoch import (allocation_metrics, arm_members, epoch_arm_rows, group_results, run_epoch,
                         training_table)
from space.train.grpo import GRPOSettings
from space.train.skipping import SkipConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [("1+1=", "2", 0), ("2+2=", "4", 0), ("3+4=", "7", 1), ("5-1=", "4", 1), ("9-3=", "6", 1)]
CFG = TrainConfig(epochs=2, slots_per_epoch=4, bandit=BanditConfig(policy="ts_lp"),
                  grpo=GRPOSettings(prompts_per_step=2, num_generations=4, max_completion_length=8))
EXACT = VerifierConfig(name="exact", extract="none")


def table() -> pl.DataFrame:
    return pl.DataFrame({"prompt": [f"Q: {q}\nA: " for q, _, _ in ROWS], "prompt_id": [f"p{i}" for i in range(5)],
                         "cluster": [c for _, _, c in ROWS], "answer": [a for _, a, _ in ROWS],
                         "metadata": ["{}"] * 5})


ARMS = [{"cluster": 0, "ref_solve_rate": 0.5}, {"cluster": 1, "ref_solve_rate": None}]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("epochs")
    base = make_tiny_model_dir(root / "tiny")
    first = run_epoch(table(), ARMS, CFG, EXACT, base, seed=3, epoch=0, checkpoint_in=None, state_in=None,
                      checkpoint_out=root / "e0", rollouts_out=root / "e0.parquet")
    state = json.loads(json.dumps(first.state))  # what a caller persists between epochs
    second = run_epoch(table(), ARMS, CFG, EXACT, base, seed=3, epoch=1, checkpoint_in=first.checkpoint_out,
                       state_in=state, checkpoint_out=root / "e1")
    return root, first, second


def test_each_slot_takes_a_prompt_of_its_planned_arm(two_epochs):
    _, first, second = two_epochs
    clusters = table()["cluster"].to_list()
    for outcome in (first, second):
        assert len(outcome.order) == len(outcome.arms) == CFG.slots_per_epoch
        assert [clusters[row] for row in outcome.order] == outcome.arms


def test_allocation_comes_back_as_data_and_as_matching_metrics(two_epochs):
    _, first, _ = two_epochs
    assert len(first.probabilities) == 2 and sum(first.probabilities) == pytest.approx(1.0)
    for arm in (0, 1):
        assert first.metrics[f"bandit/arm_{arm:02d}/share"] == first.arms.count(arm) / CFG.slots_per_epoch
        assert first.metrics[f"bandit/arm_{arm:02d}/p"] == first.probabilities[arm]


def test_arm_rows_carry_each_arms_id_slots_probability_and_bandit_state(two_epochs):
    _, first, _ = two_epochs
    assert [row["arm"] for row in first.arm_rows] == [0, 1]
    for row in first.arm_rows:
        assert row["epoch"] == 0 and row["slots"] == first.arms.count(row["arm"])
        assert row["share"] == first.metrics[f"bandit/arm_{row['arm']:02d}/share"]
        assert row["p"] == first.probabilities[row["arm"]]
        assert row["size"] == [2, 3][row["arm"]]  # a bandit state column (Policy.arm_table)
    assert sum(row["slots"] for row in first.arm_rows) == CFG.slots_per_epoch


def test_epoch_arm_rows_on_known_values():
    rollouts = pl.DataFrame({"cluster": [0, 0, 0, 2, 2], "reward": [1.0, 0.0, None, 0.5, 0.5],
                             "solved": [True, False, None, False, False]})
    table = [{"arm": k, "size": 4} for k in range(3)]
    rows = epoch_arm_rows(5, np.array([0, 2, 2, 0]), np.array([0.5, 0.1, 0.4]), rollouts, table)
    assert [(r["arm"], r["slots"], r["share"], r["p"]) for r in rows] == [(0, 2, 0.5, 0.5), (1, 0, 0.0, 0.1),
                                                                          (2, 2, 0.5, 0.4)]
    assert [(r["solve_rate"], r["reward_mean"]) for r in rows] == [(0.5, 0.5), (None, None), (0.0, 0.5)]
    assert all(r["epoch"] == 5 and r["size"] == 4 for r in rows)


def test_rollouts_are_written_before_the_bandit_update(two_epochs):
    root, first, _ = two_epochs
    written = pl.read_parquet(root / "e0.parquet")
    assert written.height == CFG.slots_per_epoch * CFG.grpo.num_generations
    assert written["prompt_id"].to_list() == first.rollouts["prompt_id"].to_list()


def test_the_bandit_state_carries_over_between_epochs(two_epochs):
    _, first, second = two_epochs
    pulls_after_first = first.state["bandit"]
    pulls_after_second = second.state["bandit"]
    assert pulls_after_first != pulls_after_second  # the second epoch's feedback moved the bandit
    assert load_checkpoint(second.checkpoint_out).global_step == 2 * (CFG.slots_per_epoch // 2)


def test_an_epoch_the_verifier_cannot_judge_fails_and_keeps_its_rollouts(tmp_path):
    base = make_tiny_model_dir(tmp_path / "tiny")
    unjudgeable = VerifierConfig(name="math", extract="none")
    rows = table().with_columns(pl.lit("").alias("answer"))  # math-verify cannot parse an empty gold: None
    with pytest.raises(RuntimeError, match="judged no group"):
        run_epoch(rows, ARMS, CFG, unjudgeable, base, seed=0, epoch=0, checkpoint_in=None, state_in=None,
                  checkpoint_out=tmp_path / "e0", rollouts_out=tmp_path / "e0.parquet")
    assert pl.read_parquet(tmp_path / "e0.parquet")["reward"].null_count() == CFG.slots_per_epoch * 4


def test_helpers_on_known_values():
    assert arm_members(table()) == [[0, 1], [2, 3, 4]]
    rollouts = pl.DataFrame({"group": [0, 0, 1, 1, 2, 2], "cluster": [0, 0, 1, 1, 1, 1],
                             "reward": [1.0, 0.0, None, 1.0, 0.5, 0.5], "solved": [True, False, None, True, False, False]})
    groups, skipped = group_results(rollouts)
    assert skipped == 1 and [(g.arm, g.rewards) for g in groups] == [(0, (1.0, 0.0)), (1, (0.5, 0.5))]
    metrics = allocation_metrics(np.array([0, 1, 1, 1]), np.array([0.2, 0.8]), 2)
    assert metrics == {"bandit/arm_00/share": 0.25, "bandit/arm_01/share": 0.75,
                       "bandit/arm_00/p": 0.2, "bandit/arm_01/p": 0.8}


def test_training_table_keeps_the_selected_pool_renders_prompts_and_counts_arms():
    from space.models.tiny import build_tokenizer

    curation = pl.DataFrame({"prompt_id": ["b", "a", "c", "d"], "question": ["2+2", "1+1", "3+3", "4+4"],
                             "answer": ["4", "2", "6", "8"], "metadata": ["{}"] * 4, "source": ["s"] * 4,
                             "level": [1, 1, 2, 2], "cluster": [1, 1, 0, 1], "solve_rate": [0.5, 1.0, 0.0, None],
                             "selected": [True, True, True, False], "extra": [0] * 4})
    table, arms = training_table(curation, build_tokenizer(), None, "reduced")
    assert table["prompt_id"].to_list() == ["c", "a", "b"]  # by cluster, then prompt id; d was not selected
    assert table["prompt"].to_list() == ["Q: 3+3\nA: ", "Q: 1+1\nA: ", "Q: 2+2\nA: "]
    assert "extra" not in table.columns and table["selected"].all()  # `selected`: refill's first active set
    assert arms == [{"cluster": 0, "size": 1, "ref_solve_rate": 0.0}, {"cluster": 1, "size": 2, "ref_solve_rate": 0.75}]
    informative, _ = training_table(curation, build_tokenizer(), None, "informative")
    assert informative["prompt_id"].to_list() == ["c", "b"]  # cluster 1 keeps b (0.5); cluster 0 has only c (0.0)
    full, full_arms = training_table(curation, build_tokenizer(), None, "full")
    assert full.height == 4 and full_arms[1] == {"cluster": 1, "size": 3, "ref_solve_rate": 0.75}  # None not counted


def test_informative_rows_read_predicted_difficulty_as_the_chance_of_a_mixed_group():
    """Unmeasured rows (propagated difficulty) count when k samples at 1 - difficulty would mix successes and
    failures with probability >= min_signal; k comes from the measured rows; without it they do not count."""
    from space.train.epoch import informative_rows

    curation = pl.DataFrame({"prompt_id": list("abcdefg"), "cluster": [0, 0, 0, 0, 0, 0, 1],
                             "solve_rate": [0.5, 1.0, None, None, None, None, None],
                             "k": [8, 8, None, None, None, None, None],
                             "difficulty": [0.5, 0.0, 0.5, 0.98, 0.0, None, 1.0]})
    # c: p 0.5, mixed with probability 0.99; d: p 0.02, 0.15; e: p 1.0, 0; f: no difficulty; cluster 1 has no
    # informative row, so it keeps g
    assert informative_rows(curation)["prompt_id"].to_list() == ["a", "c", "g"]
    assert informative_rows(curation, min_signal=0.1)["prompt_id"].to_list() == ["a", "c", "d", "g"]
    assert informative_rows(curation.with_columns(pl.lit(None, dtype=pl.Int64).alias("k")))[
        "prompt_id"].to_list() == ["a", "g"]  # no measured k: a predicted difficulty cannot be read as a group


def test_a_refill_epoch_trains_active_prompts_only_and_retires_spent_ones(tmp_path):
    """pool: refill on the whole table: slots come from the selected rows, then spent prompts are swapped for
    unused members of their cluster; the picker state carries the active sets into the next epoch."""
    rows = table().with_columns(pl.Series("selected", [True, False, True, False, False]),
                                pl.Series("solve_rate", [0.5, 0.5, 0.5, 0.6, 0.4]))
    cfg = CFG.model_copy(update={"pool": "refill", "slots_per_epoch": 8,
                                 "bandit": BanditConfig(policy="tempered", max_share=0.5)})
    base = make_tiny_model_dir(tmp_path / "tiny")
    first = run_epoch(rows, ARMS, cfg, EXACT, base, seed=3, epoch=0, checkpoint_in=None, state_in=None,
                      checkpoint_out=tmp_path / "e0")
    assert set(first.order) <= {0, 2}  # the first active sets: one selected row per cluster
    spent = first.metrics["pool/retired"]
    assert spent == 2  # a random model never matches exactly: every group is all-0, both prompts are spent
    assert first.metrics["pool/active"] == 2 and first.metrics["pool/unique_trained"] == 2
    assert first.state["picker"]["kind"] == "refill"
    active = {r for a in first.state["picker"]["active"] for r in a}
    assert len(active) == 2 and len(active - {0, 2}) == spent  # each retired row was replaced by a new one
    second = run_epoch(rows, ARMS, cfg, EXACT, base, seed=3, epoch=1, checkpoint_in=first.checkpoint_out,
                       state_in=json.loads(json.dumps(first.state)), checkpoint_out=tmp_path / "e1")
    assert set(second.order) <= active


def test_a_skip_epoch_leaves_its_spent_prompts_out_of_the_next_epoch(tmp_path):
    """train.skip.after 1 on a fixed pool: the random tiny model never matches exactly, so every group of the first
    epoch is all-0 and its prompts are left out of the second; the picker state carries them over."""
    rows = table()
    cfg = CFG.model_copy(update={"pool": "full", "slots_per_epoch": 4, "bandit": BanditConfig(policy="uniform"),
                                 "skip": SkipConfig(after=1)})
    base = make_tiny_model_dir(tmp_path / "tiny")
    first = run_epoch(rows, ARMS, cfg, EXACT, base, seed=3, epoch=0, checkpoint_in=None, state_in=None,
                      checkpoint_out=tmp_path / "e0")
    spent = set(first.order)
    assert first.metrics["skip/skipped"] == len(spent) and first.state["picker"]["kind"] == "skip"
    assert {r for r, _ in first.state["picker"]["skipped"]} == spent
    second = run_epoch(rows, ARMS, cfg, EXACT, base, seed=3, epoch=1, checkpoint_in=first.checkpoint_out,
                       state_in=json.loads(json.dumps(first.state)), checkpoint_out=tmp_path / "e1")
    fallback = second.metrics["skip/fallback_arms"]
    clusters = rows["cluster"].to_list()
    for row in second.order:  # a spent row comes back only in an arm whose every member was spent
        arm_spent = all(r in spent for r in range(len(clusters)) if clusters[r] == clusters[row])
        assert row not in spent or (arm_spent and fallback > 0), (row, spent, second.order)
