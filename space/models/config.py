"""The policy model's configuration (the recipe's `model` section), beside the models it names.

`space/config.py` only assembles it into a `Recipe`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from space.models.tiny import TinyModelConfig


class ModelConfig(BaseModel):
    """The policy model: a built-in name (`tiny`, `smollm2-135m`), a hub name or a local directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("tiny", description="built-in model name, hub model name or local HF directory")
    system_prompt: str | None = Field(None, description="system message put before every question, if any")
    enable_thinking: bool | None = Field(
        None, description="passed to the chat template (Qwen3 thinks unless false); None: the template's default"
    )
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="how `tiny` is built")
