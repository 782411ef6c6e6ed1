"""Tests for space/train/bandit.py: allocation invariants, hand-counted feedback, policy behaviour in seeded worlds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from space.train.bandit import (
    BanditConfig,
    GroupResult,
    Policy,
    draw_slots,
    group_advantages,
    make_policy,
    register_policy,
    registered_policies,
)

ALL = ["ts_hard", "ts_lp", "tempered", "learnability", "ucb", "exp3", "sec", "uniform"]
FLOORED = ["ts_hard", "ts_lp", "learnability", "sec"]


def group(arm: int, rewards: list[float]) -> GroupResult:
    return GroupResult(arm, tuple(float(r) for r in rewards), tuple(r >= 1.0 for r in rewards))


def bernoulli_groups(arms: np.ndarray, true_rates: list[float], g: int, rng: np.random.Generator) -> list[GroupResult]:
    return [group(int(a), list((rng.random(g) < true_rates[a]).astype(float))) for a in arms]


def simulate(policy: Policy, true_rates: list[float], epochs: int, slots: int = 32, g: int = 4) -> np.ndarray:
    """Run the policy in a seeded Bernoulli world; return the p it would use next."""
    rng = np.random.default_rng(123)
    for t in range(epochs):
        policy.update(bernoulli_groups(policy.allocate(t, slots)[1], true_rates, g, rng))
    return policy.allocate(epochs, slots)[0]


# --- config and registry


def test_config_defaults_match_method_section_5() -> None:
    cfg = BanditConfig()
    assert (cfg.policy, cfg.posterior, cfg.sigma0, cfg.discount) == ("ts_lp", "gaussian", 0.5, 0.9)
    assert (cfg.lp_window, cfg.lp_weight, cfg.lp_mode, cfg.target_solve_rate, cfg.floor) == (2, 0.5, "abs", 0.5, 0.05)
    assert (cfg.solve_term, cfg.bandit_reward, cfg.prior_strength) == ("target", "learnability", 0.0)
    assert (cfg.ucb_c, cfg.exp3_eta, cfg.sec_lr, cfg.sec_temperature) == (0.5, 0.1, 0.5, 0.4)


@pytest.mark.parametrize(
    "bad", [{"floor": 1.0}, {"floor": -0.1}, {"discount": 0.0}, {"discount": 1.5}, {"policy": "greedy"},
            {"lp_window": 0}, {"theta_solve": 1.0}, {"sigma0": 0.0}]
)
def test_config_rejects_out_of_range_and_unknown_fields(bad: dict) -> None:
    with pytest.raises(ValidationError):
        BanditConfig(**bad)


def test_registry_knows_the_seven_policies_and_refuses_duplicates_and_unknown_names() -> None:
    assert registered_policies() == sorted(ALL)
    with pytest.raises(ValueError, match="already registered"):
        register_policy("ucb")(type("Other", (Policy,), {}))
    bogus = BanditConfig().model_copy(update={"policy": "greedy"})  # model_copy skips validation
    with pytest.raises(KeyError, match="known:.*ts_lp"):
        make_policy(bogus, [2, 2], seed=0)


@pytest.mark.parametrize("sizes", [[3, 0, 2], []])
def test_empty_arms_are_refused(sizes: list[int]) -> None:
    with pytest.raises(ValueError, match="arm"):
        make_policy(BanditConfig(), sizes, seed=0)


def test_group_result_validation() -> None:
    with pytest.raises(ValueError, match="rewards but"):
        GroupResult(0, (1.0, 0.0), (True,))
    with pytest.raises(ValueError, match=">= 2 rollouts"):
        GroupResult(0, (1.0,), (True,))
    with pytest.raises(ValueError, match="non-finite"):
        GroupResult(0, (float("nan"), 0.0), (False, False))
    policy = make_policy(BanditConfig(), [2, 2], seed=0)
    with pytest.raises(ValueError, match=r"groups\[1\].arm = 5"):
        policy.update([group(0, [1, 0]), group(5, [1, 0])])
    with pytest.raises(ValueError, match="at least one"):
        policy.update([])


def test_bandit_module_does_not_import_torch() -> None:
    code = "import sys, space.train.bandit; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- invariants shared by every policy


@pytest.mark.parametrize("name", ALL)
def test_plan_is_valid_deterministic_and_restores_exactly(name: str) -> None:
    cfg, sizes, slots = BanditConfig(policy=name), [3, 1, 4, 2], 24
    policy = make_policy(cfg, sizes, seed=7)
    simulate(policy, [0.1, 0.5, 0.7, 0.0], epochs=5, slots=slots)
    arms = policy.allocate(5, slots)[1]
    assert arms.shape == (slots,) and arms.dtype.kind == "i"
    assert set(arms.tolist()) <= set(range(len(sizes)))
    assert np.bincount(arms, minlength=4).sum() == slots
    p = policy.allocate(5, slots)[0]
    assert p.shape == (4,) and np.isclose(p.sum(), 1.0) and np.all(p >= 0)
    np.testing.assert_array_equal(arms, policy.allocate(5, slots)[1])  # same epoch, same plan

    restored = make_policy(cfg, sizes, seed=7)
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert restored.state_dict() == policy.state_dict()
    for t in (5, 6):
        np.testing.assert_array_equal(restored.allocate(t, slots)[1], policy.allocate(t, slots)[1])
        np.testing.assert_allclose(restored.allocate(t, slots)[0], policy.allocate(t, slots)[0])
    feedback = bernoulli_groups(policy.allocate(6, slots)[1], [0.1, 0.5, 0.7, 0.0], 4, np.random.default_rng(9))
    assert restored.update(feedback) == policy.update(feedback)
    np.testing.assert_array_equal(restored.allocate(7, slots)[1], policy.allocate(7, slots)[1])


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_plans_other_seed_other_plans(name: str) -> None:
    plans = [make_policy(BanditConfig(policy=name), [3, 3, 3], seed=s).allocate(0, 64)[1] for s in (1, 1, 2)]
    np.testing.assert_array_equal(plans[0], plans[1])
    assert not np.array_equal(plans[0], plans[2])


def test_state_dict_of_another_policy_or_seed_is_refused() -> None:
    state = make_policy(BanditConfig(policy="sec"), [2, 2], seed=0).state_dict()
    with pytest.raises(ValueError, match="'policy'"):
        make_policy(BanditConfig(policy="ucb"), [2, 2], seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="'seed'"):
        make_policy(BanditConfig(policy="sec"), [2, 2], seed=1).load_state_dict(state)


@pytest.mark.parametrize("name", FLOORED)
def test_floor_keeps_every_arm_at_least_eps_over_k(name: str) -> None:
    cfg = BanditConfig(policy=name, floor=0.2)
    p = simulate(make_policy(cfg, [2] * 4, seed=0), [0.0, 0.5, 1.0, 0.5], epochs=6)
    assert np.all(p >= 0.2 / 4 - 1e-12)
    assert p.max() > 0.2 / 4 + 0.1  # the floor is a floor, not the whole allocation


def test_uniform_is_proportional_to_cluster_sizes() -> None:
    policy = make_policy(BanditConfig(policy="uniform"), [1, 3, 6], seed=0)
    np.testing.assert_allclose(policy.allocate(0, 10)[0], [0.1, 0.3, 0.6])
    shares = np.bincount(policy.allocate(0, 20_000)[1], minlength=3) / 20_000
    np.testing.assert_allclose(shares, [0.1, 0.3, 0.6], atol=0.015)


def test_draw_slots_never_draws_zero_probability_arms() -> None:
    arms = draw_slots(np.array([0.5, 0.0, 0.5]), 5000, np.random.default_rng(0))
    assert 1 not in arms and len(arms) == 5000
    with pytest.raises(ValueError, match="probability vector"):
        draw_slots(np.array([0.5, 0.6]), 3, np.random.default_rng(0))


# --- feedback equals a hand count


def test_epoch_feedback_matches_a_hand_count() -> None:
    policy = make_policy(BanditConfig(policy="ts_lp"), [2, 2, 2], seed=0)
    metrics = policy.update([group(1, [1, 0, 0, 0]), group(1, [1, 1, 1, 1]), group(2, [0, 0, 0, 0]),
                             group(1, [0.01, 0, 1, 1])])
    assert metrics["bandit/arm_01/pulls"] == 3 and metrics["bandit/arm_00/pulls"] == 0
    assert metrics["bandit/groups"] == 4 and metrics["bandit/solve_rate"] == pytest.approx(7 / 16)
    assert metrics["bandit/arm_01/solve_rate"] == pytest.approx(7 / 12)  # 0.01 is partial credit, not solved
    assert metrics["bandit/arm_01/zero_std"] == pytest.approx(1 / 3)
    assert metrics["bandit/arm_02/solve_rate"] == 0.0 and metrics["bandit/arm_02/zero_std"] == 1.0
    assert metrics["bandit/arm_02/abs_adv"] == 0.0
    assert "bandit/arm_00/solve_rate" not in metrics  # no rollouts, no rate
    assert metrics["bandit/zero_std"] == pytest.approx(2 / 4)
    # (1, 0, 0, 0): sum |r - mean| = 1.5, unbiased std = 0.5 (a population std would give 0.433).
    a_first = 1.5 / (0.5 + 1e-4)
    a_third = np.abs(group_advantages([0.01, 0, 1, 1])).sum()
    assert metrics["bandit/arm_01/abs_adv"] == pytest.approx((a_first + 0 + a_third) / 12)
    policy.update([group(1, [1, 1, 0, 0])])
    assert policy.N[1] == pytest.approx(0.9 * 3 + 1) and policy.O[1] == pytest.approx(0.9 * 12 + 4)
    assert policy.Y[1] == pytest.approx(0.9 * 7 + 2)
    assert policy.smoothed_solve_rates()[1] == pytest.approx((0.9 * 7 + 2 + 1) / (0.9 * 12 + 4 + 2))
    assert policy.history == [[], [7 / 12, 0.5], [0.0]]


def test_group_advantages_match_trl_scaling() -> None:
    # TRL: (r - mean) / (nanstd + 1e-4), nanstd with Bessel's correction.
    r = np.array([0.0, 1.0, 1.0])
    expected = (r - r.mean()) / (np.sqrt(((r - r.mean()) ** 2).sum() / 2) + 1e-4)
    np.testing.assert_allclose(group_advantages(r), expected)


def test_learning_progress_window_and_modes() -> None:
    policy = make_policy(BanditConfig(policy="ts_lp", lp_window=2), [2, 2], seed=0)
    rising = [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]  # solve rates 0, .25, .5, .75
    for t, rewards in enumerate(rising):
        np.testing.assert_array_equal(policy.learning_progress(), [0.0, 0.0])  # fewer than 2w epochs
        policy.update([group(0, rewards)] + ([group(1, [1, 0])] if t % 2 else []))  # arm 1 pulled twice
    np.testing.assert_allclose(policy.learning_progress(), [0.5, 0.0])
    np.testing.assert_allclose(policy.normalised_learning_progress(), [1.0, 0.0])
    signed = make_policy(BanditConfig(policy="ts_lp", lp_mode="signed"), [2], seed=0)
    for rewards in reversed(rising):
        signed.update([group(0, rewards)])
    assert signed.learning_progress()[0] == 0.0  # a falling solve rate is no progress in signed mode
    absolute = make_policy(BanditConfig(policy="ts_lp"), [2], seed=0)
    absolute.load_state_dict({**signed.state_dict(), "policy": "ts_lp"})
    assert absolute.learning_progress()[0] == pytest.approx(0.5)


def test_prior_from_curation_shifts_the_smoothed_rate() -> None:
    policy = make_policy(BanditConfig(prior_strength=8.0), [2, 2], seed=0, prior_solve_rates=[0.25, 1.0])
    np.testing.assert_allclose(policy.smoothed_solve_rates(), [3 / 10, 9 / 10])
    with pytest.raises(ValueError, match="needs prior_solve_rates"):
        make_policy(BanditConfig(prior_strength=8.0), [2, 2], seed=0)


def test_missing_prior_is_no_prior_not_never_solved() -> None:
    from space.train.epoch import arm_priors

    priors = arm_priors([{"ref_solve_rate": 0.25}, {"ref_solve_rate": None}, {"ref_solve_rate": 0.0}])
    assert priors == [0.25, None, 0.0]
    policy = make_policy(BanditConfig(prior_strength=8.0), [2, 2, 2], seed=0, prior_solve_rates=priors)
    # arm 1: a0 = b0 = 1, smoothed rate 1/2 (no prior); arm 2 measured never solved: 1 / 10
    np.testing.assert_allclose(policy.smoothed_solve_rates(), [3 / 10, 1 / 2, 1 / 10])


# --- behaviour in seeded Bernoulli worlds

WORLD = [0.05, 0.3, 0.5, 0.75, 0.95]


@pytest.mark.parametrize("posterior", ["gaussian", "beta"])
def test_learnability_concentrates_on_the_arm_nearest_half(posterior: str) -> None:
    p = simulate(make_policy(BanditConfig(policy="learnability", posterior=posterior), [4] * 5, seed=0), WORLD, 10)
    assert p.argmax() == 2 and p[2] > 0.6


@pytest.mark.parametrize("posterior", ["gaussian", "beta"])
def test_ts_hard_concentrates_on_the_hardest_arm(posterior: str) -> None:
    p = simulate(make_policy(BanditConfig(policy="ts_hard", posterior=posterior), [4] * 5, seed=0), WORLD, 10)
    assert p.argmax() == 0 and p[0] > 0.6


def test_ts_lp_target_term_alone_acts_like_learnability_and_lp_alone_follows_progress() -> None:
    p = simulate(make_policy(BanditConfig(policy="ts_lp", lp_weight=0.0), [4] * 5, seed=0), WORLD, 10)
    assert p.argmax() == 2 and p[2] > 0.6
    policy = make_policy(BanditConfig(policy="ts_lp", lp_weight=1.0, lp_window=1), [2, 2], seed=0)
    policy.update([group(0, [0, 0, 0, 0]), group(1, [1, 1, 0, 0])])
    policy.update([group(0, [1, 1, 1, 0]), group(1, [1, 1, 0, 0])])  # arm 0 improves, arm 1 flat
    np.testing.assert_allclose(policy.allocate(2, 16)[0], [0.975, 0.025])  # all wins, then the floor


def test_ts_hard_failure_mode_versus_learnability() -> None:
    world = [0.0, 0.5, 0.9]  # arm 0 never solved: zero-variance groups, no gradient
    hard = make_policy(BanditConfig(policy="ts_hard"), [4] * 3, seed=0)
    p_hard = simulate(hard, world, epochs=8)
    assert p_hard[0] > 0.9  # the all-zero arm keeps winning
    rng = np.random.default_rng(5)
    metrics = hard.update(bernoulli_groups(hard.allocate(8, 32)[1], world, 4, rng))
    assert metrics["bandit/arm_00/zero_std"] == 1.0 and metrics["bandit/arm_00/abs_adv"] == 0.0
    p_learn = simulate(make_policy(BanditConfig(policy="learnability"), [4] * 3, seed=0), world, epochs=8)
    assert p_learn[0] < 0.05 / 3 + 0.02  # scored near zero: only the floor keeps it measured
    assert p_learn.argmax() == 1


def test_ucb_serves_unpulled_arms_first_and_learns_the_reward() -> None:
    cfg = BanditConfig(policy="ucb", floor=0.0)
    policy = make_policy(cfg, [2] * 4, seed=0)
    np.testing.assert_array_equal(np.sort(policy.allocate(0, 4)[1]), [0, 1, 2, 3])
    np.testing.assert_allclose(policy.allocate(0, 8)[0], [0.25] * 4)  # virtual pulls spread the batch
    for _ in range(3):
        policy.update([group(0, [0, 0, 0, 0]), group(1, [1, 1, 0, 0]), group(2, [1, 1, 1, 1]), group(3, [1, 0, 0, 0])])
    np.testing.assert_allclose(policy.arm_values(), [0.0, 1.0, 0.0, 0.75])  # 4s(1-s)
    counts = np.bincount(policy.allocate(3, 40)[1], minlength=4)
    assert counts.argmax() == 1 and counts[1] > counts[3] > max(counts[0], counts[2])
    np.testing.assert_allclose(policy.allocate(3, 40)[0], counts / 40)  # realised shares


def test_ucb_floor_reserves_rotating_slots() -> None:
    served = {}
    for floor in (0.0, 0.25):
        policy = make_policy(BanditConfig(policy="ucb", floor=floor), [2] * 2, seed=0)
        for _ in range(3):  # arm 0 at solve rate 0.5 (reward 1), arm 1 never solved (reward 0), equal pulls
            policy.update([group(0, [1, 1, 0, 0])] * 8 + [group(1, [0, 0, 0, 0])] * 8)
        served[floor] = sum(np.bincount(policy.allocate(t, 8)[1], minlength=2)[1] for t in range(4))
    assert served[0.0] == 0  # the bonus alone does not reach arm 1 yet
    assert served[0.25] == 0.25 * 8 * 4 / 2  # round(eps * slots) reserved slots, rotating over the arms


def test_ucb_floor_explores_at_eight_slots_over_epochs() -> None:
    """eps * M = 0.4 at the default floor and M = 8: rounding it per epoch reserved nothing, ever."""
    policy = make_policy(BanditConfig(policy="ucb", ucb_c=0.0), [2] * 4, seed=0)  # c = 0: greedy but for the floor
    unsolved = [group(k, [0, 0, 0, 0]) for k in (1, 2, 3) for _ in range(8)]
    for _ in range(3):  # arm 0 at solve rate 0.5 (reward 1), arms 1-3 never solved (reward 0)
        policy.update([group(0, [1, 1, 0, 0])] * 8 + unsolved)
    served = [int((policy.allocate(t, 8)[1] != 0).sum()) for t in range(10)]
    # floor(0.05 * 8 * t) slots reserved in total after t epochs: epochs 2, 4, 7, 9 reserve one slot each,
    # for arms 0, 1, 2, 3 in turn; every other slot goes to arm 0
    assert served == [0, 0, 0, 0, 1, 0, 0, 1, 0, 1]


def test_exp3_update_follows_importance_weighted_reward() -> None:
    policy = make_policy(BanditConfig(policy="exp3"), [2, 2], seed=0)
    np.testing.assert_allclose(policy.allocate(0, 2)[0], [0.5, 0.5])
    policy.update([group(0, [1, 1, 0, 0]), group(0, [1, 0, 1, 0])])  # two slots, both arm 0, learnability 1
    # two rounds of EXP3: rho_hat_0 = (1 + 1) / 0.5 = 4; log w_0 += 0.1 * 4 / 2 = 0.2
    np.testing.assert_allclose(policy.log_w, [0.0, -0.2])
    w = np.exp([0.2, 0.0]) / np.exp([0.2, 0.0]).sum()
    np.testing.assert_allclose(policy.allocate(1, 2)[0], 0.9 * w + 0.05)
    shares = []
    for t in range(60):
        policy.update([group(0, [1, 1, 0, 0]), group(1, [1, 1, 1, 1])])
        shares.append(policy.allocate(t + 2, 2)[0][0])
    assert np.all(np.diff(shares) > 0) and shares[-1] > 0.8
    assert policy.allocate(62, 2)[0][1] >= 0.05 - 1e-12  # eta/K mixing replaces the floor


def test_sec_td_update_and_softmax() -> None:
    policy = make_policy(BanditConfig(policy="sec"), [2, 2, 2], seed=0)
    policy.update([group(0, [1, 0, 0, 0]), group(2, [1, 1, 1, 1])])
    a0 = 1.5 / (0.5 + 1e-4) / 4
    np.testing.assert_allclose(policy.Q, [0.5 * a0, 0.0, 0.0])  # arm 1 not pulled: unchanged
    policy.update([group(0, [1, 0, 0, 0])])
    np.testing.assert_allclose(policy.Q, [0.75 * a0, 0.0, 0.0])
    q = np.array([0.75 * a0, 0.0, 0.0]) / 0.4
    expected = 0.95 * np.exp(q) / np.exp(q).sum() + 0.05 / 3
    np.testing.assert_allclose(policy.allocate(2, 8)[0], expected)


def test_arm_table_rows_are_json_ready() -> None:
    policy = make_policy(BanditConfig(policy="ucb"), [3, 2], seed=0)
    policy.update([group(0, [1, 0]), group(0, [1, 1])])
    rows = policy.arm_table()
    assert [r["arm"] for r in rows] == [0, 1] and rows[0]["size"] == 3 and rows[1]["last_solve_rate"] is None
    assert rows[0]["last_solve_rate"] == 0.75 and rows[0]["epochs_pulled"] == 1
    json.dumps(rows)


def test_clipped_posterior_ties_are_broken_at_random() -> None:
    # Two never-solved arms: most Gaussian samples clip to 0 for both, so argmax ties are the norm.
    policy = make_policy(BanditConfig(policy="ts_hard", floor=0.0), [2, 2], seed=0)
    for _ in range(4):
        policy.update([group(0, [0, 0, 0, 0])] * 8 + [group(1, [0, 0, 0, 0])] * 8)
    p = policy.allocate(4, 2000)[0]
    assert abs(p[0] - 0.5) < 0.05
