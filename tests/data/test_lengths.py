"""space/data/lengths.py: the completion-length check against gold answers (in the model's tokens) and the
truncation flags; plus the curation task that runs the check before any engine starts."""

from __future__ import annotations

import polars as pl
import pytest

from space.data.lengths import (
    CompletionLengthError,
    check_completion_lengths,
    completion_truncated,
    ids_truncated,
    tokens_needed,
)
from space.engines import Completion
from space.models.tiny import build_tokenizer

TOKENIZER = build_tokenizer()  # one token per character
ROTATED = "9 6 3\n8 5 2\n7 4 1"  # a 3x3 rotate_matrix answer: 17 characters


def table(answers: list[str], prefix: str = "pool") -> pl.DataFrame:
    return pl.DataFrame({"prompt_id": [f"{prefix}-{i}" for i in range(len(answers))], "answer": answers})


def test_tokens_needed_per_extract_mode():
    assert tokens_needed(TOKENIZER, ROTATED, "none") == (18, "bare answer + EOS")
    assert tokens_needed(TOKENIZER, ROTATED, "last_line") == (18, "bare answer + EOS")
    assert tokens_needed(TOKENIZER, ROTATED, "auto") == (18, "bare answer + EOS")  # cheapest accepted form
    assert tokens_needed(TOKENIZER, "42", "answer_tag") == (len("<answer>42</answer>"), "answer_tag marker")
    assert tokens_needed(TOKENIZER, "42", "boxed") == (len("\\boxed{42}"), "boxed marker")


def test_too_short_limit_names_both_numbers_split_and_prompt():
    splits = {"pool": (table(["olleh", ROTATED, "7"]), {"curate.difficulty.max_tokens": 16,
                                                       "train.grpo.max_completion_length": 32}),
              "eval": (table(["12", "abc"], "eval"), {"eval.max_tokens": 16})}
    with pytest.raises(CompletionLengthError) as info:
        check_completion_lengths(TOKENIZER, splits, extract="none")
    message = str(info.value)
    assert "curate.difficulty.max_tokens = 16" in message and "needs 18 tokens" in message
    assert "pool split: prompt_id='pool-1'" in message
    assert message.count("cannot hold") == 1  # train.grpo.max_completion_length = 32 holds 18
    assert "eval.max_tokens" not in message  # the eval answers fit


def test_limit_that_holds_the_longest_answer_passes_and_reports_it():
    splits = {"pool": (table(["olleh", ROTATED]), {"train.grpo.max_completion_length": 18}),
              "eval": (None, {"eval.max_tokens": 1})}  # no eval set: nothing to check
    report = check_completion_lengths(TOKENIZER, splits, extract="none")
    assert report == {"pool": {"tokens": 18, "prompt_id": "pool-1", "form": "bare answer + EOS"}}


def test_truncation_flags():
    assert completion_truncated(Completion("abc", 3, "length"))
    assert not completion_truncated(Completion("abc", 4, "stop"))
    assert not completion_truncated("plain text carries no finish reason")
    assert ids_truncated([5, 6, 7], eos_ids=[2])
    assert not ids_truncated([5, 6, 2], eos_ids=[2])
    assert not ids_truncated([5, 9], eos_ids=[2, 9])


def test_curation_task_fails_on_the_builtin_data_before_any_engine(tmp_path):
    """The builtin pool/eval at train length 16: rotate_matrix answers need 18 characters with EOS."""
    from space.config import load_recipe
    from tasks.curate import check_lengths

    recipe = load_recipe("builtin", ["train.grpo.max_completion_length=16"])
    paths = {}
    for split, answers in (("pool", ["olleh", ROTATED]), ("eval", ["3"])):
        paths[split] = {"path": str(tmp_path / f"{split}.parquet")}
        table(answers, split).write_parquet(paths[split]["path"])
    model_dir = tmp_path / "tok"
    TOKENIZER.save_pretrained(model_dir)
    with pytest.raises(CompletionLengthError, match=r"curate\.difficulty\.max_tokens = 16(.|\n)*needs 18"):
        check_lengths.fn(paths, {"path": str(model_dir)}, recipe)
    for source in ("rollouts", "propagate"):  # propagate rolls out its measured fraction at the same length
        short = load_recipe("builtin", ["train.grpo.max_completion_length=16", f"curate.difficulty.source={source}"])
        with pytest.raises(CompletionLengthError, match=r"curate\.difficulty\.max_tokens = 16"):
            check_lengths.fn(paths, {"path": str(model_dir)}, short)
    ok = load_recipe("builtin")
    assert check_lengths.fn(paths, {"path": str(model_dir)}, ok)["pool"]["tokens"] == 18
