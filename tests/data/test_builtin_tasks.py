"""Builtin task mix: deterministic, balanced, disjoint splits, short questions, reasoning-gym scores them."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from space.data.builtin_tasks import (
    ORIGINAL_QUESTION_KEY,
    TASKS,
    TaskSpec,
    canonical_key,
    generate_items,
    get_task,
    render_spell_backward,
    score_item,
    task_names,
)

CELLS = [(t.name, level) for t in TASKS for level in range(len(t.levels))]


@pytest.fixture(scope="module")
def pool():
    return generate_items("pool", 4 * len(CELLS), seed=0)


def test_mix_has_at_least_four_tasks_with_three_levels():
    assert len(TASKS) >= 4
    assert all(len(t.levels) >= 3 for t in TASKS)


def test_generation_is_deterministic_and_seeded(pool):
    assert generate_items("pool", 4 * len(CELLS), seed=0) == pool
    other = generate_items("pool", 4 * len(CELLS), seed=1)
    assert {i["question"] for i in other} != {i["question"] for i in pool}


def test_every_task_and_level_is_present_balanced_and_interleaved(pool):
    counts = Counter((i["source"], i["level"]) for i in pool)
    assert counts == {cell: 4 for cell in CELLS}
    # round-robin: the first len(CELLS) items hold one item of every cell, so any prefix stays balanced
    assert {(i["source"], i["level"]) for i in pool[: len(CELLS)]} == set(CELLS)
    sizes = Counter((i["source"], i["level"]) for i in generate_items("eval", len(CELLS) + 3, seed=0))
    assert sorted(sizes.values()) == [1] * (len(CELLS) - 3) + [2] * 3


def test_splits_are_disjoint_by_question_text_whatever_the_seeds():
    n = 6 * len(CELLS)
    pool = {i["question"] for i in generate_items("pool", n, seed=0)}
    evals = {i["question"] for i in generate_items("eval", n, seed=0)}
    sft = {i["question"] for i in generate_items("sft", 3 * n, seed=0)}
    sft_other_seed = {i["question"] for i in generate_items("sft", 3 * n, seed=7)}
    assert len(pool) == n and len(evals) == n and len(sft) == 3 * n  # unique within a split
    assert not pool & evals and not pool & sft and not evals & sft
    assert not pool & sft_other_seed and not evals & sft_other_seed


def test_palindrome_key_is_the_sorted_letters_and_other_tasks_key_on_the_question():
    pal, rev = get_task("palindrome_generation"), get_task("spell_backward")
    assert canonical_key(pal, "pal couou") == canonical_key(pal, "pal uoocu") == "pal coouu"
    assert canonical_key(pal, "pal couou") != canonical_key(pal, "pal couoa")
    assert canonical_key(rev, "rev ammonia") == "rev ammonia"


def test_no_palindrome_letter_multiset_lands_in_two_splits():
    n = 6 * len(CELLS)
    pal = get_task("palindrome_generation")
    keys = {split: [canonical_key(pal, i["question"]) for i in generate_items(split, size, seed=0)
                    if i["source"] == pal.name]
            for split, size in (("pool", n), ("eval", n), ("sft", 3 * n))}
    assert all(len(k) == len(set(k)) for k in keys.values())  # one ordering per multiset within a split
    pool, evals, sft = (set(keys[s]) for s in ("pool", "eval", "sft"))
    assert pool and evals and sft
    assert not pool & evals and not pool & sft and not evals & sft


def test_questions_are_unique_within_a_split_even_when_levels_overlap():
    overlapping = TaskSpec(
        "spell_backward", ({"min_word_len": 3, "max_word_len": 4}, {"min_word_len": 4, "max_word_len": 5}),
        render_spell_backward,
    )
    items = generate_items("pool", 300, seed=0, tasks=[overlapping])
    assert len({i["question"] for i in items}) == 300
    assert {len(i["answer"]) for i in items if i["level"] == 1} >= {4, 5}


def test_items_have_the_schema_short_ascii_questions_and_jsonable_metadata(pool):
    for item in pool:
        assert set(item) == {"question", "answer", "source", "level", "metadata"}
        assert isinstance(item["answer"], str) and item["answer"]
        assert item["metadata"]["source_dataset"] == item["source"]
        assert ORIGINAL_QUESTION_KEY in item["metadata"]
        assert json.loads(json.dumps(item["metadata"])) == item["metadata"]
        assert len(item["question"]) <= 60 and item["question"].isascii()
        assert len(item["question"]) < len(item["metadata"][ORIGINAL_QUESTION_KEY])


def test_gold_answers_score_one_and_wrong_answers_score_below_one(pool):
    for item in pool:
        args = (item["question"], item["answer"], item["metadata"])
        assert score_item(item["answer"], *args) == 1.0, item
        assert score_item(f" {item['answer']}\n", *args) == 1.0  # surrounding whitespace is ignored
        assert score_item(item["answer"] + "x", *args) < 1.0, item
        assert score_item("", *args) < 1.0


def test_score_item_uses_reasoning_gyms_scorer_not_string_equality(pool):
    pal = next(i for i in pool if i["source"] == "palindrome_generation" and i["level"] == 2)
    letters = sorted(pal["metadata"]["letters"])
    odd = [c for c in set(letters) if letters.count(c) % 2]
    half = "".join(sorted(c * (letters.count(c) // 2) for c in set(letters)))
    other = half + "".join(odd) + half[::-1]  # another valid palindrome from the same letters
    args = (pal["question"], pal["answer"], pal["metadata"])
    assert score_item(other, *args) == 1.0
    assert score_item(pal["answer"][::-1] + "z", *args) < 1.0


@pytest.mark.parametrize("word", ["grubstake", "coccus", "dialyses", "feathered"])
def test_spell_backward_prefix_replies_do_not_reach_one(word):
    # reasoning-gym's own scorer gives 1.0000000000000002 to 'ekatsburgx' for 9-letter words (float ==)
    gold = word[::-1]
    meta = {"source_dataset": "spell_backward", "word": word, "word_len": len(word)}
    assert score_item(gold + "x", f"rev {word}", gold, meta) == 0.8
    assert score_item(gold.upper(), f"rev {word}", gold, meta) == 1.0  # the scorer ignores case
    assert score_item(gold[:-1], f"rev {word}", gold, meta) < 1.0


def test_score_item_needs_the_source_in_metadata():
    with pytest.raises(KeyError, match="source_dataset"):
        score_item("1", "count a in a", "1", {})


def test_unknown_split_task_and_duplicate_names_fail_loudly():
    with pytest.raises(ValueError, match="unknown split 'train'"):
        generate_items("train", 3, seed=0)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="known: .*spell_backward"):
        get_task("nope")
    twice = (TASKS[0], TASKS[0])
    with pytest.raises(ValueError, match="duplicate"):
        task_names(twice)


def test_a_level_too_small_for_the_request_names_the_task_and_level():
    tiny_space = TaskSpec("spell_backward", ({"min_word_len": 3, "max_word_len": 3},), render_spell_backward)
    with pytest.raises(ValueError, match="task 'spell_backward' level 0: only"):
        generate_items("pool", 400, seed=0, tasks=[tiny_space])
