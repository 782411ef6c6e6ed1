"""Statistics against hand-computed cases: exact bootstrap distributions of tiny vectors, t-table values."""

import numpy as np
import pytest

from space.analysis.stats import bootstrap_ci, describe_difference, paired_bootstrap_ci, seed_interval, steps_to_fraction


def test_bootstrap_of_a_constant_is_a_zero_width_interval_at_the_constant():
    assert bootstrap_ci([0.3] * 7) == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_of_zero_one_spans_zero_to_one():
    # resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% points
    # of that distribution are 0 and 1
    assert bootstrap_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)


def test_bootstrap_of_one_success_in_four_matches_the_binomial_quantiles():
    # resampled mean = Binomial(4, 1/4) / 4: P(0) = 0.316, cumulative P(<= 0.5) = 0.949, P(<= 0.75) = 0.996,
    # so the 95% percentile interval is [0, 0.75]
    assert bootstrap_ci([0.0, 0.0, 1.0, 0.0]) == (0.25, 0.0, 0.75)


def test_bootstrap_is_seeded_and_narrows_with_more_items():
    rng = np.random.default_rng(1)
    small, large = rng.random(20), rng.random(2000)
    assert bootstrap_ci(small, seed=4) == bootstrap_ci(small, seed=4)
    width = lambda ci: ci[2] - ci[1]  # noqa: E731
    assert width(bootstrap_ci(large)) < width(bootstrap_ci(small)) / 5


def test_paired_constant_difference_has_zero_width_even_when_items_vary_widely():
    before = np.array([0.0, 0.9, 0.1, 0.75, 0.5, 0.25])
    assert paired_bootstrap_ci(before, before + 0.125) == pytest.approx((0.125, 0.125, 0.125))
    # unpaired, the same data gives a wide interval: pairing is what removes the between-item spread
    _, lo, hi = bootstrap_ci(before + 0.125)
    assert hi - lo > 0.3


def test_paired_difference_of_half_the_items_improving():
    # differences [1, 0, 1, 0]: resampled mean = Binomial(4, 1/2) / 4, whose 2.5% / 97.5% points are 0 and 1
    assert paired_bootstrap_ci([0, 1, 0, 1], [1, 1, 1, 1]) == (0.5, 0.0, 1.0)


def test_paired_rejects_unequal_lengths_and_nan():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap_ci([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap_ci([0, np.nan], [0, 1])


def test_seed_interval_matches_the_t_table():
    # mean 2.5, sample sd sqrt(5/3) = 1.29099, t_{0.975, 3} = 3.182 (printed t table): half-width 2.0542
    mean, lo, hi = seed_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert (hi - mean) == pytest.approx(3.182446 * np.sqrt(5 / 3) / 2, rel=1e-6)
    assert (mean - lo) == pytest.approx(2.0542, abs=1e-4)


def test_seed_interval_matches_scipy_t_ppf_at_90_percent():
    from scipy.stats import t

    values = [0.51, 0.55, 0.49, 0.58, 0.52]
    half = t.ppf(0.95, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert seed_interval(values, confidence=0.9) == pytest.approx((0.53, 0.53 - half, 0.53 + half))


def test_seed_interval_of_one_seed_has_undefined_bounds():
    mean, lo, hi = seed_interval([0.6])
    assert mean == 0.6 and np.isnan(lo) and np.isnan(hi)


def test_seed_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [lo <= 0.5 <= hi for lo, hi in (seed_interval(rng.normal(0.5, 0.1, 3))[1:] for _ in range(4000))]
    assert 0.935 <= np.mean(covered) <= 0.965


def test_steps_to_fraction_finds_the_first_crossing():
    steps = [0, 10, 20, 30]
    # threshold 0.5 + 0.9 * 0.1 = 0.59
    assert steps_to_fraction(steps, [0.5, 0.52, 0.56, 0.6], base=0.5, target=0.6) == 30
    assert steps_to_fraction(steps, [0.5, 0.6, 0.55, 0.6], base=0.5, target=0.6) == 10
    assert np.isnan(steps_to_fraction(steps, [0.5, 0.52, 0.56, 0.58], base=0.5, target=0.6))


def test_steps_to_fraction_is_undefined_without_a_positive_reference_gain():
    assert np.isnan(steps_to_fraction([0, 1], [0.5, 0.7], base=0.5, target=0.5))
    assert np.isnan(steps_to_fraction([0, 1], [0.5, 0.7], base=0.5, target=0.4))


def test_describe_difference_says_whether_zero_is_excluded():
    assert "above 0" in describe_difference(0.05, 0.01, 0.09)
    assert "below 0" in describe_difference(-0.05, -0.09, -0.01)
    assert "includes 0" in describe_difference(0.01, -0.02, 0.04)
    assert "no interval" in describe_difference(0.01, float("nan"), float("nan"))


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    from space.analysis.stats import holm_adjust

    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (running max)
    assert holm_adjust([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = holm_adjust([float("nan"), 0.02])
    assert np.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.02)  # a family of one


def test_paired_t_pvalue_matches_the_t_distribution() -> None:
    from scipy.stats import t

    from space.analysis.stats import paired_t_pvalue

    diffs = [0.01, 0.03, 0.02, 0.04]
    stat = np.mean(diffs) / (np.std(diffs, ddof=1) / 2)
    assert paired_t_pvalue(diffs) == pytest.approx(2 * t.sf(stat, 3))
    assert np.isnan(paired_t_pvalue([0.1])) and np.isnan(paired_t_pvalue([0.1, 0.1]))


def test_bootstrap_steps_to_target_brackets_the_seed_mean_answer() -> None:
    from space.analysis.stats import bootstrap_steps_to

    steps = [0, 32, 64, 96]
    curves = [(steps, [0.4, 0.45, 0.5, 0.5]), (steps, [0.4, 0.42, 0.48, 0.52]), (steps, [0.4, 0.5, 0.5, 0.5])]
    point, lo, hi = bootstrap_steps_to(curves, base=0.4, target=0.5, fraction=0.9)
    # seed means 0.4, 0.457, 0.493, 0.507: 0.49 is first reached at step 64
    assert point == 64 and lo == 32 and hi in (64.0, 96.0)
    never = bootstrap_steps_to([(steps, [0.4] * 4)] * 2, base=0.4, target=0.5)
    assert never == (np.inf, np.inf, np.inf)
    with pytest.raises(ValueError, match="same steps"):
        bootstrap_steps_to([(steps, [0.4] * 4), ([0, 1, 2, 3], [0.4] * 4)], 0.4, 0.5)
