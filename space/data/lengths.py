"""Completion lengths: can the recipe's limits hold the gold answers, and was a rollout truncated?

Curation, training and evaluation share one completion length unless a recipe sets another explicitly
(`Recipe.resolved`). Before any engine starts, `check_completion_lengths` measures every gold answer in the
model's own tokens and fails when a limit cannot hold the longest one, naming both numbers, the split and the
prompt id:

    check_completion_lengths(tokenizer, {"pool": (pool_table, {"curate.difficulty.max_tokens": 32, ...}),
                                         "eval": (eval_table, {"eval.max_tokens": 32})}, extract="none")

What an answer needs depends on how the verifier reads it (space/data/verifiers.py): a truncated completion is
solved only through a complete answer marker, so the bare answer must end with EOS (one more token), while
`<answer>…</answer>` or `\\boxed{…}` must fit whole. The need is the cheapest form the extract mode accepts,
measured on the answer alone (in context a tokenizer may merge differently by a token or so).

A rollout is truncated when it hit the limit: finish reason "length" (engines), or token ids that do not end
in an EOS id (TRL's completion ids are cut after the first EOS, so a completion without one ran to the limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ANSWER_MARKERS = {"answer_tag": "<answer>{}</answer>", "boxed": "\\boxed{{{}}}"}


class CompletionLengthError(ValueError):
    """A completion limit too short for some gold answer; the message names limit, need, split and prompt."""


def accepted_forms(extract: str) -> list[tuple[str, str, bool]]:
    """(label, template, needs EOS) for each form in which the verifier can score a completion solved."""
    bare = ("bare answer + EOS", "{}", True)
    if extract in ("none", "last_line"):
        return [bare]
    tags = [(f"{mode} marker", ANSWER_MARKERS[mode], False) for mode in ("answer_tag", "boxed")]
    if extract == "auto":
        return [bare, *tags]
    if extract in ANSWER_MARKERS:
        return [(f"{extract} marker", ANSWER_MARKERS[extract], False)]
    raise ValueError(f"unknown extract mode {extract!r}")


def tokens_needed(tokenizer: Any, answer: str, extract: str) -> tuple[int, str]:
    """Fewest completion tokens in which `answer` can be scored solved, and the form that achieves it."""
    best: tuple[int, str] | None = None
    for label, template, eos in accepted_forms(extract):
        ids = tokenizer(template.format(answer), add_special_tokens=False)["input_ids"]
        need = len(ids) + int(eos)
        if best is None or need < best[0]:
            best = (need, label)
    assert best is not None
    return best


def longest_answer(tokenizer: Any, prompt_ids: Sequence[str], answers: Sequence[str],
                   extract: str) -> tuple[int, str, str, str]:
    """(tokens needed, prompt id, answer, form) of the answer that needs the most tokens; ties: first seen."""
    if len(prompt_ids) != len(answers):
        raise ValueError(f"{len(prompt_ids)} prompt ids but {len(answers)} answers")
    worst = (0, "", "", "")
    for pid, answer in zip(prompt_ids, answers):
        need, form = tokens_needed(tokenizer, str(answer), extract)
        if need > worst[0]:
            worst = (need, str(pid), str(answer), form)
    return worst


def check_completion_lengths(tokenizer: Any, splits: Mapping[str, tuple[Any, Mapping[str, int]]],
                             extract: str) -> dict[str, dict[str, Any]]:
    """Fail when a limit cannot hold its split's longest gold answer; else return the longest per split.

    `splits` maps a split name to (table with prompt_id and answer columns, {recipe key: limit}).
    """
    report, problems = {}, []
    for split, (table, limits) in splits.items():
        if table is None or table.height == 0:
            continue
        need, pid, answer, form = longest_answer(tokenizer, table["prompt_id"].to_list(),
                                                 table["answer"].to_list(), extract)
        report[split] = {"tokens": need, "prompt_id": pid, "form": form}
        for key, limit in limits.items():
            if limit < need:
                problems.append(
                    f"{key} = {limit} cannot hold the longest gold answer of the {split} split: prompt_id={pid!r} "
                    f"(answer {answer[:60]!r}) needs {need} tokens ({form}, verifier extract={extract!r})"
                )
    if problems:
        raise CompletionLengthError(
            "completion length too short:\n  " + "\n  ".join(problems)
            + "\nraise train.grpo.max_completion_length (curation and evaluation follow it unless set explicitly)"
        )
    return report


def completion_truncated(item: Any) -> bool:
    """Whether an engine completion hit its limit; plain strings carry no finish reason and count as complete."""
    if isinstance(item, str):
        return False
    reason = getattr(item, "finish_reason", None)
    if reason is None:
        raise TypeError(f"completion of type {type(item).__name__} has no finish_reason")
    return str(reason) == "length"


def ids_truncated(ids: Sequence[int], eos_ids: Sequence[int]) -> bool:
    """TRL completion ids (cut after the first EOS): truncated when they do not end in an EOS id."""
    return not ids or int(ids[-1]) not in set(eos_ids)
