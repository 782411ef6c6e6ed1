"""How well does a predicted difficulty pick the informative pool? The measurement behind the default of
`train.informative_min_signal`.

Pairs each curation made with `curate.difficulty.source: propagate` under a SPACE_HOME
(`artifacts/select/<key>/curation.parquet` with a `measured` column) with the full-rollout curation of the same
reference model (the one whose solve rates equal it on every measured prompt), and for the unmeasured prompts
compares "informative by prediction" (8 samples at the predicted solve rate would mix successes and failures with
probability >= the threshold) with "informative by the full rollouts" (solve rate strictly between 0 and 1).

    .venv/bin/python infra/informative_threshold.py --home "$SPACE_HOME" --out infra/results/curriculum/informative_threshold.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from space.train.epoch import predicted_signal  # noqa: E402

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def pairs(home: Path) -> list[tuple[str, pl.DataFrame, pl.DataFrame]]:
    """(propagated curation's folder, propagated table, full table) for each propagated curation with a match."""
    tables = {path.parent.name: pl.read_parquet(path) for path in sorted(home.glob("artifacts/select/*/curation.parquet"))}
    full = {key: t for key, t in tables.items() if "measured" not in t.columns}
    found, seen = [], set()
    for key, table in tables.items():
        digest = int(table.hash_rows().sum()) if "measured" in table.columns else None
        if digest is None or digest in seen:  # the same curation cached at several commits counts once
            continue
        seen.add(digest)
        measured = table.filter(pl.col("measured")).select("prompt_id", "solve_rate")
        for other in full.values():
            joined = measured.join(other.select("prompt_id", pl.col("solve_rate").alias("full")), on="prompt_id")
            if joined.height == measured.height and (joined["solve_rate"] == joined["full"]).all():
                found.append((key, table, other))
                break
    return found


def rows(propagated: pl.DataFrame, full: pl.DataFrame) -> list[str]:
    """One markdown row per threshold: share kept, precision and recall against the full rollouts."""
    table = propagated.with_columns(predicted_signal(propagated).alias("signal")).filter(~pl.col("measured")).join(
        full.select("prompt_id", pl.col("solve_rate").alias("full")), on="prompt_id")
    truth = ((table["full"] > 0) & (table["full"] < 1)).to_numpy()
    signal = table["signal"].to_numpy()  # the rule `train.pool: informative` applies (space.train.epoch)
    out = []
    for threshold in THRESHOLDS:
        keep = signal >= threshold
        out.append(f"| {threshold} | {keep.mean():.3f} | {truth[keep].mean():.3f} | {keep[truth].mean():.3f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = ["# Predicted difficulty as a filter for the informative pool", "",
             f"Command: `python infra/informative_threshold.py --home SPACE_HOME --out {args.out}`", "",
             "Unmeasured prompts of each propagated curation (10 % measured, kNN + likelihood), against the same "
             "reference model's full 8-rollout solve rates. kept: share of the unmeasured prompts whose predicted "
             "mixed-group probability reaches the threshold; precision: share of those the full rollouts found "
             "informative (solve rate strictly between 0 and 1); recall: share of the informative ones kept. "
             "Each heading gives the full rollouts' informative share of the whole pool; a curation cached at several commits appears once.", ""]
    for key, propagated, full in pairs(args.home):
        share = ((full["solve_rate"] > 0) & (full["solve_rate"] < 1)).mean()
        lines += [f"## curation {key} (full rollouts: {share:.3f} informative)", "",
                  "| threshold | kept | precision | recall |", "|---|---|---|---|", *rows(propagated, full), ""]
    args.out.write_text("\n".join(lines))
    print(args.out)


if __name__ == "__main__":
    main()
