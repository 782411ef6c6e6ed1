"""Is a prompt that gave a no-signal GRPO group likely to give another? The measurement behind `train.skip`.

Reads every training stage under a SPACE_HOME (`artifacts/train/<key>/epoch_NNN/rollouts.parquet`, as `space bench`
leaves them) and, per run, follows each prompt from one use to the next: the share of groups with signal
(rewards not all equal), P(no signal | the prompt's previous group had none), P(no signal | it had signal), the
share of no-signal groups that were all solved, and the share of groups that were a prompt's repeat use. Runs
are grouped by the pool the picker drew from (its size: the whole builtin pool is 1,998 prompts, the reduced
pool 100, the informative pool about 860-1,270 depending on the seed's reference model) and their epochs.

    .venv/bin/python infra/no_signal_persistence.py --home "$SPACE_HOME" --out infra/results/curriculum/no_signal_persistence.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

COLUMNS = ("groups with signal", "P(none | previous none)", "P(none | previous signal)",
           "no-signal groups all solved", "repeat uses")


def run_figures(run: Path) -> tuple[tuple[int, int, str], list[float]] | None:
    """(pool size, epochs, picker kind) and the five figures of one training run; None without rollouts."""
    epochs = sorted(run.glob("epoch_*/rollouts.parquet"))
    if not epochs:
        return None
    picker = json.loads((run / "epoch_000" / "state.json").read_text())["picker"]
    key = (sum(len(m) for m in picker["members"]), len(epochs), picker.get("kind", "fixed"))
    rollouts = pl.concat([pl.read_parquet(p).select("epoch", "group", "prompt_id", "reward", "solved") for p in epochs])
    groups = (rollouts.group_by("epoch", "group", "prompt_id")
              .agg(none=(pl.col("reward").max() - pl.col("reward").min()) <= 1e-9, solved=pl.col("solved").mean())
              .sort("prompt_id", "epoch", "group")
              .with_columns(previous=pl.col("none").shift(1).over("prompt_id")))
    repeats = groups.filter(pl.col("previous").is_not_null())
    none = groups.filter(pl.col("none"))
    return key, [1 - groups["none"].mean(), repeats.filter(pl.col("previous"))["none"].mean(),
                 repeats.filter(~pl.col("previous"))["none"].mean(),
                 (none["solved"] > 0.5).mean() if none.height else float("nan"), repeats.height / groups.height]


def table(home: Path) -> str:
    runs: dict[tuple[int, int, str], list[list[float]]] = defaultdict(list)
    for run in sorted((home / "artifacts" / "train").iterdir()):
        found = run_figures(run)
        if found is not None:
            runs[found[0]].append([np.nan if v is None else v for v in found[1]])
    lines = ["| pool size | epochs | picker | runs | " + " | ".join(COLUMNS) + " |", "|---" * (4 + len(COLUMNS)) + "|"]
    for (size, epochs, kind), rows in sorted(runs.items()):
        means = np.nanmean(np.asarray(rows, dtype=float), axis=0)
        lines.append(f"| {size} | {epochs} | {kind} | {len(rows)} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the SPACE_HOME the benches ran in")
    parser.add_argument("--out", type=Path, help="markdown file to write (default: print)")
    args = parser.parse_args()
    text = ("# No-signal groups: how often the next use of the same prompt gives another\n\n"
            "Written by `infra/no_signal_persistence.py` (its docstring says what each column is); mean over the runs"
            " of each row.\n\n" + table(args.home))
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
