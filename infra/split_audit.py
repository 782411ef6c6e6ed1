"""Audit of the builtin splits before and after keying palindromes on their letter multiset (issue 17, item 1).

For the default data (pool 2,000, eval 400, SFT 12,000, data seed 0) it counts, under the old scheme (splits
keyed on the question text, palindrome level 0 = 3-4 letters) and the new one (palindromes keyed on sorted
letters, level 0 = 3-5 letters): eval and pool items whose letter multiset also appears in the SFT split
(a twin the model was fine-tuned on), and how many items of each split changed.

    .venv/bin/python infra/split_audit.py --out infra/results/curriculum/split_audit.md
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

from space.data.builtin_tasks import TASKS, canonical_key, generate_items, get_task

SIZES = {"pool": 2000, "eval": 400, "sft": 12000}
PAL = "palindrome_generation"


def old_tasks() -> tuple:
    """The task mix as it was: palindromes keyed on the question text, level 0 = 3-4 letters."""
    pal = get_task(PAL)
    levels = ({"min_length": 3, "max_length": 4}, *pal.levels[1:])
    return tuple(dataclasses.replace(t, canonical=None, levels=levels) if t.name == PAL else t for t in TASKS)


def twins(items: dict[str, list[dict]], split: str) -> Counter:
    """Per task, items of `split` whose canonical key (new definition) also occurs in the SFT split."""
    sft = {(i["source"], canonical_key(get_task(i["source"]), i["question"])) for i in items["sft"]}
    return Counter(i["source"] for i in items[split]
                   if (i["source"], canonical_key(get_task(i["source"]), i["question"])) in sft)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    old = {s: generate_items(s, n, 0, old_tasks()) for s, n in SIZES.items()}
    new = {s: generate_items(s, n, 0) for s, n in SIZES.items()}
    lines = ["# Builtin splits: question text vs canonical key", "",
             "Default data (pool 2,000, eval 400, SFT 12,000, data seed 0). Produced by `infra/split_audit.py`.", "",
             "| split | items | with an SFT twin, old | with an SFT twin, new | items not in the old split | "
             "of them palindromes |", "|---|---|---|---|---|---|"]
    for split in ("pool", "eval"):
        before, after = twins(old, split), twins(new, split)
        old_q = {(i["source"], i["question"]) for i in old[split]}
        moved = [i for i in new[split] if (i["source"], i["question"]) not in old_q]
        lines.append(f"| {split} | {len(new[split])} | {sum(before.values())} ({dict(before)}) | "
                     f"{sum(after.values())} | {len(moved)} | {sum(i['source'] == PAL for i in moved)} |")
    sft_q = {(i["source"], i["question"]) for i in old["sft"]}
    lines += ["", f"SFT items not in the old SFT split: {sum((i['source'], i['question']) not in sft_q for i in new['sft'])}"
              f" of {len(new['sft'])}.", "",
              "A twin is an item whose canonical key (palindromes: the sorted letters; other tasks: the question) "
              "occurs in the SFT split. \"Items not in the old split\": items of the new split whose (task, question) "
              "the old split did not hold; the last column says how many of them are palindromes."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
