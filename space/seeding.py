"""One way to derive seeds: every random component gets its own stream from (run seed, tag, parts).

    derive_seed(recipe.seed, "kmeans")                 # a 31-bit int for faiss, torch, vLLM, TRL
    derive_rng(recipe.seed, "picker", arm, refill)     # a numpy Generator for numpy consumers

The run seed, a tag naming the use and any further parts (ints or strings: epoch, arm, prompt id) are
encoded canonically as JSON and hashed with BLAKE2b; the 128-bit digest is the entropy of a numpy
`SeedSequence`. So

- different tags give unrelated streams: the prompt picker never replays the bandit's draws;
- `(s, "t", k)` and `(s, "t", k, 0)` differ (a plain `default_rng([s, k])` pads its entropy with zeros, so
  `[s, k]` and `[s, k, 0]` give the same stream);
- the result depends only on the values, not on the process (`hash()` is salted per process) or the platform.

Tags in use: data generation `builtin-data`; engine sampling `engine-prompt` / `engine-sample`; curation
`kmeans`, `selection`; training `bandit`, `picker`, `grpo-epoch`.
"""

from __future__ import annotations

import hashlib
import json
import operator

import numpy as np

SEED_MASK = 0x7FFF_FFFF  # 31-bit seeds: accepted by torch, faiss, vLLM and any server that parses int32


def _entropy(seed: int, tag: str, parts: tuple[int | str, ...]) -> int:
    """128 bits from the canonical JSON of (seed, tag, parts); ints and strings never collide ("1" vs 1)."""
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    values: list[int | str] = [operator.index(seed), tag]
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, str) and not hasattr(part, "__index__"):
            raise TypeError(f"seed part {i} is {type(part).__name__}; expected int or str")
        values.append(part if isinstance(part, str) else operator.index(part))
    digest = hashlib.blake2b(json.dumps(values).encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def seed_sequence(seed: int, tag: str, *parts: int | str) -> np.random.SeedSequence:
    """The SeedSequence of one stream."""
    return np.random.SeedSequence(_entropy(seed, tag, parts))


def derive_seed(seed: int, tag: str, *parts: int | str) -> int:
    """A 31-bit seed for one stream (for libraries that take an int seed)."""
    return int(seed_sequence(seed, tag, *parts).generate_state(1, dtype=np.uint32)[0]) & SEED_MASK


def derive_rng(seed: int, tag: str, *parts: int | str) -> np.random.Generator:
    """A numpy Generator for one stream, seeded with the full 128-bit entropy."""
    return np.random.default_rng(seed_sequence(seed, tag, *parts))
