"""SPaCe's curriculum in a stock TRL `GRPOTrainer` (TRL 1.16), without Prefect or MLflow.

TRL has no curriculum API; its maintainers' route (huggingface/trl#2801) is to subclass the trainer and override
`_get_train_sampler`, keeping `RepeatSampler`'s layout (each prompt repeated once per generation, trl#6351). The
plug-in does exactly that, on the user's own trainer class:

    from trl import GRPOConfig, GRPOTrainer
    from space.integrations.trl import SpaceCurriculum

    curriculum = SpaceCurriculum("export/", bandit={"policy": "ts_lp"}, seed=0)   # a `space export` folder
    trainer = curriculum.trainer(GRPOTrainer)(                                     # GRPOTrainer + the sampler
        model=model, args=GRPOConfig(..., num_train_epochs=5),
        train_dataset=curriculum.train_dataset(tokenizer),                        # or yours, with `prompt_id`
        reward_funcs=[curriculum.reward(my_reward)],                              # records each group's rewards
    )
    trainer.train()

Each TRL epoch is one period: at its start the sampler feeds the previous period's groups to the bandit and plans
`slots_per_epoch` prompts (default: one per planned row), served in RepeatSampler's layout. `plan_every_steps=N`
instead sizes each epoch to N optimiser steps, so the bandit re-plans every N steps and `num_train_epochs` counts
periods, as `train.epochs` and `train.slots_per_epoch` do in `space train`. Planning at an epoch boundary is what
keeps the plan exact: inside an epoch, accelerate's data loader fetches the next batch before the current one is
rewarded, so a mid-epoch plan could not see the last rewards. The bandit's metrics (`bandit/arm_03/share`, ...)
go through the trainer's own `log`, so every `report_to` tracker receives them.

Not done here (space's own flow does it): difficulty re-estimation, held-out evaluation, checkpoints per epoch.
Single process only: with several processes each rank would see only its own rewards (raises).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from space.integrations.curriculum import Curriculum, split_groups
from space.train.config import INFORMATIVE_MIN_SIGNAL
from space.train.sampler import EpochSampler


class CurriculumSampler:
    """A sampler over the trainer's dataset whose `__iter__` plans one period with the bandit and yields it in
    TRL's `RepeatSampler` layout; `__len__` is fixed (the trainer sizes its schedule from it)."""

    def __init__(self, curriculum: Curriculum, slots: int, num_generations: int, generation_batch_size: int,
                 num_iterations: int = 1, steps_per_generation: int = 1) -> None:
        self.curriculum, self.slots = curriculum, slots
        self.layout = dict(num_generations=num_generations, generation_batch_size=generation_batch_size,
                           num_iterations=num_iterations, steps_per_generation=steps_per_generation)
        self.epoch: int | None = None  # set by the trainer (set_epoch) before each epoch's __iter__
        self.planned: tuple[int | None, list[int]] | None = None
        EpochSampler([0] * slots, **self.layout)  # checks the slot count against the chunk size up front

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # A second __iter__ in the same epoch (set_epoch unchanged) replays that epoch's plan instead of re-planning.
        if self.planned is None or self.epoch is None or self.planned[0] != self.epoch:
            self.planned = (self.epoch, self.curriculum.plan(self.slots))
        return iter(EpochSampler(self.planned[1], **self.layout))

    def __len__(self) -> int:
        return len(EpochSampler([0] * self.slots, **self.layout))


class SpaceCurriculum:
    """The plug-in: an exported curation plus a bandit config, attached to a `GRPOTrainer` subclass.

    `curation` is a `space export` folder, a curation file, a `datasets.Dataset` or a polars frame; `bandit` a
    `BanditConfig` or its fields as a dict. `pool`, `seed`, `theta_solve` and `min_signal` mean what they mean in a
    recipe (`train.pool`, `seed`, `verifier.theta_solve`, `train.informative_min_signal`)."""

    def __init__(self, curation: Any, bandit: Any = None, *, seed: int = 0, pool: str = "reduced",
                 slots_per_epoch: int | None = None, plan_every_steps: int | None = None,
                 theta_solve: float = 1.0, min_signal: float = INFORMATIVE_MIN_SIGNAL) -> None:
        from space.curate.export import read_curation

        if slots_per_epoch is not None and plan_every_steps is not None:
            raise ValueError("give slots_per_epoch or plan_every_steps, not both")
        self.curation = read_curation(Path(curation) if isinstance(curation, str) else curation)
        self.bandit, self.seed, self.pool, self.theta_solve = bandit, seed, pool, theta_solve
        self.min_signal = min_signal
        self.slots_per_epoch, self.plan_every_steps = slots_per_epoch, plan_every_steps
        self.curriculum: Curriculum | None = None
        self.group_size: int | None = None
        self.recording = True  # off while the trainer evaluates

    def train_dataset(self, tokenizer: Any = None, system_prompt: str | None = None,
                      enable_thinking: bool | None = None) -> Any:
        """The planned rows as a `datasets.Dataset` with columns prompt, prompt_id, answer, metadata, cluster.

        With a tokenizer the prompt is the question rendered through its chat template (as `space train` does);
        without one it is the plain question text."""
        from datasets import Dataset
        import polars as pl

        table = self.curation.filter(pl.col("selected")) if self.pool == "reduced" else self.curation
        questions = table["question"].to_list()
        if tokenizer is not None:
            from space.data.prompting import render_prompts

            prompts = render_prompts(tokenizer, questions, system_prompt, enable_thinking)
        else:
            prompts = questions
        metadata = table["metadata"] if "metadata" in table.columns else pl.Series(["{}"] * table.height)
        return Dataset.from_dict({"prompt": prompts, "prompt_id": table["prompt_id"].to_list(),
                                  "answer": table["answer"].to_list(), "metadata": metadata.to_list(),
                                  "cluster": table["cluster"].to_list()})

    def sampler(self, dataset: Any, args: Any) -> CurriculumSampler:
        """The sampler for `dataset` (it needs a `prompt_id` column) under a `trl.GRPOConfig`."""
        if getattr(args, "world_size", 1) > 1:
            raise NotImplementedError("SpaceCurriculum runs in one process: with several, each rank sees only its own "
                                      "rewards and the ranks' plans would diverge")
        if "prompt_id" not in getattr(dataset, "column_names", []):
            raise ValueError(f"the training dataset has no column 'prompt_id' (columns: "
                             f"{getattr(dataset, 'column_names', None)}): the plug-in matches rows to the curation by it")
        self.curriculum = Curriculum(self.curation, dataset["prompt_id"], self.bandit, seed=self.seed,
                                     pool=self.pool, theta_solve=self.theta_solve, min_signal=self.min_signal)
        self.group_size = args.num_generations
        return CurriculumSampler(self.curriculum, self.period_slots(args), args.num_generations,
                                 args.generation_batch_size, args.num_iterations, args.steps_per_generation)

    def period_slots(self, args: Any) -> int:
        """Prompt slots per TRL epoch: given, or N optimiser steps' worth, or one per planned row (rounded down to
        whole generation batches)."""
        per_chunk = args.generation_batch_size // args.num_generations
        if self.slots_per_epoch is not None:
            return self.slots_per_epoch
        if self.plan_every_steps is not None:
            steps_per_chunk = args.num_iterations * args.steps_per_generation // args.gradient_accumulation_steps
            if steps_per_chunk < 1 or self.plan_every_steps % steps_per_chunk:
                raise ValueError(f"plan_every_steps={self.plan_every_steps} is not a multiple of the {steps_per_chunk} "
                                 "optimiser steps one generation batch trains")
            return self.plan_every_steps // steps_per_chunk * per_chunk
        return max(per_chunk, self.curriculum.table.height // per_chunk * per_chunk)

    def reward(self, fn: Callable[..., list]) -> Callable[..., list]:
        """Wrap a TRL reward function: it returns `fn`'s rewards unchanged and records each GRPO group's rewards
        (consecutive `num_generations` completions of one prompt id) for the bandit's next plan."""

        @functools.wraps(fn)
        def tracked(*args: Any, **kwargs: Any) -> list:
            rewards = fn(*args, **kwargs)
            if not self.recording:  # evaluation: held-out prompts are not the bandit's feedback
                return rewards
            if self.curriculum is None:
                raise RuntimeError("the tracked reward ran before the trainer built the curriculum's sampler: build "
                                   "the trainer with `curriculum.trainer(GRPOTrainer)`")
            if "prompt_id" not in kwargs:
                raise ValueError("the reward function got no 'prompt_id' column: keep it in the training dataset")
            for pid, group in split_groups(kwargs["prompt_id"], rewards, self.group_size):
                self.curriculum.record_group(pid, group)
            return rewards

        return tracked

    def trainer(self, base: type) -> type:
        """A subclass of `base` (the user's `GRPOTrainer`) whose train sampler is the curriculum's and whose `log`
        adds the bandit's metrics; after `train()` the last period's groups are fed to the bandit too, and rewards
        computed inside `evaluate()` are not recorded."""
        plugin = self

        class CurriculumTrainer(base):  # type: ignore[valid-type, misc]
            def _get_train_sampler(self, dataset: Any = None) -> CurriculumSampler:
                return plugin.sampler(self.train_dataset if dataset is None else dataset, self.args)

            def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
                if plugin.curriculum is not None:
                    logs = {**logs, **plugin.curriculum.pop_metrics()}
                super().log(logs, *args, **kwargs)

            def evaluate(self, *args: Any, **kwargs: Any) -> Any:
                plugin.recording = False
                try:
                    return super().evaluate(*args, **kwargs)
                finally:
                    plugin.recording = True

            def train(self, *args: Any, **kwargs: Any) -> Any:
                output = super().train(*args, **kwargs)
                if plugin.curriculum is not None:
                    plugin.curriculum.update()  # the last period's groups: state and metrics, no plan follows
                    self.log(plugin.curriculum.pop_metrics())
                return output

        CurriculumTrainer.__name__ = CurriculumTrainer.__qualname__ = f"Curriculum{base.__name__}"
        return CurriculumTrainer
