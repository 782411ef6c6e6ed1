"""The refilling active pool on scripted group results: retire, refill by predicted difficulty, cooldown
returns, exhaustion, and an exact resume from its state."""

from __future__ import annotations

import json

import pytest

from space.train.active_pool import ActivePool, GroupOutcome, RefillConfig

# arm 0: rows 0-5, arm 1: rows 6-8; reference solve rates per row
MEMBERS = [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
REF = [0.9, 0.5, 0.1, 0.45, 0.8, 0.0, 0.5, 0.6, 0.4]


def pool(**cfg) -> ActivePool:
    return ActivePool(MEMBERS, [[0, 1], [6]], REF, RefillConfig(**cfg), target=0.5, seed=0)


def solved_all(row: int, arm: int) -> GroupOutcome:
    return GroupOutcome(row, arm, 1.0, True)


def mixed(row: int, arm: int, rate: float = 0.5) -> GroupOutcome:
    return GroupOutcome(row, arm, rate, False)


def test_fill_draws_only_active_rows_of_the_planned_arm() -> None:
    p = pool()
    rows = p.fill([0, 1, 0, 0, 1])
    assert set(rows[i] for i in (0, 2, 3)) <= {0, 1} and rows[1] == rows[4] == 6


def test_a_no_signal_prompt_is_retired_and_replaced_by_the_unused_member_nearest_the_target() -> None:
    p = pool()
    metrics = p.end_epoch(0, [solved_all(0, 0), mixed(1, 0), mixed(6, 1)])
    # arm 0 drift: ((1.0 - 0.9) + (0.5 - 0.5)) / 2 = +0.05; unused 2, 3, 4, 5 predicted 0.15, 0.50, 0.85, 0.05
    assert p.active[0] == [3, 1] and p.retired == {0: 0}
    assert metrics["pool/retired"] == 1 and metrics["pool/refilled"] == 1 and metrics["pool/exhausted_arms"] == 0
    assert metrics["pool/unique_trained"] == 3 and metrics["pool/share_trained"] == pytest.approx(3 / 9)
    assert 0 not in p.fill([0] * 8)


def test_drift_moves_the_refill_towards_harder_prompts_as_the_model_improves() -> None:
    p = pool()
    # the arm's groups solve 0.4 above their reference: an unused prompt at ref 0.1 is predicted at 0.5
    p.end_epoch(0, [solved_all(0, 0), mixed(1, 0, rate=0.9)])
    # drift = ((1.0 - 0.9) + (0.9 - 0.5)) / 2 = 0.25: predicted 2 -> 0.35, 3 -> 0.70, 4 -> 1.05, 5 -> 0.25
    assert p.active[0] == [2, 1]


def test_retire_after_counts_no_signal_groups_in_a_row() -> None:
    p = pool(retire_after=2)
    p.end_epoch(0, [solved_all(0, 0)])
    assert p.active[0] == [0, 1]
    p.end_epoch(1, [mixed(0, 0)])  # a group with signal resets the streak
    p.end_epoch(2, [solved_all(0, 0)])
    assert p.active[0] == [0, 1]
    p.end_epoch(3, [solved_all(0, 0)])
    assert 0 not in p.active[0]


def test_an_exhausted_arm_keeps_its_spent_prompt_and_is_reported_until_the_cooldown_returns_one() -> None:
    p = pool(cooldown=2)
    m0 = p.end_epoch(0, [solved_all(6, 1)])  # drift +0.5: 7 -> 1.1, 8 -> 0.9, so 6 -> 8
    assert p.active[1] == [8] and m0["pool/refilled"] == 1
    p.end_epoch(1, [solved_all(8, 1)])  # 8 -> 7, the last unused member
    assert p.active[1] == [7]
    m2 = p.end_epoch(2, [solved_all(7, 1)])  # no unused member; 6 retired at epoch 0 is past its cooldown
    assert p.active[1] == [6] and m2["pool/returned"] == 1
    m3 = p.end_epoch(3, [solved_all(6, 1)])  # 8 retired at 1 is ready (3 - 1 >= 2), 7 retired at 2 is not
    assert p.active[1] == [8]
    never = pool(cooldown=None)
    for epoch, row in enumerate((6, 8, 7)):
        metrics = never.end_epoch(epoch, [solved_all(row, 1)])
    assert never.active[1] == [7] and metrics["pool/exhausted_arms"] == 1 and metrics["pool/retired"] == 0
    assert m3["pool/active"] == 3


def test_state_round_trips_through_json_and_resumes_the_same_draws() -> None:
    p = pool()
    p.fill([0, 0, 1])
    p.end_epoch(0, [solved_all(0, 0), mixed(1, 0)])
    state = json.loads(json.dumps(p.state_dict()))
    q = pool()
    q.load_state_dict(state)
    assert q.fill([0] * 7 + [1] * 3) == p.fill([0] * 7 + [1] * 3)
    assert q.state_dict() == p.state_dict()
    with pytest.raises(ValueError, match="seed"):
        ActivePool(MEMBERS, [[0, 1], [6]], REF, RefillConfig(), 0.5, seed=1).load_state_dict(state)


def test_an_active_set_outside_the_arm_is_refused() -> None:
    with pytest.raises(ValueError, match="arm 1"):
        ActivePool(MEMBERS, [[0], [0]], REF, RefillConfig(), 0.5, 0)


def test_unknown_reference_difficulty_is_treated_as_on_target() -> None:
    ref = list(REF)
    ref[5] = float("nan")
    p = ActivePool(MEMBERS, [[0, 1], [6]], ref, RefillConfig(), 0.5, 0)
    p.end_epoch(0, [solved_all(0, 0), mixed(1, 0, rate=0.4)])  # drift ((1 - .9) + (.4 - .5)) / 2 = 0
    assert p.active[0] == [5, 1]  # predicted 0.5 (unknown: the target) beats row 3's 0.45
