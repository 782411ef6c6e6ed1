"""Which factor decides SPaCe against uniform-full: paired differences across committed `space bench` grids.

    .venv/bin/python infra/bench_factors.py infra/results/bench/headline-5seeds \
        infra/results/bench/arms-3seeds infra/results/bench/ablations-3seeds \
        --pair spaCe-ts_lp:random-subset --out infra/results/bench/factors.md

Reads each grid's `cells.json` (written by `space bench`), merges them (a cell that two grids share, e.g. the
cached uniform-full cells, must carry the same pass@1 curve in both, or the script stops naming it), and writes:
- per arm, its pass@1 minus the reference's at every evaluated step (after each epoch), paired by seed, with
  a 95 % Student-t interval over the seeds both arms ran;
- the same final difference for any extra `--pair A:B`;
- per arm and epoch, the effective-group fraction (share of GRPO groups whose rewards are not all equal).
Nothing is re-run: the figures are the grids' own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from space.analysis.bench_report import mean_curve, paired_curve

ROOT = Path(__file__).resolve().parents[1]


def load_cells(grids: list[Path]) -> list[dict]:
    """Every grid's cells; a cell two grids share (same arm and seed) must have the same curve in both."""
    cells: dict[tuple[str, int], dict] = {}
    for grid in grids:
        path = grid / "cells.json"
        for cell in json.loads(path.read_text()):
            key = (cell["arm"], int(cell["seed"]))
            seen = cells.setdefault(key, cell)
            if [p["pass1"] for p in seen["curve"]] != [p["pass1"] for p in cell["curve"]]:
                raise SystemExit(f"{path}: arm {key[0]!r} seed {key[1]} differs from the same cell of another grid")
    return list(cells.values())


def _points(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value * 100:+.1f}"


def _cell(row: dict) -> str:
    return f"{_points(row['diff'])} [{_points(row['lo'])}, {_points(row['hi'])}]"


def arm_table(cells: list[dict], ref: str) -> list[str]:
    arms = sorted({c["arm"] for c in cells} - {ref})
    table = {arm: paired_curve(cells, arm, ref) for arm in arms}
    prompts = {(c["arm"], c["seed"]): c["unique_prompts"] for c in cells}
    steps = sorted({r["step"] for rows in table.values() for r in rows if r["step"] > 0})
    lines = [f"| arm | unique prompts | seeds | " + " | ".join(f"step {s:g}" for s in steps) + " |",
             "|---|---|---|" + "---|" * len(steps)]
    for arm, rows in table.items():
        if not rows:
            continue
        at = {r["step"]: r for r in rows}
        unique = np.mean([prompts[arm, s] for s in rows[0]["seeds"]])
        lines.append(f"| {arm} | {unique:,.0f} | {','.join(map(str, rows[0]['seeds']))} | "
                     + " | ".join(_cell(at[s]) if s in at else "-" for s in steps) + " |")
    return lines


def effective_group_table(cells: list[dict]) -> list[str]:
    """Per arm and epoch, the share of GRPO groups with unequal rewards (mean over the arm's seeds)."""
    arms = sorted({c["arm"] for c in cells})
    curves = {arm: mean_curve([c for c in cells if c["arm"] == arm], "epoch", "effective_group_frac", "epochs")
              for arm in arms}
    epochs = sorted({int(e) for curve in curves.values() for e in curve["x"]})
    lines = ["| arm | " + " | ".join(f"epoch {e + 1}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for arm, curve in curves.items():
        at = dict(zip(curve["x"].astype(int), curve["mean"]))
        lines.append(f"| {arm} | " + " | ".join(f"{at[e]:.2f}" if e in at else "-" for e in epochs) + " |")
    return lines


def report(cells: list[dict], ref: str, pairs: list[tuple[str, str]], grids: list[Path], command: str) -> str:
    lines = ["# Which factor decides it: pass@1 differences in points, paired by seed", "",
             f"Command: `{command}`", "",
             "Grids: " + ", ".join(f"`{g.relative_to(ROOT) if g.is_relative_to(ROOT) else g}`" for g in grids), "",
             f"## Each arm minus `{ref}` after each epoch (95 % t-interval over the shared seeds)", ""]
    lines += arm_table(cells, ref)
    lines += ["", "## Effective-group fraction by epoch (mean over seeds)", ""] + effective_group_table(cells)
    if pairs:
        lines += ["", "## Other pairs, final pass@1 (after the last epoch)", "", "| pair | seeds | difference |",
                  "|---|---|---|"]
        for a, b in pairs:
            rows = paired_curve(cells, a, b)
            if rows:
                lines.append(f"| {a} minus {b} | {','.join(map(str, rows[-1]['seeds']))} | {_cell(rows[-1])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path, help="folders holding a space bench cells.json")
    parser.add_argument("--reference", default="uniform-full")
    parser.add_argument("--pair", action="append", default=[], help="A:B, final pass@1 of A minus B")
    parser.add_argument("--out", type=Path, default=ROOT / "infra" / "results" / "bench" / "factors.md")
    args = parser.parse_args()
    grids = [g.resolve() for g in args.grids]
    pairs = [tuple(p.split(":", 1)) for p in args.pair]
    command = "python infra/bench_factors.py " + " ".join(sys.argv[1:])
    text = report(load_cells(grids), args.reference, pairs, grids, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
