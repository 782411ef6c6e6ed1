"""Held-out evaluation: greedy accuracy and mean pass_at_1 over k samples, per source and overall.

Small models often improve in sampled pass_at_1 long before greedy accuracy moves, so both are reported.
A sample the verifier cannot judge is left out of the means and counted (`unjudged`), never scored 0.
Completions that hit max_tokens are counted per prompt (`truncated`, greedy plus sampled) and reported as a
share (`eval/<source>/truncated`); the verifier never scores them solved by a fallback extraction.

    metrics, per_prompt = evaluate(engine.generate, prompts, table, verifier, k=4, temperature=1.0,
                                   max_tokens=16, theta_solve=1.0, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from space.data.lengths import completion_truncated
from space.data.verifiers import completion_text, solved_flags
from space.engines import EngineKind


class EvalConfig(BaseModel):
    """Held-out evaluation: greedy accuracy and mean pass_at_1 over k samples (the recipe's `eval` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: int = Field(1, ge=0, description="evaluate every N epochs (0: only at the end)")
    k: int = Field(4, gt=0, description="samples per prompt for pass_at_1")
    temperature: float = Field(1.0, ge=0.0, description="sampling temperature for pass_at_1 (the training one)")
    max_tokens: int | None = Field(
        None, gt=0, description="completion length for evaluation; None = the training completion length "
        "(train.grpo.max_completion_length)"
    )
    limit: int | None = Field(None, gt=0, description="evaluate on at most this many prompts")
    engine_kind: EngineKind | None = Field(
        None, description="rollout engine for evaluation (None: the recipe's engine)"
    )


def _score(generate: Callable, prompts, table, verifier, n, temperature, max_tokens, theta, seed):
    """(solved as 1.0/0.0/NaN for unjudged, truncated as bool), both shaped (prompts, n)."""
    groups = generate(prompts, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed,
                      prompt_ids=table["prompt_id"].to_list())
    texts = [completion_text(c) for group in groups for c in group]
    cut = [completion_truncated(c) for group in groups for c in group]
    answers = [a for a in table["answer"].to_list() for _ in range(n)]
    metadata = [m for m in table["metadata"].to_list() for _ in range(n)]
    solved = solved_flags(verifier(texts, answer=answers, metadata=metadata, truncated=cut), theta)
    shape = (len(prompts), n)
    return np.array([np.nan if s is None else float(s) for s in solved]).reshape(shape), np.array(cut).reshape(shape)


def evaluate(
    generate: Callable[..., Sequence[Sequence[Any]]],
    prompts: Sequence[str],
    table: pl.DataFrame,
    verifier: Callable[..., list[float | None]],
    *,
    k: int,
    temperature: float,
    max_tokens: int,
    theta_solve: float,
    seed: int,
) -> tuple[dict[str, float], pl.DataFrame]:
    """Metrics `eval/<source>/greedy_acc`, `eval/<source>/pass_at_1`, and `eval/all/...`; plus a per-prompt table."""
    if len(prompts) != table.height:
        raise ValueError(f"{len(prompts)} prompts but the eval table has {table.height} rows")
    if max_tokens is None:
        raise ValueError("max_tokens is None: resolve the recipe first (Recipe.resolved fills in the training length)")
    greedy, greedy_cut = _score(generate, prompts, table, verifier, 1, 0.0, max_tokens, theta_solve, seed)
    sampled, sampled_cut = _score(generate, prompts, table, verifier, k, temperature, max_tokens, theta_solve, seed)
    greedy = greedy[:, 0]
    per_prompt = pl.DataFrame({
        "prompt_id": table["prompt_id"], "source": table["source"],
        "greedy": pl.Series(greedy, nan_to_null=True),
        "pass1": pl.Series(_nanmean_rows(sampled), nan_to_null=True),
        "unjudged": np.isnan(sampled).sum(axis=1) + np.isnan(greedy).astype(int),
        "truncated": sampled_cut.sum(axis=1) + greedy_cut[:, 0].astype(int),
        "samples": np.full(len(prompts), k + 1),
    })
    return eval_metrics(per_prompt), per_prompt


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    judged = (~np.isnan(values)).sum(axis=1)
    sums = np.nansum(values, axis=1)
    return np.where(judged > 0, sums / np.maximum(judged, 1), np.nan)


def eval_metrics(per_prompt: pl.DataFrame) -> dict[str, float]:
    """Means over judged prompts, per source and over all prompts; `truncated` is the share of completions
    (greedy and sampled) that hit max_tokens."""
    metrics: dict[str, float] = {}
    parts = [("all", per_prompt)] + [(str(s), g) for (s,), g in per_prompt.group_by("source", maintain_order=True)]
    for name, part in sorted(parts, key=lambda p: (p[0] != "all", p[0])):
        for column, label in (("greedy", "greedy_acc"), ("pass1", "pass_at_1")):
            mean = part[column].mean()
            if mean is not None:
                metrics[f"eval/{name}/{label}"] = float(mean)
        metrics[f"eval/{name}/unjudged"] = float(part["unjudged"].sum())
        metrics[f"eval/{name}/truncated"] = float(part["truncated"].sum() / max(1, part["samples"].sum()))
    return metrics
