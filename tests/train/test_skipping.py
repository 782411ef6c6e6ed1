"""Skipping spent prompts (train.skip) on scripted group results: who is left out and when, cooldown returns,
the fallback of an arm with every prompt skipped, an exact resume, and the recipe's refusal with refill."""

from __future__ import annotations

import json

import pytest

from space.train.active_pool import GroupOutcome
from space.train.config import TrainConfig
from space.train.sampler import ClusterPromptPicker
from space.train.skipping import SkipConfig, SkippingPicker

MEMBERS = [[0, 1, 2, 3], [4, 5]]


def picker(**cfg) -> SkippingPicker:
    return SkippingPicker(MEMBERS, SkipConfig(**{"after": 1, **cfg}), seed=3)


def flat(row: int, arm: int, rate: float = 1.0) -> GroupOutcome:
    return GroupOutcome(row, arm, rate, True)


def mixed(row: int, arm: int) -> GroupOutcome:
    return GroupOutcome(row, arm, 0.5, False)


def test_until_a_skip_it_draws_what_the_plain_picker_draws() -> None:
    plan = [0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert picker().fill(plan) == ClusterPromptPicker(MEMBERS, seed=3).fill(plan)


def test_a_prompt_with_a_no_signal_group_is_left_out_of_every_later_draw() -> None:
    p = picker()
    metrics = p.end_epoch(0, [flat(0, 0), flat(1, 0, rate=0.0), mixed(2, 0), mixed(4, 1)])
    assert p.skipped == {0: 0, 1: 0}
    assert set(p.fill([0] * 20)) == {2, 3} and set(p.fill([1] * 6)) == {4, 5}
    assert metrics["skip/skipped"] == 2 and metrics["skip/out"] == 2 and metrics["skip/returned"] == 0
    assert metrics["pool/unique_trained"] == 4 and metrics["pool/share_trained"] == pytest.approx(4 / 6)


def test_a_skipped_row_already_queued_is_dropped_from_the_queue() -> None:
    p = picker()
    p.fill([0])  # the arm's queue now holds the other three members
    queued = list(p.queues[0])
    p.end_epoch(0, [flat(queued[0], 0)])
    assert queued[0] not in p.queues[0] and len(p.queues[0]) == 2


def test_after_counts_no_signal_groups_in_a_row() -> None:
    p = picker(after=2)
    p.end_epoch(0, [flat(0, 0)])
    p.end_epoch(1, [mixed(0, 0)])  # a group with signal resets the streak
    p.end_epoch(2, [flat(0, 0)])
    assert p.skipped == {}
    p.end_epoch(3, [flat(0, 0)])
    assert p.skipped == {0: 3}


def test_a_skipped_prompt_returns_after_its_cooldown_and_never_without_one() -> None:
    p, forever = picker(cooldown=2), picker()
    for q in (p, forever):
        q.end_epoch(0, [flat(0, 0)])
        q.end_epoch(1, [])
    assert p.skipped == {0: 0} and forever.skipped == {0: 0}
    metrics = p.end_epoch(2, [])
    assert p.skipped == {} and metrics["skip/returned"] == 1 and 0 in p.fill([0] * 8)
    forever.end_epoch(2, [])
    assert forever.skipped == {0: 0}


def test_an_arm_with_every_prompt_skipped_draws_from_all_of_them_and_says_so() -> None:
    p = picker()
    p.end_epoch(0, [flat(4, 1), flat(5, 1)])
    assert sorted(p.fill([1, 1])) == [4, 5]
    assert p.end_epoch(1, [])["skip/fallback_arms"] == 1
    assert p.end_epoch(2, [])["skip/fallback_arms"] == 0


def test_state_dict_round_trips_through_json_and_resumes_the_same_draws() -> None:
    p = picker()
    p.fill([0, 1, 0])
    p.end_epoch(0, [flat(1, 0), mixed(0, 0)])
    state = json.loads(json.dumps(p.state_dict()))
    q = picker()
    q.load_state_dict(state)
    assert q.fill([0, 1, 0, 0, 1, 0]) == p.fill([0, 1, 0, 0, 1, 0]) and q.skipped == p.skipped


def test_a_plain_picker_state_is_refused_with_its_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        picker().load_state_dict(ClusterPromptPicker(MEMBERS, seed=3).state_dict())


def test_after_zero_is_refused_by_the_picker_and_skip_with_refill_by_the_recipe() -> None:
    with pytest.raises(ValueError, match="after >= 1"):
        SkippingPicker(MEMBERS, SkipConfig(), seed=0)
    with pytest.raises(ValueError, match="train.pool = refill"):
        TrainConfig(pool="refill", skip=SkipConfig(after=1))
    assert TrainConfig(pool="informative", skip=SkipConfig(after=1)).skip.after == 1
