"""The gold answer's likelihood: the exact forward-pass value, independent of batching, and equal to how often
the transformers engine actually samples that answer (tiny random model, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from space.curate.likelihood import answer_logprobs, gold_forms
from space.engines import EngineConfig, make_engine

PROMPTS = ["Q: What is 2+3?\nA: ", "Q: spell cat backwards\nA: ", "Q: hi\nA: "]
ANSWERS = ["5", "tac", "hello there"]
EOS_ID = 2  # conftest_models' tiny model


def by_hand(model_dir: Path, prompt: str, answer: str, temperature: float) -> float:
    """One unpadded forward pass, the answer's tokens and EOS read off the softmax at `temperature`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [EOS_ID]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + target])).logits[0]
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return float(sum(logp[len(prompt_ids) - 1 + t, token] for t, token in enumerate(target)))


def test_gold_forms_follow_the_verifier_extract_mode():
    assert gold_forms("42", "none") == [("42", True)]
    assert gold_forms("42", "answer_tag") == [("<answer>42</answer>", False)]
    assert [text for text, _ in gold_forms("42", "auto")] == ["42", "<answer>42</answer>", "\\boxed{42}"]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_a_hand_computed_forward_pass_at_any_batch_size(tiny_dir, temperature):
    expected = [by_hand(tiny_dir, p, a, temperature) for p, a in zip(PROMPTS, ANSWERS)]
    one = answer_logprobs(tiny_dir, PROMPTS, ANSWERS, "none", temperature, batch_size=1)
    padded = answer_logprobs(tiny_dir, PROMPTS, ANSWERS, "none", temperature, batch_size=3)
    assert one == pytest.approx(expected, abs=1e-4)
    assert padded == pytest.approx(expected, abs=1e-4)
    assert (one < 0).all() and one[2] < one[0]  # 11 characters + EOS are far less likely than 1 + EOS


def single_token_answers(model_dir: Path) -> list[str]:
    """Every non-special token of the tiny tokenizer that tokenises back to itself alone."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids]
    return [t for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 1]


def test_probability_matches_how_often_the_engine_samples_the_answer(tiny_dir):
    # The event "one token, then EOS" over every single-token answer: its predicted probability against its
    # frequency in n samples of the transformers engine at T = 0.8. The same sum at T = 1 lies far outside the
    # band, so the check can tell a wrong temperature.
    prompt, n = PROMPTS[0], 20000
    answers = single_token_answers(tiny_dir)
    predicted = {t: float(np.exp(answer_logprobs(tiny_dir, [prompt] * len(answers), answers, "none", t,
                                                  batch_size=128)).sum()) for t in (0.8, 1.0)}
    with make_engine(EngineConfig(kind="transformers", batch_size=2000), tiny_dir) as engine:
        samples = engine.generate([prompt], n=n, temperature=0.8, max_tokens=2, seed=0)[0]
    seen = sum(c.num_tokens == 2 and c.finish_reason == "stop" for c in samples) / n
    p = predicted[0.8]
    band = 4 * np.sqrt(p * (1 - p) / n)
    assert abs(seen - p) < band, (seen, predicted, band)
    assert abs(seen - predicted[1.0]) > band, (seen, predicted, band)
