"""Verifiers: table-driven scores, the gold answer scores 1, unjudgeable rows are None, errors carry the row;
truncated completions are solved only through a complete answer marker."""

import json
import threading

import pytest
import reasoning_gym

from space.engines import Completion
from space.data.verifiers import (completion_text, extract_answer, get_verifier, known_verifiers, parse_number,
                             solved_flags)


def _rg_rows(task: str, n: int = 5, seed: int = 3):
    ds = reasoning_gym.create_dataset(task, size=n, seed=seed)
    return [e["answer"] for e in ds], [json.dumps(e["metadata"], default=list) for e in ds]


@pytest.mark.parametrize("task", ["chain_sum", "basic_arithmetic", "leg_counting", "spell_backward", "gcd"])
def test_reasoning_gym_gold_scores_one_and_wrong_scores_below(task):
    answers, metadata = _rg_rows(task)
    verifier = get_verifier("reasoning_gym", extract="none")
    assert verifier(answers, answer=answers, metadata=metadata) == [1.0] * len(answers)
    wrong = verifier(["zzz-not-it"] * len(answers), answer=answers, metadata=metadata)
    assert all(s < 1.0 for s in wrong)


def test_reasoning_gym_needs_source_dataset_and_names_the_row():
    verifier = get_verifier("reasoning_gym")
    with pytest.raises(KeyError, match="row 1"):
        verifier(["1", "2"], answer=["1", "2"], metadata=[json.dumps({"source_dataset": "chain_sum"}), "{}"])


@pytest.mark.parametrize(
    "text, mode, expected",
    [
        ("I think <answer>42</answer>", "auto", "42"),
        ("so \\boxed{\\frac{1}{2}} done", "auto", "\\frac{1}{2}"),
        ("7 + 5 = 12.", "auto", "12"),
        ("The answer is 2.", "auto", "2"),
        ("Let me think.\nThe final answer is: **olleh**.\nDone", "auto", "olleh"),
        ("Answer: 17", "auto", "17"),
        ("work\nwork\nThe answer: 8\n", "auto", "8"),
        ("work\nso x = 5\n", "auto", "5"),
        ("  17  ", "none", "17"),
        ("no tag here", "answer_tag", ""),
    ],
)
def test_extract_answer(text, mode, expected):
    assert extract_answer(text, mode) == expected


@pytest.mark.parametrize(
    "gold, completion, expected",
    [
        ("4", "\\boxed{4}", 1.0),
        ("0.5", "The answer is \\boxed{1/2}", 1.0),
        ("\\frac{1}{2}", "\\boxed{0.5}", 1.0),
        ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", 1.0),
        ("3", "\\boxed{4}", 0.0),
    ],
)
def test_math_verifier(gold, completion, expected):
    assert get_verifier("math", extract="none")([completion], answer=[gold]) == [expected]


def test_math_verifier_returns_none_for_unparseable_gold():
    assert get_verifier("math")(["\\boxed{4}"], answer=["@@@"]) == [None]


def test_math_verifier_compare_error_is_not_judged_rather_than_0(monkeypatch):
    import math_verify.grader

    def broken(*args, **kwargs):
        raise RuntimeError("sympy failed")

    monkeypatch.setattr(math_verify.grader, "sympy_expr_eq", broken)  # stands in for a real sympy failure
    assert get_verifier("math")(["\\boxed{4}"], answer=["4"]) == [None]


def test_math_verifier_unparseable_completion_is_wrong_not_an_error():
    assert get_verifier("math")(["no number at all"], answer=["4"]) == [0.0]


def test_math_verifier_runs_in_a_worker_thread():
    out = []
    worker = threading.Thread(target=lambda: out.append(get_verifier("math")(["\\boxed{4}"], answer=["4"])))
    worker.start()
    worker.join()
    assert out == [[1.0]]


@pytest.mark.parametrize(
    "gold, completion, expected",
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "so the total is 72", 1.0),
        ("1,234", "1234", 1.0),
        ("3/4", "0.75", 1.0),
        ("5", "6", 0.0),
        ("5", "no number", 0.0),
    ],
)
def test_numeric_verifier(gold, completion, expected):
    assert get_verifier("numeric")([completion], answer=[gold]) == [expected]


def test_numeric_verifier_none_when_gold_has_no_number():
    assert get_verifier("numeric")(["5"], answer=["five"]) == [None]


def test_exact_verifier_folds_case_and_space():
    assert get_verifier("exact")(["  Hello   World "], answer=["hello world"]) == [1.0]
    assert get_verifier("exact")(["hello"], answer=["world"]) == [0.0]


def test_chat_completions_are_read():
    completion = [{"role": "assistant", "content": "<answer>9</answer>"}]
    assert get_verifier("exact")([completion], answer=["9"]) == [1.0]


def test_completion_text_reads_strings_engine_outputs_and_messages_and_rejects_the_rest():
    from types import SimpleNamespace

    assert completion_text("42") == "42"
    assert completion_text(Completion("7", 2, "stop")) == "7"
    assert completion_text([{"role": "assistant", "content": "x = 3"}]) == "x = 3"
    for bad, named in ((SimpleNamespace(text=None), "SimpleNamespace"), ([{"role": "assistant"}], "content"),
                       ([], "content"), (3, "int")):
        with pytest.raises(TypeError, match=named):
            completion_text(bad)


def test_difficulty_and_verifiers_share_one_completion_text():
    import space.curate.difficulty

    assert space.curate.difficulty.completion_text is completion_text


def test_registry_and_lengths():
    assert {"reasoning_gym", "math", "exact", "numeric"} <= set(known_verifiers())
    with pytest.raises(KeyError, match="known verifiers"):
        get_verifier("nope")
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        get_verifier("exact")(["a", "b"], answer=["a"])


def test_solved_flags_threshold_and_none():
    assert solved_flags([1.0, 0.01, None, 0.5], theta_solve=1.0) == [True, False, None, False]
    assert parse_number("x = -3.5") == -3.5


def test_reasoning_gym_spell_backward_float_bug_is_corrected():
    """reasoning-gym's spell_backward compares a float sum with == 1.0, so the gold word plus extra letters
    scored 1.0000000000000002 for some lengths; space corrects it: only the right answer is solved."""
    entries = [e for e in reasoning_gym.create_dataset("spell_backward", size=300, seed=1) if len(e["answer"]) == 9]
    meta = [json.dumps(entries[0]["metadata"], default=list)]
    verifier = get_verifier("reasoning_gym", extract="none")
    assert verifier([entries[0]["answer"]], answer=[entries[0]["answer"]], metadata=meta) == [1.0]
    assert verifier([entries[0]["answer"] + "xy"], answer=[entries[0]["answer"]], metadata=meta)[0] < 1.0


@pytest.mark.parametrize(
    "name, extract, text, complete, truncated",
    [
        ("exact", "none", "4", 1.0, 0.0),  # the whole text could be the start of "42"
        ("exact", "last_line", "so x = 4", 1.0, 0.0),
        ("exact", "auto", "The answer is 4", 1.0, 0.0),  # "answer is" fallback
        ("exact", "auto", "work\n4", 1.0, 0.0),  # last-line fallback
        ("exact", "auto", "<answer>4</answer> and then", 1.0, 1.0),  # a closed tag is a complete answer
        ("exact", "auto", "<answer>\n4", 1.0, 0.0),  # unclosed tag: the last-line fallback is not read
        ("exact", "answer_tag", "<answer>4</answer>", 1.0, 1.0),
        ("exact", "answer_tag", "\\boxed{4}", 0.0, 0.0),  # this mode reads only tags
        ("exact", "boxed", "\\boxed{4} because", 1.0, 1.0),
        ("exact", "boxed", "\\boxed{4", 0.0, 0.0),
        ("numeric", "auto", "it is 4", 1.0, 0.0),
        ("math", "auto", "\\boxed{4} and", 1.0, 1.0),
        ("math", "auto", "4", 1.0, 0.0),
    ],
)
def test_truncated_completion_is_solved_only_through_a_complete_marker(name, extract, text, complete, truncated):
    verifier = get_verifier(name, extract=extract)
    assert verifier([text], answer=["4"], truncated=[False]) == [complete]
    assert verifier([text], answer=["4"], truncated=[True]) == [truncated]


def test_truncated_reasoning_gym_gold_is_judged_unsolved_and_flags_come_from_completions():
    answers, metadata = _rg_rows("spell_backward", n=2)
    verifier = get_verifier("reasoning_gym", extract="none")
    assert verifier(answers, answer=answers, metadata=metadata, truncated=[True, False]) == [0.0, 1.0]
    cut = [Completion(answers[0], 9, "length"), Completion(answers[1], 9, "stop")]
    assert verifier(cut, answer=answers, metadata=metadata) == [0.0, 1.0]  # default: each completion's own flag


def test_truncation_does_not_hide_an_unjudgeable_gold():
    assert get_verifier("math")(["4"], answer=["@@@"], truncated=[True]) == [None]
    assert get_verifier("numeric")(["4"], answer=["five"], truncated=[True]) == [None]
    with pytest.raises(ValueError, match="2 completions but 1 truncated flags"):
        get_verifier("exact")(["a", "b"], answer=["a", "b"], truncated=[True])
