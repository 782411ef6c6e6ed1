"""space/analysis/gain.py: the paired gain of a run over its base model, matched by prompt id."""

from __future__ import annotations

import polars as pl
import pytest

from space.analysis.gain import paired_gain


def test_paired_gain_matches_prompts_by_id_and_drops_unjudged_ones():
    base = pl.DataFrame({"prompt_id": ["a", "b", "c", "d"], "pass1": [0.0, 0.5, None, 1.0]})
    final = pl.DataFrame({"prompt_id": ["d", "c", "b", "a"], "pass1": [1.0, 0.25, 0.75, 0.25]})
    gain = paired_gain(base, final)
    # differences a: +0.25, b: +0.25, d: 0 (c unjudged at base). Resampled means of three: the smallest, 0,
    # has probability (1/3)^3 = 3.7% > 2.5% and the largest, 0.25, (2/3)^3 = 30%: the interval is [0, 0.25]
    assert gain == pytest.approx({"base": 0.5, "final": 2 / 3, "diff": 1 / 6, "lo": 0.0, "hi": 0.25,
                                  "prompts": 3, "dropped": 1})


def test_paired_gain_needs_the_column_in_both_tables():
    table = pl.DataFrame({"prompt_id": ["a"], "pass1": [0.5]})
    with pytest.raises(ValueError, match="final eval table lacks columns \\['greedy'\\]"):
        paired_gain(table.with_columns(greedy=pl.lit(1.0)), table, column="greedy")
