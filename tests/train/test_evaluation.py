"""space/train/evaluation.py: greedy accuracy, pass@1 and the truncated share, hand-counted on scripted completions
and checked against a real transformers engine's finish reasons."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest_models import make_tiny_model_dir

from space.engines import Completion, EngineConfig, make_engine
from space.train.evaluation import evaluate
from space.data.verifiers import get_verifier

TABLE = pl.DataFrame({"prompt_id": ["a", "b"], "source": ["s1", "s2"], "answer": ["4", "7"],
                      "metadata": [json.dumps({}), json.dumps({})]})


def scripted(prompts, n, temperature, max_tokens, seed, prompt_ids):
    """Greedy: 'a' right but cut at the limit, 'b' right. Sampled (n=2): 'a' right once complete, once cut."""
    if temperature == 0:
        return [[Completion("4", 1, "length")] * n, [Completion("7", 2, "stop")] * n]
    return [[Completion("4", 2, "stop"), Completion("4", 1, "length")],
            [Completion("7", 2, "stop"), Completion("1", 2, "stop")]]


def test_truncated_share_and_unsolved_truncated_answers_hand_count():
    metrics, per_prompt = evaluate(scripted, ["qa", "qb"], TABLE, get_verifier("exact", extract="none"), k=2,
                                   temperature=1.0, max_tokens=1, theta_solve=1.0, seed=0)
    assert per_prompt["greedy"].to_list() == [0.0, 1.0]  # 'a' greedy is the gold text, but truncated
    assert per_prompt["pass1"].to_list() == [0.5, 0.5]
    assert per_prompt["truncated"].to_list() == [2, 0]  # of 3 completions each (greedy + 2 samples)
    assert metrics["eval/all/truncated"] == pytest.approx(2 / 6)
    assert metrics["eval/s1/truncated"] == pytest.approx(2 / 3) and metrics["eval/s2/truncated"] == 0.0
    assert metrics["eval/all/unjudged"] == 0.0


def test_truncated_share_matches_a_real_engines_finish_reasons(tmp_path):
    model_dir = make_tiny_model_dir(tmp_path / "tiny")
    prompts = ["Q: 1+3=\nA: ", "Q: 2+5=\nA: "]
    with make_engine(EngineConfig(kind="transformers"), model_dir) as engine:
        metrics, per_prompt = evaluate(engine.generate, prompts, TABLE, get_verifier("exact", extract="none"), k=4,
                                       temperature=1.0, max_tokens=6, theta_solve=1.0, seed=3)
        greedy = engine.generate(prompts, n=1, temperature=0.0, max_tokens=6, seed=3, prompt_ids=["a", "b"])
        sampled = engine.generate(prompts, n=4, temperature=1.0, max_tokens=6, seed=3, prompt_ids=["a", "b"])
    expected = [sum(c.finish_reason == "length" for c in g + s) for g, s in zip(greedy, sampled)]
    assert per_prompt["truncated"].to_list() == expected
    assert 0 < sum(expected) < 10  # the random tiny model stops early sometimes, not always
    assert metrics["eval/all/truncated"] == pytest.approx(sum(expected) / 10)
