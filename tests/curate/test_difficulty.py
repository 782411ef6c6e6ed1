"""Tests for space.curate.difficulty with a fake generate_fn (fixed strings) and an exact-match verifier."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from space.curate.difficulty import (
    DifficultyConfig,
    VerifierError,
    difficulty_array,
    difficulty_from_label,
    difficulty_table_from_labels,
    estimate_difficulty,
    summarize_difficulty,
)
from space.engines import Completion
from space.data.verifiers import get_verifier

IDS = ["p0", "p1", "p2"]
PROMPTS = ["Q0", "Q1", "Q2"]
ANSWERS = ["4", "7", "9"]
META = ["{}", "{}", "{}"]
# fixed completions per prompt: p0 solved 3 of 4, p1 1 of 4, p2 0 of 4
FIXED = {
    "Q0": ["4", " 4 ", "5", "4"],
    "Q1": ["1", "7", "x", "8"],
    "Q2": ["0", "1", "2", "3"],
}


def exact_match(completions, *, answer, metadata=None, truncated=None):
    """1.0 for an exact match after stripping, 0.0 otherwise; None for '?' (cannot judge)."""
    return [None if c == "?" else float(c.strip() == a) for c, a in zip(completions, answer)]


class FakeEngine:
    """Returns fixed completions and records how it was called."""

    def __init__(self, fixed):
        self.fixed = fixed
        self.calls = []

    def generate(self, prompts, n, temperature, max_tokens, seed, prompt_ids):
        self.calls.append(
            {
                "prompts": list(prompts),
                "n": n,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "seed": seed,
                "prompt_ids": list(prompt_ids),
            }
        )
        return [list(self.fixed[p])[:n] for p in prompts]


def run(fixed=FIXED, verifier=exact_match, theta_solve=1.0, **cfg):
    engine = FakeEngine(fixed)
    cfg = DifficultyConfig(**{"k": 4, "max_tokens": 32, **cfg})
    per, roll = estimate_difficulty(IDS, PROMPTS, ANSWERS, META, engine.generate, verifier, cfg, seed=11,
                                    theta_solve=theta_solve)
    return per, roll, engine


def test_counts_match_hand_count():
    per, _roll, engine = run()
    assert per["prompt_id"].to_list() == IDS
    assert per["successes"].to_list() == [3, 1, 0]
    assert per["k"].to_list() == [4, 4, 4]
    assert per["unjudged"].to_list() == [0, 0, 0]
    assert per["solve_rate"].to_list() == [0.75, 0.25, 0.0]
    assert per["difficulty"].to_list() == [0.25, 0.75, 1.0]
    assert engine.calls == [
        {"prompts": PROMPTS, "n": 4, "temperature": 1.0, "max_tokens": 32, "seed": 11, "prompt_ids": IDS}
    ]


def test_rollouts_table():
    _, roll, _ = run()
    assert roll.schema == pl.Schema(
        {"prompt_id": pl.String, "sample": pl.Int64, "completion": pl.String, "score": pl.Float64, "solved": pl.Boolean,
         "truncated": pl.Boolean}
    )
    assert roll.height == 12
    p0 = roll.filter(pl.col("prompt_id") == "p0")
    assert p0["sample"].to_list() == [0, 1, 2, 3]
    assert p0["completion"].to_list() == FIXED["Q0"]
    assert p0["solved"].to_list() == [True, True, False, True]
    # per-prompt successes agree with the rollouts
    agg = roll.group_by("prompt_id", maintain_order=True).agg(pl.col("solved").sum())
    assert agg["solved"].to_list() == [3, 1, 0]


def test_engine_objects_with_text_are_accepted():
    @dataclass
    class Out:
        text: str
        finish_reason: str = "stop"

    per, roll, _ = run(fixed={q: [Out(c) for c in cs] for q, cs in FIXED.items()})
    assert per["successes"].to_list() == [3, 1, 0]
    assert roll["completion"].to_list()[:4] == FIXED["Q0"]
    assert per["truncated"].to_list() == [0, 0, 0] and not roll["truncated"].any()

    @dataclass
    class Bare:
        text: str

    with pytest.raises(TypeError, match="Bare has no finish_reason"):
        run(fixed={q: [Bare(c) for c in cs] for q, cs in FIXED.items()})


def test_truncated_rollouts_are_recorded_and_never_solved_by_fallback():
    """Q0's sample 0 is the gold answer '4' but hit max_tokens: judged, not solved, counted as truncated."""
    cut = {("Q0", 0), ("Q0", 1), ("Q1", 2)}
    fixed = {q: [Completion(c, 2, "length" if (q, j) in cut else "stop") for j, c in enumerate(cs)]
             for q, cs in FIXED.items()}
    per, roll, _ = run(fixed=fixed, verifier=get_verifier("exact", extract="none"))
    assert per["truncated"].to_list() == [2, 1, 0]
    assert per["successes"].to_list() == [1, 1, 0]  # without truncation 3, 1, 0
    assert per["unjudged"].to_list() == [0, 0, 0]  # judged, not errors or None
    p0 = roll.filter(pl.col("prompt_id") == "p0")
    assert p0["truncated"].to_list() == [True, True, False, False]
    assert p0["score"].to_list() == [0.0, 0.0, 0.0, 1.0]
    assert summarize_difficulty(per)["truncated_share"] == pytest.approx(3 / 12)


def test_solved_uses_threshold_not_raw_score():
    def partial(completions, *, answer, metadata=None, **_):
        return [1.0 if c.strip() == a else 0.01 for c, a in zip(completions, answer)]

    per, _roll, _ = run(verifier=partial)
    assert per["successes"].to_list() == [3, 1, 0]  # 0.01 is not solved
    per_low, _, _ = run(verifier=partial, theta_solve=0.005)
    assert per_low["successes"].to_list() == [4, 4, 4]


def test_unjudged_samples_are_counted_not_scored(caplog):
    fixed = {"Q0": ["4", "?", "5", "?"], "Q1": ["?", "?", "?", "?"], "Q2": ["9", "9", "1", "9"]}
    with caplog.at_level(logging.WARNING, logger="space.curate.difficulty"):
        per, roll, _ = run(fixed=fixed)
    assert per["unjudged"].to_list() == [2, 4, 0]
    assert per["successes"].to_list() == [1, 0, 3]
    assert per["solve_rate"].to_list() == [0.5, None, 0.75]  # over judged samples only
    assert per["difficulty"].to_list() == [0.5, None, 0.25]  # all-unjudged prompt: null, never 0 or 1
    p1 = roll.filter(pl.col("prompt_id") == "p1")
    assert p1["score"].null_count() == 4 and p1["solved"].null_count() == 4
    assert "6 samples could not be judged" in caplog.text and "p1" in caplog.text
    summary = summarize_difficulty(per)
    assert summary["null_prompts"] == 1.0
    assert summary["unjudged_samples"] == 6.0
    assert summary["mean"] == pytest.approx(0.375)


def test_verifier_exception_names_prompt():
    def fragile(completions, *, answer, metadata=None, **_):
        if answer[0] == "7":
            raise ZeroDivisionError("boom")
        return exact_match(completions, answer=answer)

    with pytest.raises(VerifierError, match=r"prompt_id='p1'.*ZeroDivisionError: boom") as info:
        run(verifier=fragile)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.prompt_id == "p1"


def test_verifier_receives_answer_and_metadata_per_sample():
    seen = []

    def recording(completions, *, answer, metadata=None, **_):
        seen.append((list(answer), list(metadata)))
        return [0.0] * len(completions)

    meta = [json.dumps({"i": i}) for i in range(3)]
    estimate_difficulty(
        IDS, PROMPTS, ANSWERS, meta, FakeEngine(FIXED).generate, recording, DifficultyConfig(k=2, max_tokens=8), seed=0
    )
    assert seen[1] == (["7", "7"], [meta[1], meta[1]])


def test_bad_shapes_and_scores_raise():
    short = {q: cs[:3] for q, cs in FIXED.items()}
    with pytest.raises(ValueError, match=r"3 samples for prompt_id='p0', expected k=4"):
        run(fixed=short)
    with pytest.raises(ValueError, match=r"returned nan for sample 0 of prompt_id='p0'"):
        run(verifier=lambda c, *, answer, metadata=None, **_: [float("nan")] * len(c))
    with pytest.raises(ValueError, match="duplicate prompt_id='p0'"):
        estimate_difficulty(
            ["p0", "p0"],
            ["Q0", "Q0"],
            ["4", "4"],
            ["{}", "{}"],
            FakeEngine(FIXED).generate,
            exact_match,
            DifficultyConfig(k=4, max_tokens=8),
            0,
        )
    with pytest.raises(ValueError, match="answers has 2 entries"):
        estimate_difficulty(
            IDS, PROMPTS, ANSWERS[:2], META, FakeEngine(FIXED).generate, exact_match, DifficultyConfig(k=4, max_tokens=8), 0
        )
    with pytest.raises(ValueError, match="difficulty_table_from_labels"):
        run(source="label")
    with pytest.raises(ValueError, match="max_tokens is None: resolve the recipe"):
        estimate_difficulty(IDS, PROMPTS, ANSWERS, META, FakeEngine(FIXED).generate, exact_match,
                            DifficultyConfig(k=4), 0)


def test_difficulty_from_label_rescales():
    np.testing.assert_allclose(difficulty_from_label([1, 3, 5]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(difficulty_from_label([1, 2, 5], low=1, high=5), [0.0, 0.25, 1.0])
    out = difficulty_from_label([2, None, 4])
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 1.0
    np.testing.assert_allclose(difficulty_from_label([3, 3]), [0.5, 0.5])
    with pytest.raises(ValueError, match="below"):
        difficulty_from_label([1, 2], low=5, high=1)


def test_difficulty_table_from_labels_column_and_metadata():
    data = pl.DataFrame(
        {
            "prompt_id": ["a", "b", "c"],
            "level": pl.Series([1, 5, None], dtype=pl.Int64),
            "metadata": [json.dumps({"rating": 10}), json.dumps({"rating": 30}), json.dumps({"rating": 20})],
        }
    )
    by_level = difficulty_table_from_labels(data, DifficultyConfig(source="label"))
    assert by_level["difficulty"].to_list() == [0.0, 1.0, None]
    assert by_level["successes"].null_count() == 3
    by_meta = difficulty_table_from_labels(data, DifficultyConfig(source="label", label_column="rating"))
    assert by_meta["difficulty"].to_list() == [0.0, 1.0, 0.5]
    bad = data.with_columns(metadata=pl.lit(json.dumps({"rating": "hard"})))
    with pytest.raises(ValueError, match=r"row 0: metadata\['rating'\]"):
        difficulty_table_from_labels(bad, DifficultyConfig(source="label", label_column="rating"))


def test_difficulty_array_aligns_by_id():
    per, _, _ = run()
    np.testing.assert_allclose(difficulty_array(per, ["p2", "p0"]), [1.0, 0.25])
    with pytest.raises(KeyError, match="prompt_id='zz'"):
        difficulty_array(per, ["zz"])
