"""The `space compare` report: finished runs side by side, as a table (rich, markdown, CSV) and figures.

Pure: takes one plain dict per run (a "run record", built from MLflow by `tasks.compare`) and returns
table rows, markdown, a polars frame and matplotlib figures. A value a run did not log is None in the
record and "-" in every rendered table (never 0). The pass@1 change and its paired 95% CI are the ones the
run logged (`space.analysis.gain.paired_gain`); nothing is re-estimated here.

A run record:
    {"run_id": "...", "run_name": "...", "policy": "ts_lp", "pool": "reduced", "K": 3, "l": 4, "seed": 3,
     "unique_prompts": 12, "steps": 6, "base_pass1": .., "final_pass1": .., "base_greedy": ..,
     "final_greedy": .., "gain_pass1": .., "gain_pass1_lo": .., "gain_pass1_hi": .., "curation_seconds": ..,
     "curve": [{"step": 0, "pass1": .., "greedy": ..}, ...],      # held-out accuracy after each evaluation
     "allocation": [[share of arm 0 per epoch], [arm 1], ...]}   # or None

    rows = table_rows(records)                 # formatted cells, one dict per run
    text = compare_markdown(records, ["accuracy_vs_step.png", ...])
    figures = compare_figures(records)         # {"accuracy_vs_step.png": Figure, "allocation.png": Figure}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import polars as pl

MISSING = "-"
Record = Mapping[str, Any]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(digits: int) -> Callable[[Any], str]:
    return lambda v: MISSING if _missing(v) else f"{float(v):.{digits}f}"


def _integer(value: Any) -> str:
    return MISSING if _missing(value) else str(int(value))


def _text(value: Any) -> str:
    return MISSING if _missing(value) or value == "" else str(value)


def _before_after(record: Record, metric: str) -> str:
    fmt = _number(3)
    base, final = record.get(f"base_{metric}"), record.get(f"final_{metric}")
    if _missing(base) and _missing(final):
        return MISSING
    return f"{fmt(base)} -> {fmt(final)}"


def _change(record: Record) -> str:
    diff, lo, hi = (record.get(k) for k in ("gain_pass1", "gain_pass1_lo", "gain_pass1_hi"))
    if _missing(diff):
        return MISSING
    interval = MISSING if _missing(lo) or _missing(hi) else f"[{lo:+.3f}, {hi:+.3f}]"
    return f"{diff:+.3f} {interval}"


def _run(record: Record) -> str:
    name, run_id = record.get("run_name"), record["run_id"]
    return f"{name} ({run_id[:8]})" if name else run_id


# (column header, how to render it from a record)
COLUMNS: list[tuple[str, Callable[[Record], str]]] = [
    ("run", _run),
    ("policy", lambda r: _text(r.get("policy"))),
    ("pool", lambda r: _text(r.get("pool"))),
    ("K", lambda r: _integer(r.get("K"))),
    ("l", lambda r: _integer(r.get("l"))),
    ("seed", lambda r: _integer(r.get("seed"))),
    ("unique prompts", lambda r: _integer(r.get("unique_prompts"))),
    ("steps", lambda r: _integer(r.get("steps"))),
    ("pass@1 base -> final", lambda r: _before_after(r, "pass1")),
    ("greedy base -> final", lambda r: _before_after(r, "greedy")),
    ("pass@1 change [paired 95% CI]", _change),
    ("curation s", lambda r: _number(1)(r.get("curation_seconds"))),
]
HEADERS = [name for name, _ in COLUMNS]
# the raw values behind the table (CSV columns); missing values are empty cells there
RAW_KEYS = ["run_id", "run_name", "policy", "pool", "K", "l", "seed", "unique_prompts", "steps", "base_pass1",
            "final_pass1", "base_greedy", "final_greedy", "gain_pass1", "gain_pass1_lo", "gain_pass1_hi",
            "curation_seconds"]


def _check(records: Sequence[Record]) -> None:
    if not records:
        raise ValueError("no runs to compare")
    for index, record in enumerate(records):
        if not record.get("run_id"):
            raise ValueError(f"run record {index} has no 'run_id'")


def table_rows(records: Sequence[Record]) -> list[dict[str, str]]:
    """One dict per run, header -> rendered cell ("-" where the run logged nothing)."""
    _check(records)
    return [{name: render(record) for name, render in COLUMNS} for record in records]


def table_markdown(records: Sequence[Record]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row[h] for h in HEADERS) + " |" for row in table_rows(records)]
    return "\n".join(lines)


def raw_frame(records: Sequence[Record]) -> pl.DataFrame:
    """The raw values (numbers stay numbers, missing ones are null), one row per run, for the CSV."""
    _check(records)
    rows = [{key: (None if _missing(r.get(key)) else r.get(key)) for key in RAW_KEYS} for r in records]
    schema = {key: pl.Utf8 for key in ("run_id", "run_name", "policy", "pool")}
    schema.update({key: pl.Int64 for key in ("K", "l", "seed", "unique_prompts", "steps")})
    schema.update({key: pl.Float64 for key in RAW_KEYS if key not in schema})
    return pl.DataFrame(rows, schema=schema)


def compare_markdown(records: Sequence[Record], figures: Sequence[str] = ()) -> str:
    """The report: the table, one sentence per run on its paired pass@1 change, then the figures."""
    from space.analysis.stats import describe_difference

    lines = ["# Run comparison", "",
             "Accuracies are on each run's held-out eval set (base model -> final model). The pass@1 change "
             "and its 95% CI are the paired bootstrap over eval prompts that each run logged. Curation s: "
             "the curation stages' compute seconds as recorded when they ran. '-': the run logged no value.",
             "", table_markdown(records), ""]
    for record in records:
        diff = record.get("gain_pass1")
        if _missing(diff):
            continue
        lo, hi = (float("nan") if _missing(record.get(k)) else record[k] for k in ("gain_pass1_lo", "gain_pass1_hi"))
        lines.append(f"- `{_run(record)}`: {describe_difference(diff, lo, hi, 'pass@1 change')}.")
    lines += [""] + [f"![{PurePath(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def accuracy_curves(records: Sequence[Record], metric: str) -> dict[str, dict[str, np.ndarray]]:
    """Per run with a curve: {"x": steps, "mean"/"lo"/"hi": the metric} (lo = hi: one run has no band)."""
    curves = {}
    for record in records:
        points = [p for p in record.get("curve") or [] if not _missing(p.get(metric)) and not _missing(p.get("step"))]
        if points:
            x = np.array([float(p["step"]) for p in points])
            y = np.array([float(p[metric]) for p in points])
            curves[_run(record)] = {"x": x, "mean": y, "lo": y, "hi": y}
    return curves


def _empty_panel(ax, title: str, note: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def accuracy_figure(records: Sequence[Record]):
    """Two panels, held-out pass@1 and greedy accuracy against optimiser steps, one line per run."""
    from space.analysis.bench_plots import draw_bands
    from space.analysis.plots import new_figure

    fig = new_figure(12.0, 4.2)
    for ax, metric, label in zip(fig.subplots(1, 2), ("pass1", "greedy"), ("pass@1", "greedy accuracy")):
        curves = accuracy_curves(records, metric)
        if curves:
            draw_bands(ax, curves, f"held-out {label}", "optimiser steps", label)
        else:
            _empty_panel(ax, f"held-out {label}", "no run logged evaluations")
    return fig


def allocation_figure(records: Sequence[Record]):
    """One panel per run, side by side: each cluster's share of the epoch's slots (clusters x epochs)."""
    from space.analysis.plots import draw_allocation_heatmap, new_figure

    widest = max((len(r["allocation"][0]) for r in records if r.get("allocation")), default=1)
    fig = new_figure(max(4.0, 0.6 * widest + 2.0) * len(records), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(records), squeeze=False)).ravel()
    for ax, record in zip(axes, records):
        if record.get("allocation"):
            draw_allocation_heatmap(ax, record["allocation"], title=_run(record))
        else:
            _empty_panel(ax, _run(record), "no allocation logged")
    return fig


def compare_figures(records: Sequence[Record]) -> dict[str, Any]:
    """File name -> matplotlib Figure: accuracy against steps and the allocation heatmaps side by side."""
    _check(records)
    return {"accuracy_vs_step.png": accuracy_figure(records), "allocation.png": allocation_figure(records)}


def write_report(records: Sequence[Record], out_dir: str | Path) -> dict[str, Path]:
    """compare.md, compare.csv and the figures' PNGs under `out_dir`; returns name -> path."""
    from space.analysis.plots import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: save_figure(fig, out / name) for name, fig in compare_figures(records).items()}
    (out / "compare.md").write_text(compare_markdown(records, list(paths)))
    raw_frame(records).write_csv(out / "compare.csv")
    return {"compare.md": out / "compare.md", "compare.csv": out / "compare.csv", **paths}
