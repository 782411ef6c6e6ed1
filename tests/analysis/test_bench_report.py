"""Bench report on synthetic cell results with known numbers: table values, paired differences, figures."""

import math

import numpy as np
import pytest
from scipy.stats import t

from space.analysis.bench_plots import write_figures
from space.analysis.bench_report import (arm_rows, json_safe, mean_curve, paired_curve, report_markdown, summarise_cell,
                                        table_markdown)

T2 = t.ppf(0.975, 2)  # 4.3027: three seeds


def _metrics(greedy, pass1):
    return {"eval/all/greedy_acc": greedy, "eval/all/pass_at_1": pass1}


def _training(pass1_curve, greedy_final, zero_std, unique, evaluated=(0, 1)):
    """Two epochs of 10 steps and 80 rollouts each; base pass@1 0.5, greedy 0.6."""
    epochs = [{"epoch": e, "metrics": {"global_step": 10.0 * (e + 1), "rollouts": 80.0,
                                       "frac_reward_zero_std": zero_std[e], "seconds/epoch": 4.0 + e}} for e in range(2)]
    evals = [{"epoch": e, "metrics": _metrics(greedy_final, pass1_curve[e])} for e in evaluated]
    return {"epochs": epochs, "epoch_evals": evals, "base_eval": {"metrics": _metrics(0.6, 0.5)},
            "final_eval": {"metrics": _metrics(greedy_final, pass1_curve[-1])}, "unique_prompts": unique}


def _cells():
    ref = [((0.55, 0.60), 0.60), ((0.56, 0.62), 0.62), ((0.54, 0.58), 0.58)]
    arm = [((0.60, 0.61), 0.65), ((0.59, 0.64), 0.65), ((0.58, 0.58), 0.65)]
    cells = []
    for seed, (curve, greedy) in enumerate(ref):
        cells.append(summarise_cell("uniform-full", seed, _training(curve, greedy, (0.6, 0.4), 160), {}, 100.0 + seed))
    for seed, (curve, greedy) in enumerate(arm):
        cells.append(summarise_cell("spaCe", seed, _training(curve, greedy, (0.2, 0.4), 16), {}, 50.0))
    return cells


def test_summarise_cell_builds_the_curve_from_base_and_each_evaluated_epoch():
    cell = summarise_cell("x", 0, _training((0.55, 0.6), 0.6, (0.6, 0.4), 7), {}, 3.0)
    assert [(p["step"], p["rollouts"], p["pass1"]) for p in cell["curve"]] == [(0, 0, 0.5), (10, 80, 0.55),
                                                                               (20, 160, 0.6)]
    assert [e["effective_group_frac"] for e in cell["epochs"]] == pytest.approx([0.4, 0.6])
    assert cell["final"] == {"greedy": 0.6, "pass1": 0.6} and cell["base"] == {"greedy": 0.6, "pass1": 0.5}


def test_summarise_cell_adds_the_final_eval_when_the_last_epoch_was_not_scheduled():
    cell = summarise_cell("x", 0, _training((0.55, 0.6), 0.6, (0.6, 0.4), 7, evaluated=(0,)), {}, 3.0)
    assert [p["step"] for p in cell["curve"]] == [0, 10, 20] and cell["curve"][-1]["pass1"] == 0.6


def test_rows_hold_seed_intervals_paired_differences_and_efficiency():
    rows = {r["arm"]: r for r in arm_rows(_cells(), reference="uniform-full")}
    ref, arm = rows["uniform-full"], rows["spaCe"]
    # reference finals 0.60, 0.62, 0.58: mean 0.60, sd 0.02
    assert (ref["final_pass1"], ref["final_pass1_lo"], ref["final_pass1_hi"]) == pytest.approx(
        (0.60, 0.60 - T2 * 0.02 / np.sqrt(3), 0.60 + T2 * 0.02 / np.sqrt(3)))
    # arm minus reference by seed: 0.01, 0.02, 0.00 -> mean 0.01, sd 0.01
    assert (arm["vs_ref_pass1"], arm["vs_ref_pass1_hi"]) == pytest.approx((0.01, 0.01 + T2 * 0.01 / np.sqrt(3)))
    # greedy: 0.65 against 0.60, 0.62, 0.58 -> differences 0.05, 0.03, 0.07, sd 0.02
    assert (arm["vs_ref_greedy"], arm["vs_ref_greedy_lo"]) == pytest.approx((0.05, 0.05 - T2 * 0.02 / np.sqrt(3)))
    assert math.isnan(ref["vs_ref_pass1"]) and arm["paired_seeds"] == 3
    # threshold 0.5 + 0.9 * 0.10 = 0.59: the arm's seed mean is 0.59 at step 10, the reference's 0.55 then 0.60
    assert (arm["steps_to_90"], arm["rollouts_to_90"]) == (10, 80)
    assert (ref["steps_to_90"], ref["rollouts_to_90"]) == (20, 160)
    assert arm["effective_group_frac"] == pytest.approx(0.7) and ref["effective_group_frac"] == pytest.approx(0.5)
    assert (arm["unique_prompts"], ref["unique_prompts"]) == (16, 160)
    assert ref["seconds"] == pytest.approx(101.0) and ref["train_seconds"] == pytest.approx(9.0)
    assert arm["gain_pass1"] == pytest.approx(0.11)


def test_markdown_table_shows_the_numbers_and_says_whether_the_ci_excludes_zero():
    rows = arm_rows(_cells(), reference="uniform-full", order=["uniform-full", "spaCe"])
    table = table_markdown(rows)
    lines = table.splitlines()
    assert lines[2].startswith("| uniform-full | 3 | 160.0 | n/a | n/a | 0.500 | 0.600 [0.550, 0.650] |")
    half = T2 * 0.01 / np.sqrt(3)
    assert f"+0.010 [{0.01 - half:+.3f}, {0.01 + half:+.3f}]" in lines[3]
    text = report_markdown("synthetic", rows, "uniform-full", ["train.epochs=2"], ["pass1_vs_step.png"])
    assert "interval includes 0" in text and "![pass1_vs_step](pass1_vs_step.png)" in text


def test_rows_carry_holm_p_steps_to_the_reference_final_seeds_below_base_and_curation_spend():
    gains = [{"pass_at_1": {"hi": -0.01}, "greedy_acc": {"hi": 0.02}}, {"pass_at_1": {"hi": 0.03},
              "greedy_acc": {"hi": 0.01}}, {"pass_at_1": {"hi": 0.02}, "greedy_acc": {"hi": -0.02}}]
    cells = [c for c in _cells() if c["arm"] == "uniform-full"]
    for seed, (curve, greedy) in enumerate([((0.60, 0.61), 0.65), ((0.59, 0.64), 0.65), ((0.58, 0.58), 0.65)]):
        cells.append(summarise_cell("spaCe", seed, _training(curve, greedy, (0.2, 0.4), 16), gains[seed], 50.0,
                                    curation={"difficulty_rollouts": 800, "pool": 160, "selected": 16}))
    cells.append(summarise_cell("other", 0, _training((0.5, 0.5), 0.6, (0.2, 0.4), 16), {}, 1.0))
    rows = {r["arm"]: r for r in arm_rows(cells, reference="uniform-full")}
    arm = rows["spaCe"]
    assert arm["below_base"] == "1 / 1" and arm["curation_rollouts"] == 800 and arm["pool_share"] == pytest.approx(0.1)
    # paired diffs 0.01, 0.02, 0.00 -> t = 1.732 on 2 df; a family of one (`other` has one seed: p undefined)
    assert arm["vs_ref_pass1_p"] == pytest.approx(0.2254, abs=1e-3)
    assert arm["vs_ref_pass1_p_holm"] == pytest.approx(arm["vs_ref_pass1_p"])
    assert math.isnan(rows["other"]["vs_ref_pass1_p_holm"])
    # reference gain 0.10 from base 0.5: the arm's seed mean (0.59 at step 10, 0.61 at 20) reaches 0.6 at 20
    assert arm["steps_to_ref"] == 20 and arm["steps_to_ref_lo"] == 10 and math.isinf(arm["steps_to_ref_hi"])


def test_one_seed_gives_undefined_intervals_not_zero_width_ones():
    cells = [c for c in _cells() if c["seed"] == 0]
    rows = {r["arm"]: r for r in arm_rows(cells, reference="uniform-full")}
    assert math.isnan(rows["spaCe"]["final_pass1_lo"]) and rows["spaCe"]["final_pass1"] == pytest.approx(0.61)
    assert "0.610 [n/a, n/a]" in table_markdown(list(rows.values()))


def test_missing_reference_and_duplicate_cells_are_errors():
    with pytest.raises(ValueError, match="reference arm 'nope'"):
        arm_rows(_cells(), reference="nope")
    with pytest.raises(ValueError, match="two results for arm 'spaCe' seed 0"):
        arm_rows(_cells() + [_cells()[-1] | {"seed": 0}], reference="uniform-full")


def test_mean_curve_bands_span_the_seeds():
    curve = mean_curve([c for c in _cells() if c["arm"] == "uniform-full"], "step", "pass1")
    assert curve["x"].tolist() == [0, 10, 20]
    assert curve["mean"] == pytest.approx([0.5, 0.55, 0.60])
    assert curve["lo"].tolist() == [0.5, 0.54, 0.58] and curve["hi"].tolist() == [0.5, 0.56, 0.62]


def test_figures_are_written_as_png(tmp_path):
    cells = _cells()
    paths = write_figures(cells, arm_rows(cells, reference="uniform-full"), tmp_path)
    assert {p.name for p in paths} == {"pass1_vs_step.png", "greedy_vs_step.png", "pass1_vs_rollouts.png",
                                       "greedy_vs_rollouts.png", "effective_groups.png", "final_accuracy.png"}
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_json_safe_turns_nan_into_none():
    assert json_safe({"a": [float("nan"), np.float32(0.5)], "b": np.int64(3)}) == {"a": [None, 0.5], "b": 3}


def test_paired_curve_differences_each_evaluated_step_by_seed():
    # arm minus reference at step 10: 0.05, 0.03, 0.04 (mean 0.04, sd 0.01); at step 20: 0.01, 0.02, 0.00
    curve = paired_curve(_cells(), "spaCe", "uniform-full")
    assert [(r["step"], r["seeds"]) for r in curve] == [(0, [0, 1, 2]), (10, [0, 1, 2]), (20, [0, 1, 2])]
    assert (curve[0]["diff"], curve[0]["lo"], curve[0]["hi"]) == pytest.approx((0.0, 0.0, 0.0))
    assert (curve[1]["diff"], curve[1]["lo"]) == pytest.approx((0.04, 0.04 - T2 * 0.01 / np.sqrt(3)))
    assert (curve[2]["diff"], curve[2]["hi"]) == pytest.approx((0.01, 0.01 + T2 * 0.01 / np.sqrt(3)))


def test_paired_curve_uses_only_the_seeds_both_arms_ran_and_is_empty_without_any():
    cells = [c for c in _cells() if not (c["arm"] == "spaCe" and c["seed"] == 1)]
    assert paired_curve(cells, "spaCe", "uniform-full")[-1]["seeds"] == [0, 2]
    assert paired_curve(cells, "spaCe", "no-such-arm") == []


def test_per_task_rows_pair_each_task_with_the_reference_by_seed():
    from space.analysis.bench_report import task_rows, task_table_markdown

    def training(finals):
        t = _training((0.55, 0.6), 0.6, (0.6, 0.4), 7)
        base = t["base_eval"]["metrics"]
        t["base_eval"]["metrics"] = {**base, "eval/pal/pass_at_1": 0.3, "eval/rev/pass_at_1": 0.5}
        t["final_eval"]["metrics"] = {**t["final_eval"]["metrics"], "eval/pal/pass_at_1": finals[0],
                                      "eval/rev/pass_at_1": finals[1]}
        return t

    cells = [summarise_cell("ref", s, training(f), {}, 1.0) for s, f in enumerate([(0.4, 0.6), (0.5, 0.6)])]
    cells += [summarise_cell("arm", s, training(f), {}, 1.0) for s, f in enumerate([(0.5, 0.5), (0.5, 0.7)])]
    assert cells[0]["tasks"] == {"pal": {"base": 0.3, "final": 0.4}, "rev": {"base": 0.5, "final": 0.6}}
    rows = {(r["arm"], r["task"]): r for r in task_rows(cells, "ref")}
    assert rows[("arm", "pal")]["vs_ref"] == pytest.approx(0.05)  # +0.1 and 0.0 by seed
    assert rows[("arm", "rev")]["final_pass1"] == pytest.approx(0.6) and math.isnan(rows[("ref", "pal")]["vs_ref"])
    table = task_table_markdown(list(rows.values()))
    assert "| ref | 0.450 | 0.600 |" in table and "| arm | 0.500 (+0.050 [" in table
