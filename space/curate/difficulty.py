"""Prompt difficulty (method.md 2.2): one minus the reference model's solve rate, or a rescaled label.

    s_i = (1/k_judged) * sum_j c(x_i, y_ij),   c = 1[R >= theta_solve],   y_ij ~ pi_ref(. | x_i) at T_ref
    d_i = 1 - s_i in [0, 1]

The reference model arrives as a `generate_fn` (a rollout engine's generate) and the verifier as a plain batch
function, so this module never builds an engine. Samples the verifier cannot judge (`None`) are counted in
`unjudged` and left out of the solve rate; a prompt with no judged sample gets a null difficulty and is
reported, never scored 0. A verifier exception is re-raised as `VerifierError` naming the prompt. Every
rollout records whether it hit max_tokens (`truncated`, from the engine's finish reason); the verifier gets
the flags and never scores a truncated completion solved by a fallback extraction (space/data/verifiers.py).

    per_prompt, rollouts = estimate_difficulty(ids, rendered_prompts, answers, metadata,
                                               engine.generate, verifier, DifficultyConfig(), seed=0)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from space.data.lengths import completion_truncated
from space.data.verifiers import completion_text

logger = logging.getLogger(__name__)

GenerateFn = Callable[..., Sequence[Sequence[Any]]]
VerifierFn = Callable[..., Sequence[float | None]]

PER_PROMPT_SCHEMA = {
    "prompt_id": pl.String,
    "successes": pl.Int64,
    "k": pl.Int64,
    "unjudged": pl.Int64,
    "truncated": pl.Int64,
    "solve_rate": pl.Float64,
    "difficulty": pl.Float64,
}
ROLLOUT_SCHEMA = {
    "prompt_id": pl.String,
    "sample": pl.Int64,
    "completion": pl.String,
    "score": pl.Float64,
    "solved": pl.Boolean,
    "truncated": pl.Boolean,
}


class DifficultyConfig(BaseModel):
    """How the per-prompt difficulty d_i is obtained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["rollouts", "label", "propagate"] = Field(
        "rollouts",
        description="'rollouts': 1 - solve rate of k reference samples; 'label': a rescaled dataset label; "
        "'propagate': rollouts on a seeded fraction of the pool, kNN prediction in embedding space for the rest.",
    )
    k: int = Field(8, ge=1, description="Reference samples per prompt.")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature T_ref of the reference model.")
    max_tokens: int | None = Field(
        None, ge=1, description="Completion length of each reference sample; None = the training completion length "
        "(train.grpo.max_completion_length, filled in by Recipe.resolved)."
    )
    seed: int = Field(
        0, ge=0, description="Seed of the reference rollouts. Independent of the recipe seed on purpose: runs with "
        "different seeds share one difficulty estimate (and its cache)."
    )
    measure_fraction: float = Field(
        0.2, gt=0.0, le=1.0, description="For source='propagate': share of the pool that gets rollouts."
    )
    strata: int = Field(
        16, ge=1, description="For source='propagate': embedding clusters the measured prompts are drawn from evenly."
    )
    neighbours: int = Field(
        8, ge=1, description="For source='propagate': measured neighbours averaged (weights 1/distance)."
    )
    predictor: Literal["knn", "knn+likelihood"] = Field(
        "knn", description="For source='propagate': 'knn' = the neighbours' weighted mean; 'knn+likelihood' = a "
        "least-squares fit on the measured prompts of their difficulty from their leave-one-out kNN value and the "
        "reference model's probability of the gold answer (one forward pass per prompt, no sampling; "
        "space/curate/likelihood.py)."
    )
    label_column: str = Field(
        "level",
        description="For source='label': a column of the data table, else a top-level key of its metadata JSON.",
    )
    label_low: float | None = Field(
        None, description="Label value mapped to difficulty 0 (default: the smallest seen)."
    )
    label_high: float | None = Field(
        None, description="Label value mapped to difficulty 1 (default: the largest seen)."
    )


class VerifierError(RuntimeError):
    """A verifier raised on some prompt's completions; `prompt_id` says which."""

    def __init__(self, prompt_id: str, cause: BaseException):
        super().__init__(f"verifier failed on prompt_id={prompt_id!r}: {type(cause).__name__}: {cause}")
        self.prompt_id = prompt_id


def generate_completions(
    generate_fn: GenerateFn, prompt_ids: list[str], prompts: list[str], cfg: DifficultyConfig, seed: int
) -> list[list[tuple[str, bool]]]:
    """Draw cfg.k samples per prompt in one engine call, check the shape: (text, truncated) per sample."""
    if cfg.max_tokens is None:
        raise ValueError("DifficultyConfig.max_tokens is None: resolve the recipe first (Recipe.resolved fills in "
                         "the training completion length)")
    outputs = generate_fn(
        prompts, n=cfg.k, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=seed, prompt_ids=prompt_ids
    )
    if len(outputs) != len(prompts):
        raise ValueError(f"generate_fn returned {len(outputs)} groups for {len(prompts)} prompts")
    groups = []
    for pid, group in zip(prompt_ids, outputs):
        if len(group) != cfg.k:
            raise ValueError(f"generate_fn returned {len(group)} samples for prompt_id={pid!r}, expected k={cfg.k}")
        groups.append([(completion_text(item), completion_truncated(item)) for item in group])
    return groups


def score_group(
    verifier: VerifierFn, prompt_id: str, completions: list[str], answer: str, metadata: str,
    truncated: list[bool] | None = None,
) -> list[float | None]:
    """Verifier scores for one prompt's samples; None = cannot judge. Errors name the prompt."""
    n = len(completions)
    cut = [False] * n if truncated is None else list(truncated)
    try:
        scores = list(verifier(completions, answer=[answer] * n, metadata=[metadata] * n, truncated=cut))
    except Exception as err:
        raise VerifierError(prompt_id, err) from err
    if len(scores) != n:
        raise ValueError(f"verifier returned {len(scores)} scores for {n} completions of prompt_id={prompt_id!r}")
    for j, score in enumerate(scores):
        if score is not None and (isinstance(score, str) or not math.isfinite(float(score))):
            raise ValueError(f"verifier returned {score!r} for sample {j} of prompt_id={prompt_id!r}")
    return [None if s is None else float(s) for s in scores]


def summarize_group(scores: list[float | None], theta_solve: float, truncated: int = 0) -> dict[str, Any]:
    """successes / k / unjudged / truncated / solve_rate / difficulty of one prompt; rate over judged samples."""
    judged = [s for s in scores if s is not None]
    successes = sum(s >= theta_solve for s in judged)
    rate = successes / len(judged) if judged else None
    return {
        "successes": successes,
        "k": len(scores),
        "unjudged": len(scores) - len(judged),
        "truncated": truncated,
        "solve_rate": rate,
        "difficulty": None if rate is None else 1.0 - rate,
    }


def estimate_difficulty(
    prompt_ids: Sequence[str],
    prompts: Sequence[str],
    answers: Sequence[str],
    metadata: Sequence[str],
    generate_fn: GenerateFn,
    verifier: VerifierFn,
    cfg: DifficultyConfig,
    seed: int,
    theta_solve: float = 1.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Difficulty from reference rollouts: (per-prompt table, rollouts table); see the module docstring.

    A sample is solved when its score is at least `theta_solve` (the recipe's verifier threshold).

    `prompts` are the rendered prompts the engine sees; `generate_fn(prompts, n, temperature, max_tokens, seed,
    prompt_ids)` returns one list of n completions (str or objects with `.text`) per prompt; `verifier(completions,
    answer=, metadata=)` returns one float or None per completion.
    """
    if cfg.source not in ("rollouts", "propagate"):
        raise ValueError(f"source={cfg.source!r}: use difficulty_table_from_labels for label difficulty")
    prompt_ids, prompts, answers, metadata = map(list, (prompt_ids, prompts, answers, metadata))
    check_lengths(prompt_ids, prompts=prompts, answers=answers, metadata=metadata)
    groups = generate_completions(generate_fn, prompt_ids, prompts, cfg, seed)
    rows, rollouts = [], []
    for pid, group, answer, meta in zip(prompt_ids, groups, answers, metadata):
        texts, cut = [text for text, _ in group], [flag for _, flag in group]
        scores = score_group(verifier, pid, texts, answer, meta, cut)
        rows.append({"prompt_id": pid, **summarize_group(scores, theta_solve, sum(cut))})
        for j, (text, score, flag) in enumerate(zip(texts, scores, cut)):
            solved = None if score is None else score >= theta_solve
            rollouts.append({"prompt_id": pid, "sample": j, "completion": text, "score": score, "solved": solved,
                             "truncated": flag})
    per_prompt = pl.DataFrame(rows, schema=PER_PROMPT_SCHEMA)
    report_unjudged(per_prompt)
    return per_prompt, pl.DataFrame(rollouts, schema=ROLLOUT_SCHEMA)


def check_lengths(prompt_ids: list[str], **columns: list[Any]) -> None:
    """Every column aligns with prompt_ids, and ids are unique."""
    for name, values in columns.items():
        if len(values) != len(prompt_ids):
            raise ValueError(f"{name} has {len(values)} entries but prompt_ids has {len(prompt_ids)}")
    seen: set[str] = set()
    for pid in prompt_ids:
        if pid in seen:
            raise ValueError(f"duplicate prompt_id={pid!r}")
        seen.add(pid)


def report_unjudged(per_prompt: pl.DataFrame) -> None:
    """Log unjudged samples and the prompts left without a difficulty (they are null, not 0)."""
    samples = int(per_prompt["unjudged"].sum() or 0)
    if samples:
        null_ids = per_prompt.filter(pl.col("difficulty").is_null())["prompt_id"].to_list()
        logger.warning(
            "%d samples could not be judged; %d prompts have no judged sample and a null difficulty%s",
            samples,
            len(null_ids),
            f" (first: {null_ids[:5]})" if null_ids else "",
        )


def summarize_difficulty(per_prompt: pl.DataFrame) -> dict[str, float]:
    """Metrics for a tracker (unprefixed keys): prompt count, mean difficulty, unjudged counts, shares at 0 and 1,
    and the share of truncated samples (only when rollouts were drawn)."""
    difficulty = per_prompt["difficulty"]
    samples = per_prompt["k"].sum()
    truncated = {"truncated_share": float(per_prompt["truncated"].sum() / samples)} if samples else {}
    measured = {"measured_share": float(per_prompt["measured"].mean())} if "measured" in per_prompt.columns else {}
    return {
        **measured,
        "prompts": float(per_prompt.height),
        "mean": float(difficulty.mean()) if difficulty.drop_nulls().len() else float("nan"),
        "null_prompts": float(difficulty.null_count()),
        "unjudged_samples": float(per_prompt["unjudged"].sum() or 0),
        "all_solved_share": float((difficulty == 0.0).mean() or 0.0),
        "none_solved_share": float((difficulty == 1.0).mean() or 0.0),
        **truncated,
    }


def difficulty_from_label(
    levels: Sequence[float | int | None], low: float | None = None, high: float | None = None
) -> np.ndarray:
    """Rescale labels linearly to [0, 1]: `low` -> 0, `high` -> 1 (defaults: the smallest and largest seen).

    Missing labels (None/NaN) become NaN. When every label is equal the result is 0.5 everywhere.
    """
    values = np.array([np.nan if v is None else float(v) for v in levels], dtype=np.float64)
    seen = values[~np.isnan(values)]
    lo = float(seen.min()) if low is None and seen.size else low
    hi = float(seen.max()) if high is None and seen.size else high
    if lo is None or hi is None:
        return values
    if hi < lo:
        raise ValueError(f"label_high={hi} is below label_low={lo}")
    if hi == lo:
        return np.where(np.isnan(values), np.nan, 0.5)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def read_labels(data: pl.DataFrame, column: str) -> list[float | None]:
    """Label per row: the table column `column`, else the top-level key `column` of each row's metadata JSON."""
    if column in data.columns:
        return [None if v is None else float(v) for v in data[column].to_list()]
    if "metadata" not in data.columns:
        raise KeyError(f"label_column={column!r} is neither a column nor readable from a 'metadata' column")
    labels = []
    for row, raw in enumerate(data["metadata"].to_list()):
        value = json.loads(raw or "{}").get(column)
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"row {row}: metadata[{column!r}] = {value!r} is not a number")
        labels.append(None if value is None else float(value))
    return labels


def difficulty_table_from_labels(data: pl.DataFrame, cfg: DifficultyConfig) -> pl.DataFrame:
    """Per-prompt table (same schema as estimate_difficulty's) with d_i from a rescaled label.

    successes, k, unjudged, truncated and solve_rate are null: no rollouts were drawn.
    """
    levels = read_labels(data, cfg.label_column)
    difficulty = difficulty_from_label(levels, cfg.label_low, cfg.label_high)
    table = pl.DataFrame(
        {
            "prompt_id": data["prompt_id"],
            "successes": pl.Series([None] * data.height, dtype=pl.Int64),
            "k": pl.Series([None] * data.height, dtype=pl.Int64),
            "unjudged": pl.Series([None] * data.height, dtype=pl.Int64),
            "truncated": pl.Series([None] * data.height, dtype=pl.Int64),
            "solve_rate": pl.Series([None] * data.height, dtype=pl.Float64),
            "difficulty": pl.Series(difficulty, dtype=pl.Float64, nan_to_null=True),
        },
        schema=PER_PROMPT_SCHEMA,
    )
    missing = table["difficulty"].null_count()
    if missing:
        logger.warning("%d prompts have no %r label and a null difficulty", missing, cfg.label_column)
    return table


def difficulty_array(per_prompt: pl.DataFrame, prompt_ids: Sequence[str]) -> np.ndarray:
    """d_i aligned to `prompt_ids` as float64, NaN where null; raises naming an id missing from the table."""
    lookup = dict(zip(per_prompt["prompt_id"].to_list(), per_prompt["difficulty"].to_list()))
    out = np.empty(len(prompt_ids), dtype=np.float64)
    for i, pid in enumerate(prompt_ids):
        if pid not in lookup:
            raise KeyError(f"prompt_id={pid!r} has no row in the difficulty table")
        out[i] = np.nan if lookup[pid] is None else lookup[pid]
    return out
