"""The train phase's configuration (the recipe's `train` section): epochs, slots, the GRPO update, the bandit.

It lives beside the code it configures, so `space/train/epoch.py` needs nothing from the aggregate
`space/config.py`, which only assembles the sections into a `Recipe`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from space.train.active_pool import RefillConfig
from space.train.bandit import BanditConfig
from space.train.distributed import DistributedConfig
from space.train.grpo import GRPOSettings
from space.train.skipping import SkipConfig

# The default of `train.informative_min_signal`, shared by `space train` and the trainer plug-ins: at k = 8 it keeps
# predicted solve rates in about [0.08, 0.92] (space.train.epoch.informative_rows).
INFORMATIVE_MIN_SIGNAL = 0.5


class TrainConfig(BaseModel):
    """Phase 2: bandit-paced GRPO in epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(3, gt=0, description="T: number of epochs")
    slots_per_epoch: int = Field(8, gt=0, description="M: prompt slots per epoch (M/B optimiser steps)")
    grpo: GRPOSettings = Field(default_factory=GRPOSettings, description="the GRPO update (TRL's GRPOTrainer)")
    bandit: BanditConfig = Field(default_factory=BanditConfig, description="how each epoch's slots go to the arms")
    pool: Literal["reduced", "full", "refill", "informative"] = Field(
        "reduced", description="train on the curated reduced pool; on the whole pool with every prompt in its "
        "cluster's arm (with `uniform`: plain GRPO; with a bandit policy: the no-reduction ablation); or refill: "
        "the reduced pool as the first active set, spent prompts replaced from their cluster each epoch "
        "(space/train/active_pool.py, settings under `refill`); or informative: every prompt whose reference "
        "solve rate lies strictly between 0 and 1, or, where it was predicted, likely to be (`informative_min_signal`); "
        "a cluster without one keeps all its prompts"
    )
    informative_min_signal: float = Field(
        INFORMATIVE_MIN_SIGNAL, gt=0, lt=1, description="pool: informative, for a prompt whose difficulty was predicted "
        "(curate.difficulty.source: propagate): the least probability that k reference samples at its predicted "
        "solve rate mix successes and failures for it to count as informative (space.train.epoch.informative_rows)"
    )
    refill: RefillConfig = Field(default_factory=RefillConfig, description="how pool: refill retires and refills")
    skip: SkipConfig = Field(default_factory=SkipConfig, description="leave spent prompts out of their arm's draws "
                             "(space/train/skipping.py; off by default; not with pool: refill, which retires its own)")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="data-parallel epochs: processes, launcher, backend, nodes "
        "(docs/distributed.md); processes 1 trains in the flow's process"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:  # steps_per_epoch would refuse a partial step in the first epoch
        if self.slots_per_epoch % self.grpo.prompts_per_step:
            raise ValueError(f"slots_per_epoch = {self.slots_per_epoch} is not a multiple of grpo.prompts_per_step = "
                             f"{self.grpo.prompts_per_step} (each optimiser step takes that many prompts)")
        if self.pool == "refill" and self.skip.after:
            raise ValueError("train.skip.after > 0 with train.pool = refill: the refilling pool retires spent prompts "
                             "itself (train.refill.retire_after); set train.skip.after = 0 or choose another pool")
        return self
