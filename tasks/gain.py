"""The held-out gain of a run: final minus base model, per eval prompt, with a paired bootstrap CI.

Reads the per-prompt tables that the `evaluate` task wrote (their paths are in its manifests), calls
`space.analysis.gain.paired_gain` and logs `gain/<metric>/{diff,lo,hi}` to the run.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect import task

from tasks import tracking
from tasks.stages import STAGE_OPTIONS

METRICS = {"pass_at_1": "pass1", "greedy_acc": "greedy"}


@task(**STAGE_OPTIONS, name="paired-gain")
def paired_gain(run_id: str, base_eval: dict[str, Any], final_eval: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """{metric: {base, final, diff, lo, hi, prompts, dropped}} for pass_at_1 and greedy_acc; logged to `run_id`."""
    from space.analysis.gain import paired_gain as compute

    base, final = pl.read_parquet(base_eval["path"]), pl.read_parquet(final_eval["path"])
    gains = {name: compute(base, final, column, seed=seed) for name, column in METRICS.items()}
    tracking.log_metrics(run_id, {f"gain/{name}/{key}": value for name, gain in gains.items()
                                  for key, value in gain.items()})
    return gains


def describe_gains(gains: dict[str, Any]) -> list[str]:
    """One line per metric: base -> final, and the paired CI of the change in words."""
    from space.analysis.stats import describe_difference

    lines = []
    for name, gain in gains.items():
        change = describe_difference(gain["diff"], gain["lo"], gain["hi"], "change")
        lines.append(f"held-out {name}: base {gain['base']:.3f} -> final {gain['final']:.3f}; {change} "
                     f"(paired bootstrap over {int(gain['prompts'])} eval prompts)")
    return lines
