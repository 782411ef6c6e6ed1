"""The curation phase's configuration (the recipe's `curate` section): one sub-config per stage, each defined
beside its stage. `space/config.py` only assembles it into a `Recipe`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from space.curate.clustering import ClusterConfig
from space.curate.difficulty import DifficultyConfig
from space.curate.embedding import EmbeddingConfig
from space.curate.features import FeatureConfig
from space.curate.reduction import SelectionConfig


class CurateConfig(BaseModel):
    """Phase 1: embed, estimate difficulty, build features, cluster, keep representatives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    difficulty: DifficultyConfig = Field(default_factory=DifficultyConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    clusters: ClusterConfig = Field(default_factory=ClusterConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
