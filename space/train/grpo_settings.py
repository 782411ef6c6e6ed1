"""The GRPO update's settings (`train.grpo` in a recipe) and how they map onto `trl.GRPOConfig` (space/train/grpo.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GRPOSettings(BaseModel):
    """GRPO hyper-parameters (method.md 5, CPU defaults) and how they map onto `trl.GRPOConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts_per_step: int = Field(2, gt=0, description="B: prompts per optimiser step (each with G rollouts)")
    num_generations: int = Field(4, ge=2, description="G: rollouts per prompt (GRPO group size)")
    learning_rate: float = Field(1e-4, gt=0, description="peak AdamW learning rate (GPU recipe: 1e-6)")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 means no reference model (TRL default)")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"] = Field(
        "dapo", description="TRL loss aggregation (TRL default dapo)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantage scaling: by the group's reward std, the batch's, or none"
    )
    max_completion_length: int = Field(32, gt=0, description="max new tokens per rollout (GPU recipe: 1024)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts")
    num_iterations: int = Field(1, gt=0, description="optimiser passes over each generation batch (TRL mu)")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="LR shape over the whole run (after warmup): constant, linear or cosine decay to 0"
    )
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of the run's steps with linear LR warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not applied to 1-d params)")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0 disables)")
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="micro-batches per optimiser step; B*G must be divisible by it"
    )
    bf16: bool = Field(False, description="bf16 mixed precision; GPU only (forced off on CPU)")
    gradient_checkpointing: bool = Field(False, description="activation checkpointing; GPU only (forced off on CPU)")
    use_vllm: bool = Field(
        False, description="generate with vLLM inside TRL; GPU only (colocate fails on CPU, docs/libraries.md, TRL)"
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="GPU only: vLLM in the training process, or a separate `vllm serve` server"
    )
    vllm_server_base_url: str | None = Field(None, description="GPU only: server URL when vllm_mode=server")
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="GPU only: share of GPU memory vLLM reserves in colocate mode"
    )

    @model_validator(mode="after")
    def _whole_accumulation(self) -> GRPOSettings:  # build_config refuses it in the first epoch otherwise
        per_step = self.prompts_per_step * self.num_generations
        if per_step % self.gradient_accumulation_steps:
            raise ValueError(f"prompts_per_step x num_generations = {per_step} completions per step is not divisible "
                             f"by gradient_accumulation_steps = {self.gradient_accumulation_steps}")
        return self
