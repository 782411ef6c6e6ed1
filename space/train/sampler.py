"""Adapter between the bandit's plan and TRL's GRPOTrainer (method.md section 3, docs/libraries.md, TRL).

`ClusterPromptPicker` turns an arm-per-slot plan into dataset row indices (uniform without replacement
inside a cluster, reshuffled when used up); `EpochSampler` serves one epoch's fixed list of row indices in
the layout of TRL's `RepeatSampler`, for a `GRPOTrainer` subclass whose `_get_train_sampler` returns it:

    picker = ClusterPromptPicker(members=[[0, 3], [1, 2, 4]], seed=0)
    probabilities, arms = policy.allocate(epoch, slots)
    rows = picker.fill(arms)
    sampler = EpochSampler.from_args(rows, grpo_config)     # num_generations, generation_batch_size, ...

`EpochSampler` is a plain iterable with a length, which torch's DataLoader accepts as `sampler` (it asks for
"Sampler or Iterable"), so importing this module imports neither torch nor trl.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from space.seeding import derive_rng


class ClusterPromptPicker:
    """Fills planned arms with prompts: per cluster a seeded shuffled queue, refilled when used up.

    The n-th refill of arm k is shuffled by `derive_rng(seed, "picker", k, n)` (space/seeding.py), so the queues plus
    refill counts are the whole state and `load_state_dict` resumes exactly.
    """

    def __init__(self, members: Sequence[Sequence[int]], seed: int) -> None:
        self.members = [[int(i) for i in m] for m in members]
        for k, m in enumerate(self.members):
            if not m:
                raise ValueError(f"members[{k}] is empty: every arm needs at least one prompt")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.queues: list[list[int]] = [[] for _ in self.members]
        self.refills = [0 for _ in self.members]

    def fill(self, arms: Sequence[int]) -> list[int]:
        """Dataset row index for each planned slot, in slot order."""
        return [self.take(int(a)) for a in arms]

    rng_tag = "picker"  # the seed stream of the queue shuffles (space/seeding.py)

    def take(self, arm: int) -> int:
        if not 0 <= arm < len(self.members):
            raise ValueError(f"arm {arm} is outside 0..{len(self.members) - 1}")
        if not self.queues[arm]:
            rows = self.candidates(arm)
            rng = derive_rng(self.seed, self.rng_tag, arm, self.refills[arm])
            self.queues[arm] = [rows[i] for i in rng.permutation(len(rows))]
            self.refills[arm] += 1
        return self.queues[arm].pop(0)

    def candidates(self, arm: int) -> list[int]:
        """The rows a refilled queue of `arm` shuffles: all its members here."""
        return self.members[arm]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the remaining queues and how often each arm was refilled."""
        return {"seed": self.seed, "members": self.members, "queues": [list(q) for q in self.queues],
                "refills": list(self.refills)}

    def end_epoch(self, epoch: int, outcomes: Sequence[Any]) -> dict[str, float]:
        """Per-prompt feedback after an epoch (`GroupOutcome`s): fixed queues learn nothing from it; the refilling
        and skipping pickers (space/train/active_pool.py, space/train/skipping.py) override this."""
        return {}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for key, value in (("seed", self.seed), ("members", self.members)):
            if d[key] != value:
                raise ValueError(f"state_dict[{key!r}] does not match this picker's {key}")
        self.queues = [[int(i) for i in q] for q in d["queues"]]
        self.refills = [int(n) for n in d["refills"]]


class EpochSampler:
    """One epoch's fixed prompt indices in TRL `RepeatSampler` order (trl 1.16, `trl/trainer/utils.py`).

    Prompts are cut into chunks of `generation_batch_size // num_generations`; each chunk is yielded
    `num_iterations * steps_per_generation` times, each index `num_generations` times in a row. Unlike
    RepeatSampler, which silently drops an incomplete last chunk, a slot count that is not a multiple of
    the chunk size is an error (those slots would be planned but never trained). The length is fixed, as
    the trainer sizes its schedule from it.
    """

    def __init__(
        self,
        indices: Sequence[int],
        num_generations: int,
        generation_batch_size: int,
        num_iterations: int = 1,
        steps_per_generation: int = 1,
    ) -> None:
        if num_generations < 1 or generation_batch_size % num_generations:
            raise ValueError(f"generation_batch_size ({generation_batch_size}) must be a multiple of "
                             f"num_generations ({num_generations})")
        if num_iterations < 1 or steps_per_generation < 1:
            raise ValueError(f"num_iterations ({num_iterations}) and steps_per_generation "
                             f"({steps_per_generation}) must be >= 1")
        self.num_generations = num_generations
        self.per_chunk = generation_batch_size // num_generations
        self.reuse = num_iterations * steps_per_generation
        self.indices = self.check_indices(indices)

    @classmethod
    def from_args(cls, indices: Sequence[int], args: Any) -> EpochSampler:
        """Build from a `trl.GRPOConfig` (after its __post_init__ filled generation_batch_size)."""
        return cls(indices, args.num_generations, args.generation_batch_size, args.num_iterations,
                   args.steps_per_generation)

    def check_indices(self, indices: Sequence[int]) -> list[int]:
        out = [int(i) for i in indices]
        if not out or len(out) % self.per_chunk:
            raise ValueError(f"{len(out)} slots is not a positive multiple of the chunk size {self.per_chunk} prompts")
        return out

    def __iter__(self) -> Iterator[int]:
        for start in range(0, len(self.indices), self.per_chunk):
            chunk = self.indices[start : start + self.per_chunk]
            for _ in range(self.reuse):
                for index in chunk:
                    for _ in range(self.num_generations):
                        yield index

    def __len__(self) -> int:
        return len(self.indices) * self.num_generations * self.reuse
