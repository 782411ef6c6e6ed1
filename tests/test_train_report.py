"""tasks/train_report.py: the training report reads per-arm results as data (arm ids in the rows)."""

import math

from tasks.train_report import arm_matrix, epoch_summary

EPOCHS = [
    {"epoch": 0, "metrics": {"reward/mean": 0.25, "truncated/all": 0.0, "bandit/arm_00/pulls": 3.0},
     "arm_rows": [{"arm": 0, "share": 0.75, "solve_rate": 0.5}, {"arm": 1, "share": 0.25, "solve_rate": None}]},
    {"epoch": 1, "metrics": {"reward/mean": 0.5, "truncated/all": 0.125},
     "arm_rows": [{"arm": 1, "share": 0.5, "solve_rate": 1.0}, {"arm": 0, "share": 0.5, "solve_rate": 0.0}]},
]


def test_arm_matrix_is_arms_by_epochs_keyed_by_arm_id_with_nan_for_missing():
    assert arm_matrix(EPOCHS, "share") == [[0.75, 0.5], [0.25, 0.5]]
    solve = arm_matrix(EPOCHS, "solve_rate")
    assert solve[0] == [0.5, 0.0] and math.isnan(solve[1][0]) and solve[1][1] == 1.0


def test_epoch_summary_has_reward_truncation_and_each_arms_share():
    assert epoch_summary(EPOCHS[1]) == {"epoch": 1, "reward/mean": 0.5, "truncated/all": 0.125,
                                        "bandit/arm_01/share": 0.5, "bandit/arm_00/share": 0.5}
