"""The builtin task mix: short reasoning-gym tasks at graded levels, in a compact prompt format.

Each task names a reasoning-gym dataset, one reasoning-gym config per difficulty level (level 0 is the
easiest) and a renderer that rewrites the verbose reasoning-gym question into a short one the tiny model
(space/models/tiny.py) can read, e.g. "rev ammonia" for spell_backward. The gold answer and the entry's metadata are kept as
reasoning-gym made them, so reasoning-gym's own scorer still judges a reply (`score_item`).

    items = generate_items("pool", 2000, seed=0)   # dicts: question, answer, source, level, metadata

Splits are disjoint by construction: every item's canonical key (`canonical_key`: the question text, except
for palindromes, whose key is the sorted multiset of letters, since any order of the same letters asks the
same question) is hashed into one of 100 buckets and each split owns a fixed range of buckets, so no question
(nor a reordering of a palindrome's letters) can land in two splits whatever the seeds. Within
a split, each (task, level) cell draws from its own reasoning-gym seed derived from (seed, split, task,
level), every question appears once, and cells are interleaved round-robin so any prefix stays balanced.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from space.seeding import derive_seed

Split = Literal["pool", "eval", "sft"]

# Share of the question space each split owns, as ranges of hash buckets 0..99.
SPLIT_BUCKETS: dict[str, range] = {"sft": range(0, 70), "pool": range(70, 85), "eval": range(85, 100)}
MAX_DRAWS_PER_ITEM = 60  # give up on a cell whose question space is too small for the requested size
ORIGINAL_QUESTION_KEY = "rg_question"  # metadata key keeping reasoning-gym's own question text


@dataclass(frozen=True)
class TaskSpec:
    """A reasoning-gym dataset, its difficulty levels (configs, easiest first) and a short renderer."""

    name: str
    levels: tuple[Mapping[str, Any], ...]
    render: Callable[[dict[str, Any]], str]
    note: str = ""
    canonical: Callable[[str], str] | None = None  # question -> split key; None: the question itself


def render_spell_backward(entry: dict[str, Any]) -> str:
    """'rev ammonia' (gold: 'ainomma')."""
    return "rev " + entry["metadata"]["word"]


def render_letter_counting(entry: dict[str, Any]) -> str:
    """'count h in hundred thousand' (gold: '2')."""
    meta = entry["metadata"]
    return f"count {meta['target_letter']} in " + " ".join(meta["span"])


def render_rotate_matrix(entry: dict[str, Any]) -> str:
    """'rot90' then the matrix rows, one per line, as reasoning-gym writes them (gold: the rotated rows)."""
    meta = entry["metadata"]
    rows = "\n".join(" ".join(str(x) for x in row) for row in meta["matrix"])
    return f"rot{90 * meta['num_rotations'] % 360}\n{rows}"


def render_palindrome(entry: dict[str, Any]) -> str:
    """'pal couou' (any palindrome using exactly these letters scores 1, e.g. 'oucuo')."""
    return "pal " + "".join(entry["metadata"]["letters"])


def palindrome_key(question: str) -> str:
    """'pal couou' and 'pal ucoou' ask the same question (the same letters): the key is the sorted letters."""
    return "pal " + "".join(sorted(question.removeprefix("pal ")))


# Chosen so the tiny model (about 0.5 M parameters, 2,000 SFT steps) is partly able: each task's solve rate
# falls smoothly with its level. Arithmetic (chain_sum, products) was tried and left out: the tiny model
# stays near 0 at every level, and the easiest arithmetic levels have too few distinct questions (200 for
# two one-digit terms) to fill disjoint splits. Every scorer here is clean (gold 1.0, wrong answers < 1)
# and none of them evaluates the model's text as Python (spiral_matrix and string_insertion do).
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "spell_backward",
        ({"min_word_len": 3, "max_word_len": 4}, {"min_word_len": 5, "max_word_len": 7},
         {"min_word_len": 8, "max_word_len": 10}),
        render_spell_backward,
        "reverse a word; level = word length",
    ),
    TaskSpec(
        "letter_counting",
        ({"min_words": 1, "max_words": 1}, {"min_words": 2, "max_words": 3}, {"min_words": 4, "max_words": 5}),
        render_letter_counting,
        "count a letter in a span of words; level = span length",
    ),
    TaskSpec(
        "rotate_matrix",
        ({"min_n": 2, "max_n": 2, "min_rotations": 1, "max_rotations": 3},
         {"min_n": 2, "max_n": 3, "min_rotations": 1, "max_rotations": 3},
         {"min_n": 3, "max_n": 3, "min_rotations": 1, "max_rotations": 3}),
        render_rotate_matrix,
        # the tiny model learns 2x2 rotations fully and 3x3 ones anywhere from 0 to 90 % depending on the
        # seed, so the middle level mixes both sizes: its mean lies halfway whatever the 3x3 rate
        "rotate a digit matrix clockwise by 90, 180 or 270 degrees; level = 2x2, 2x2 or 3x3, 3x3",
    ),
    TaskSpec(
        "palindrome_generation",
        ({"min_length": 3, "max_length": 5}, {"min_length": 5, "max_length": 6}, {"min_length": 7, "max_length": 8}),
        render_palindrome,
        # level 0 reaches 5 letters: with splits keyed on the letter multiset, the ~1,000 multisets of 3 and 4
        # letters cannot fill the three splits (the pool's 15 % of buckets held 143 of the 166 asked for)
        "arrange letters into a palindrome; level = number of letters (3-5, 5-6, 7-8)",
        palindrome_key,
    ),
)


def task_names(tasks: Sequence[TaskSpec] = TASKS) -> list[str]:
    """Names of the tasks, refusing duplicates."""
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate builtin task names: {dupes}")
    return names


def get_task(name: str, tasks: Sequence[TaskSpec] = TASKS) -> TaskSpec:
    """The task called `name`; unknown names fail with the list of known ones."""
    by_name = dict(zip(task_names(tasks), tasks, strict=True))
    if name not in by_name:
        raise KeyError(f"unknown builtin task {name!r}; known: {sorted(by_name)}")
    return by_name[name]


# ---------------------------------------------------------------------------------------------
# generation


def canonical_key(task: TaskSpec, question: str) -> str:
    """What two items of `task` must share to be the same question: spell_backward, letter_counting and
    rotate_matrix use the question text (it fixes the answer); palindrome_generation the sorted letters."""
    return task.canonical(question) if task.canonical is not None else question


def question_bucket(source: str, key: str) -> int:
    """The hash bucket (0..99) that decides which split may hold items with this canonical key."""
    return int.from_bytes(hashlib.sha256(f"{source}\x1f{key}".encode()).digest()[:8], "big") % 100


def to_jsonable(value: Any) -> Any:
    """reasoning-gym metadata made JSON-safe (tuples become lists); fails on anything else."""
    return json.loads(json.dumps(value))


def make_item(task: TaskSpec, level: int, entry: dict[str, Any]) -> dict[str, Any]:
    """One builtin item from a reasoning-gym entry: short question, gold answer, original metadata."""
    metadata = to_jsonable(entry["metadata"])
    metadata[ORIGINAL_QUESTION_KEY] = entry["question"]
    return {"question": task.render(entry), "answer": str(entry["answer"]), "source": task.name,
            "level": level, "metadata": metadata}


def is_plain(item: dict[str, Any]) -> bool:
    """True when question and answer are printable ASCII or newlines (the tiny model's whole vocabulary)."""
    text = (item["question"] + item["answer"]).replace("\n", " ")
    return text.isascii() and text.isprintable()


def generate_cell(
    task: TaskSpec, level: int, split: Split, size: int, seed: int, taken: set[str] | None = None
) -> list[dict[str, Any]]:
    """`size` items of one (task, level) whose questions fall in the split's buckets and are not in `taken`.

    `taken` (updated in place) holds the canonical keys already used by other cells of the split, so a
    question that two levels could both produce is used once.
    """
    import reasoning_gym

    taken = set() if taken is None else taken
    if size == 0:
        return []
    draws = MAX_DRAWS_PER_ITEM * size + 1000
    cell_seed = derive_seed(seed, "builtin-data", split, task.name, level)
    dataset = reasoning_gym.create_dataset(task.name, size=draws, seed=cell_seed, **task.levels[level])
    buckets, items = SPLIT_BUCKETS[split], []
    for index in range(draws):
        item = make_item(task, level, dataset[index])
        key = canonical_key(task, item["question"])
        if key in taken or question_bucket(task.name, key) not in buckets or not is_plain(item):
            continue
        taken.add(key)
        items.append(item)
        if len(items) == size:
            return items
    raise ValueError(
        f"task {task.name!r} level {level}: only {len(items)} unique {split} questions in {draws} draws, "
        f"{size} requested; widen the level's config or ask for fewer items"
    )


def cell_sizes(size: int, cells: int) -> list[int]:
    """Split `size` as evenly as possible over `cells` (the first cells get the remainder)."""
    return [size // cells + (1 if i < size % cells else 0) for i in range(cells)]


def generate_items(split: Split, size: int, seed: int, tasks: Sequence[TaskSpec] = TASKS) -> list[dict[str, Any]]:
    """`size` items of `split`, balanced over tasks and levels, interleaved, deterministic in `seed`."""
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_BUCKETS)}")
    task_names(tasks)
    cells = [(task, level) for task in tasks for level in range(len(task.levels))]
    taken: set[str] = set()  # questions are unique within the split, across levels and tasks
    per_cell = [
        generate_cell(task, level, split, n, seed, taken)
        for (task, level), n in zip(cells, cell_sizes(size, len(cells)), strict=True)
    ]
    longest = max((len(c) for c in per_cell), default=0)
    return [cell[i] for i in range(longest) for cell in per_cell if i < len(cell)]


# ---------------------------------------------------------------------------------------------
# scoring


@lru_cache(maxsize=None)
def _score_fn(source: str) -> Callable[[str, dict[str, Any]], float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(source)


def fix_spell_backward(score: float, reply: str, entry: dict[str, Any]) -> float:
    """Restore the intended 0.8 for a reply that starts with the gold word and then goes on.

    reasoning-gym 0.1.25's SpellBackwardDataset.score_answer sums 1/len per matching character and tests the
    float sum with `== 1.0` before subtracting 0.2, so such replies score 0.9999999999999999 (6, 7 or 10
    letters) or 1.0000000000000002 (9 letters): the latter would count as solved at theta_solve = 1.
    """
    if reply.lower() != entry["answer"].lower() and math.isclose(score, 1.0, abs_tol=1e-9):
        return 0.8
    return score


SCORE_FIXES: dict[str, Callable[[float, str, dict[str, Any]], float]] = {"spell_backward": fix_spell_backward}


def rebuild_entry(question: str, answer: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The reasoning-gym entry an item came from (original question, gold answer, metadata)."""
    meta = {k: v for k, v in metadata.items() if k != ORIGINAL_QUESTION_KEY}
    return {"question": metadata.get(ORIGINAL_QUESTION_KEY, question), "answer": answer, "metadata": meta}


def score_item(answer_text: str, question: str, answer: str, metadata: Mapping[str, Any]) -> float:
    """reasoning-gym's own score in [0, 1] of `answer_text` (outer whitespace stripped) for this item.

    Known scorer bugs are corrected first (SCORE_FIXES), so only a right answer scores 1.
    """
    if "source_dataset" not in metadata:
        raise KeyError(f"metadata of {question!r} has no 'source_dataset'; is it a builtin item?")
    source, reply = metadata["source_dataset"], answer_text.strip()
    entry = rebuild_entry(question, answer, metadata)
    score = float(_score_fn(source)(reply, entry))
    if source in SCORE_FIXES:
        score = SCORE_FIXES[source](score, reply, entry)
    return min(1.0, max(0.0, score))
