"""Rewrite a bench report from committed `cells.json` files with the current report code, plus the curriculum
issue's targets for one arm.

    .venv/bin/python infra/bench_rereport.py infra/results/bench/curriculum-5seeds --reference uniform-full \
        --arm refill --out infra/results/bench/curriculum-5seeds

`space bench` writes `report.md` with the report code of the commit it ran at (benches run in a pinned
worktree so their cells replay from cache); this script recomputes the table, the per-task table, Holm
p-values and bootstrap step counts from the cells' recorded facts (nothing is re-run) and appends the targets:
T1 final pass@1 vs the reference (+2 points, interval above 0), T2 steps to the reference's final gain within
half the budget (bootstrap upper bound), T3 effective groups >= 1.5x the reference's, T4 difficulty rollouts on
<= 10 % of the pool and <= 25 % of the pool trained on, T5 no task more than 2 points below the reference, and
no seed below its base model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "infra"))

from bench_factors import load_cells  # noqa: E402

from space.analysis.bench_plots import write_figures  # noqa: E402
from space.analysis.bench_report import arm_rows, json_safe, report_markdown, task_rows  # noqa: E402


def targets(row: dict, ref: dict, per_task: list[dict], pool: float, k: int) -> list[str]:
    """One line per target, measured figure first, then met / not met."""
    verdict = lambda ok: "**met**" if ok else "not met"  # noqa: E731
    budget = row["steps"]
    lines = [
        f"- T1 (final pass@1 >= reference + 2 points, 95 % interval above 0): {100 * row['vs_ref_pass1']:+.1f} "
        f"[{100 * row['vs_ref_pass1_lo']:+.1f}, {100 * row['vs_ref_pass1_hi']:+.1f}] points: "
        f"{verdict(row['vs_ref_pass1'] >= 0.02 and row['vs_ref_pass1_lo'] > 0)}",
        f"- T2 (reaches the reference's final gain in <= {budget / 2:.0f} steps, bootstrap upper bound): "
        f"{row['steps_to_ref']:.0f} [{row['steps_to_ref_lo']:.0f}, {row['steps_to_ref_hi']:.0f}] steps: "
        f"{verdict(row['steps_to_ref_hi'] <= budget / 2)}",
        f"- T3 (effective groups >= 1.5x the reference's): {row['effective_group_frac']:.3f} vs "
        f"{ref['effective_group_frac']:.3f} = {row['effective_group_frac'] / ref['effective_group_frac']:.2f}x: "
        f"{verdict(row['effective_group_frac'] >= 1.5 * ref['effective_group_frac'])}",
    ]
    measured = row["curation_rollouts"] / k / pool
    lines.append(f"- T4 (difficulty rollouts on <= 10 % of the pool, trains on <= 25 %): rollouts on "
                 f"{100 * measured:.0f} % of the pool, trained on {100 * row['pool_share']:.1f} %: "
                 f"{verdict(measured <= 0.10 + 1e-9 and row['pool_share'] <= 0.25)}")
    worst = min((r for r in per_task if r["arm"] == row["arm"]), key=lambda r: r["vs_ref"])
    lines.append(f"- T5 (no task more than 2 points below the reference): worst task {worst['task']} "
                 f"{100 * worst['vs_ref']:+.1f} points: {verdict(worst['vs_ref'] >= -0.02)}")
    lines.append(f"- No seed below its base model (paired interval, pass@1 / greedy): {row['below_base']} seeds "
                 f"below: {verdict(row['below_base'] == '0 / 0')}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="+", type=Path)
    parser.add_argument("--reference", default="uniform-full")
    parser.add_argument("--arm", action="append", default=[], help="arm(s) to check against the targets")
    parser.add_argument("--order", default="", help="comma-separated arm order of the tables")
    parser.add_argument("--name", default="")
    parser.add_argument("--k", type=int, default=8, help="difficulty rollouts per measured prompt")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells = load_cells([ROOT / g if not g.is_absolute() else g for g in args.grids])
    order = [a for a in args.order.split(",") if a] or None
    rows = arm_rows(cells, args.reference, order)
    per_task = task_rows(cells, args.reference, order)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = [p.name for p in write_figures(cells, rows, args.out)]  # from the cells, so merged grids plot together
    text = report_markdown(args.name or args.out.name, rows, args.reference, (), figures, None, per_task)
    by_arm = {r["arm"]: r for r in rows}
    pool = float(next(c["curation"]["pool"] for c in cells if c.get("curation")))
    for arm in args.arm:
        text += f"\n## Targets for `{arm}` (issue 17)\n\n" + "\n".join(
            targets(by_arm[arm], by_arm[args.reference], per_task, pool, args.k)) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text)
    (args.out / "rows.json").write_text(json.dumps(json_safe(rows), indent=2))
    print(text)
    if any(math.isnan(r["final_pass1"]) for r in rows):
        raise SystemExit("an arm has no final pass@1")


if __name__ == "__main__":
    main()
