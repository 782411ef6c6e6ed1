"""Finished cells of an unfinished `space bench` grid, read from its MLflow store (the grid's report is written only
when every cell is done): each cell's held-out pass@1 curve and its final minus the reference's, paired by seed.

    .venv/bin/python infra/bench_partial.py SPACE_HOME/mlflow.db curriculum-fresh uniform-full
"""
import sqlite3
import sys

import numpy as np
from scipy.stats import t

db, grid, reference = sys.argv[1], sys.argv[2], sys.argv[3]
con = sqlite3.connect(db)
prefix = f"{grid}-"
curves = {}
for rid, name in con.execute("select run_uuid, name from runs where name like ? order by start_time", (prefix + "%",)):
    pts = [v for s, v in con.execute("select step, value from metrics where run_uuid=? and key='eval/pass_at_1' order by step", (rid,))]
    if pts:
        arm, seed = name[len(prefix):].rsplit("-s", 1)
        curves[(arm, int(seed))] = pts
lines = ["| arm | seed | pass@1 every 32 steps (base first) | final minus the reference's (points) |", "|---|---|---|---|"]
diffs = {}
for (arm, seed), pts in sorted(curves.items()):
    ref = curves.get((reference, seed))
    d = "" if arm == reference or ref is None else f"{100 * (pts[-1] - ref[-1]):+.1f}"
    if d: diffs.setdefault(arm, []).append(pts[-1] - ref[-1])
    lines.append(f"| {arm} | {seed} | {' '.join(f'{v:.3f}' for v in pts)} | {d} |")
lines.append("")
for arm, ds in diffs.items():
    ds = np.array(ds); m = ds.mean()
    half = t.ppf(0.975, len(ds) - 1) * ds.std(ddof=1) / np.sqrt(len(ds)) if len(ds) > 1 else float("nan")
    lines.append(f"- `{arm}` minus {reference}, {len(ds)} seeds: {100*m:+.1f} points [{100*(m-half):+.1f}, {100*(m+half):+.1f}] (95 % t, paired)")
print("\n".join(lines))
