"""The paired change of a run over its base model: final minus base, per eval prompt, with a bootstrap CI.

Evaluation (`space/train/evaluation.py`) measures each model; this module compares two such per-prompt tables,
so the train layer needs nothing from the analysis layer.

    gain = paired_gain(base_table, final_table, "pass1", seed=0)   # {"base", "final", "diff", "lo", "hi", ...}
"""

from __future__ import annotations

import polars as pl

from space.analysis.stats import paired_bootstrap_ci


def paired_gain(base: pl.DataFrame, final: pl.DataFrame, column: str = "pass1", confidence: float = 0.95,
                n_boot: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Mean per-prompt change final - base of `column` and its paired bootstrap CI over eval prompts.

    Prompts are matched by `prompt_id`; a prompt unjudged (null) in either table is left out and counted.
    Returns {"base", "final", "diff", "lo", "hi", "prompts", "dropped"}.
    """
    for name, table in (("base", base), ("final", final)):
        missing = {"prompt_id", column} - set(table.columns)
        if missing:
            raise ValueError(f"{name} eval table lacks columns {sorted(missing)}")
    joined = base.select("prompt_id", column).join(final.select("prompt_id", column), on="prompt_id",
                                                   how="full", suffix="_final", coalesce=True)
    judged = joined.drop_nulls()
    if judged.height == 0:
        raise ValueError(f"no prompt has a judged {column!r} in both the base and the final evaluation")
    before, after = judged[column].to_numpy(), judged[f"{column}_final"].to_numpy()
    diff, lo, hi = paired_bootstrap_ci(before, after, confidence, n_boot, seed)
    return {"base": float(before.mean()), "final": float(after.mean()), "diff": diff, "lo": lo, "hi": hi,
            "prompts": float(judged.height), "dropped": float(joined.height - judged.height)}
