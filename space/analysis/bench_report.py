"""The `space bench` report: per-arm statistics over seeds, paired differences against a reference arm.

Pure: takes per-cell result dicts (see `summarise_cell`), returns table rows and markdown; figures are
drawn by `space.analysis.bench_plots`. Intervals over seeds are Student-t (`space.analysis.stats.seed_interval`; undefined,
shown as n/a, with one seed). Differences against the reference arm are paired by seed.

    cells = [summarise_cell(arm, seed, training, gains, seconds) for ...]
    rows = arm_rows(cells, reference="uniform-full")
    text = report_markdown("smoke", rows, reference="uniform-full", figures=[...])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

from space.analysis.stats import bootstrap_steps_to, holm_adjust, paired_t_pvalue, seed_interval, steps_to_fraction

NAN = float("nan")


def _point(step: float, rollouts: float, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
    return {"step": float(step), "rollouts": float(rollouts), "epoch": epoch,
            "greedy": float(metrics["eval/all/greedy_acc"]), "pass1": float(metrics["eval/all/pass_at_1"])}


def summarise_cell(arm: str, seed: int, training: dict[str, Any], gains: dict[str, Any], seconds: float,
                   run_id: str | None = None, curation: dict[str, int] | None = None) -> dict[str, Any]:
    """One cell's result from the train flow's output: curves, per-epoch group stats, final metrics, gains,
    per-task final pass@1, and (when given) what curation spent and the share of the pool trained on."""
    epochs = training["epochs"]
    steps = [e["metrics"]["global_step"] for e in epochs]
    rollouts = np.cumsum([e["metrics"]["rollouts"] for e in epochs]).tolist()
    curve = [_point(0, 0, -1, training["base_eval"]["metrics"])]
    for evaluation in training["epoch_evals"]:
        e = evaluation["epoch"]
        curve.append(_point(steps[e], rollouts[e], e, evaluation["metrics"]))
    if curve[-1]["epoch"] != len(epochs) - 1:  # the last epoch was not on the eval schedule: the final eval
        curve.append(_point(steps[-1], rollouts[-1], len(epochs) - 1, training["final_eval"]["metrics"]))
    per_epoch = [{"epoch": e["epoch"], "step": float(steps[i]), "rollouts": float(rollouts[i]),
                  "effective_group_frac": 1.0 - float(e["metrics"]["frac_reward_zero_std"])}
                 for i, e in enumerate(epochs)]
    return {"arm": arm, "seed": seed, "run_id": run_id, "seconds": float(seconds),
            "train_seconds": float(sum(e["metrics"]["seconds/epoch"] for e in epochs)),
            "unique_prompts": int(training["unique_prompts"]), "steps": float(steps[-1]),
            "rollouts": float(rollouts[-1]), "base": {k: curve[0][k] for k in ("greedy", "pass1")},
            "final": {k: curve[-1][k] for k in ("greedy", "pass1")}, "gain": gains, "curve": curve,
            "epochs": per_epoch, "tasks": task_finals(training), "curation": curation or {},
            "pool_share": (training["unique_prompts"] / curation["pool"]) if curation else NAN}


def task_finals(training: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per task (eval/<task>/...): base and final pass@1."""
    base, final = training["base_eval"]["metrics"], training["final_eval"]["metrics"]
    names = sorted({k.split("/")[1] for k in final if k.startswith("eval/") and k.endswith("/pass_at_1")} - {"all"})
    return {name: {"base": float(base[f"eval/{name}/pass_at_1"]), "final": float(final[f"eval/{name}/pass_at_1"])}
            for name in names}


def _by_arm(cells: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    arms: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in cells:
        if cell["seed"] in arms.setdefault(cell["arm"], {}):
            raise ValueError(f"two results for arm {cell['arm']!r} seed {cell['seed']}")
        arms[cell["arm"]][cell["seed"]] = cell
    return arms


def mean_curve(cells: Sequence[dict[str, Any]], x: str, y: str, series: str = "curve") -> dict[str, np.ndarray]:
    """Mean, min and max of `y` over seeds at each value of `x` (steps, rollouts or epoch)."""
    points: dict[float, list[float]] = {}
    for cell in cells:
        for point in cell[series]:
            points.setdefault(float(point[x]), []).append(float(point[y]))
    xs = sorted(points)
    return {"x": np.array(xs), "mean": np.array([np.mean(points[v]) for v in xs]),
            "lo": np.array([np.min(points[v]) for v in xs]), "hi": np.array([np.max(points[v]) for v in xs]),
            "n": np.array([len(points[v]) for v in xs])}


def _interval(values: Sequence[float]) -> tuple[float, float, float]:
    return seed_interval(values) if len(values) else (NAN, NAN, NAN)


def _paired(arm: dict[int, dict], ref: dict[int, dict], key: str) -> tuple[float, float, float, int]:
    common = sorted(set(arm) & set(ref))
    diffs = [arm[s]["final"][key] - ref[s]["final"][key] for s in common]
    return (*_interval(diffs), len(common))


def paired_curve(cells: Sequence[dict[str, Any]], arm: str, reference: str, y: str = "pass1") -> list[dict]:
    """Per evaluated step both arms share: mean of (arm - reference) over the seeds both ran, its t-interval."""
    arms = _by_arm(cells)
    seeds = sorted(set(arms.get(arm, {})) & set(arms.get(reference, {})))
    if not seeds:
        return []
    pairs = [[{p["step"]: p[y] for p in arms[name][s]["curve"]} for name in (arm, reference)] for s in seeds]
    steps = sorted(set.intersection(*(set(a) & set(r) for a, r in pairs)))
    rows = []
    for step in steps:
        diff, lo, hi = _interval([a[step] - r[step] for a, r in pairs])
        rows.append({"step": step, "diff": diff, "lo": lo, "hi": hi, "seeds": seeds})
    return rows


def _steps_interval(cells: list[dict], base: float, target: float, fraction: float) -> tuple[float, float, float]:
    """Steps for the seed-mean pass@1 curve to reach base + fraction x (target - base), with a bootstrap
    interval over seeds (inf: not reached within the budget); NaN when the seeds' curves differ in steps."""
    curves = [([p["step"] for p in c["curve"]], [p["pass1"] for p in c["curve"]]) for c in cells]
    try:
        return bootstrap_steps_to(curves, base, target, fraction)
    except ValueError:
        return NAN, NAN, NAN


def _below_base(cells: list[dict]) -> str:
    """Seeds whose paired gain interval lies below 0, as 'pass@1 / greedy' counts ('n/a' without gains)."""
    counts = []
    for key in ("pass_at_1", "greedy_acc"):
        gains = [c["gain"].get(key) for c in cells]
        counts.append("n/a" if any(g is None for g in gains) else str(sum(g["hi"] < 0 for g in gains)))
    return " / ".join(counts)


def _to_reach(cells: list[dict], x: str, base: float, target: float) -> float:
    curve = mean_curve(cells, x, "pass1")
    return steps_to_fraction(curve["x"], curve["mean"], base, target) if len(curve["x"]) else NAN


def arm_rows(cells: Sequence[dict[str, Any]], reference: str, order: Sequence[str] | None = None) -> list[dict]:
    """One row per arm: finals with seed CIs, gain over base, paired differences vs `reference`, efficiency."""
    arms = _by_arm(cells)
    if reference not in arms:
        raise ValueError(f"no results for the reference arm {reference!r} (arms with results: {sorted(arms)})")
    ref = arms[reference]
    ref_base = float(np.mean([c["base"]["pass1"] for c in ref.values()]))
    ref_final = float(np.mean([c["final"]["pass1"] for c in ref.values()]))
    rows = []
    for name in order or list(arms):
        if name not in arms:
            continue
        seeds = arms[name]
        cs = [seeds[s] for s in sorted(seeds)]
        base = float(np.mean([c["base"]["pass1"] for c in cs]))
        target = base + (ref_final - ref_base)  # the reference's gain, measured from this arm's base
        row: dict[str, Any] = {"arm": name, "seeds": len(cs), "base_pass1": base,
                               "base_greedy": float(np.mean([c["base"]["greedy"] for c in cs]))}
        for key in ("greedy", "pass1"):
            row[f"final_{key}"], row[f"final_{key}_lo"], row[f"final_{key}_hi"] = _interval(
                [c["final"][key] for c in cs])
        row["gain_pass1"], row["gain_pass1_lo"], row["gain_pass1_hi"] = _interval(
            [c["final"]["pass1"] - c["base"]["pass1"] for c in cs])
        for key in ("pass1", "greedy"):  # the reference row has no difference with itself
            d, lo, hi, n = (NAN, NAN, NAN, len(cs)) if name == reference else _paired(seeds, ref, key)
            row[f"vs_ref_{key}"], row[f"vs_ref_{key}_lo"], row[f"vs_ref_{key}_hi"], row["paired_seeds"] = d, lo, hi, n
        row["steps_to_90"] = _to_reach(cs, "step", base, target)
        row["steps_to_ref"], row["steps_to_ref_lo"], row["steps_to_ref_hi"] = _steps_interval(cs, base, target, 1.0)
        row["vs_ref_pass1_p"] = NAN if name == reference else paired_t_pvalue(
            [seeds[s]["final"]["pass1"] - ref[s]["final"]["pass1"] for s in sorted(set(seeds) & set(ref))])
        row["below_base"] = _below_base(cs)
        row["curation_rollouts"] = float(np.mean([c.get("curation", {}).get("difficulty_rollouts", NAN) for c in cs]))
        row["pool_share"] = float(np.mean([c.get("pool_share", NAN) for c in cs]))
        row["rollouts_to_90"] = _to_reach(cs, "rollouts", base, target)
        row["steps"] = float(np.mean([c["steps"] for c in cs]))
        row["unique_prompts"] = float(np.mean([c["unique_prompts"] for c in cs]))
        row["effective_group_frac"] = float(np.mean([e["effective_group_frac"] for c in cs for e in c["epochs"]]))
        row["seconds"] = float(np.mean([c["seconds"] for c in cs]))
        row["train_seconds"] = float(np.mean([c["train_seconds"] for c in cs]))
        rows.append(row)
    for row, p in zip(rows, holm_adjust([r["vs_ref_pass1_p"] for r in rows]), strict=True):
        row["vs_ref_pass1_p_holm"] = p  # the family: every arm against the reference
    return rows


def task_rows(cells: Sequence[dict[str, Any]], reference: str, order: Sequence[str] | None = None) -> list[dict]:
    """Per (arm, task of the held-out mix): final pass@1 over seeds and its difference from the reference,
    paired by seed (t-interval)."""
    arms = _by_arm(cells)
    ref = arms.get(reference, {})
    rows = []
    for name in order or list(arms):
        seeds = arms.get(name, {})
        tasks = sorted({t for c in seeds.values() for t in c.get("tasks", {})})
        for task in tasks:
            finals = [c["tasks"][task]["final"] for c in seeds.values() if task in c.get("tasks", {})]
            common = [s for s in sorted(set(seeds) & set(ref)) if task in seeds[s].get("tasks", {})
                      and task in ref[s].get("tasks", {})]
            diff = _interval([seeds[s]["tasks"][task]["final"] - ref[s]["tasks"][task]["final"] for s in common])
            rows.append({"arm": name, "task": task, "final_pass1": float(np.mean(finals)),
                         "vs_ref": NAN if name == reference else diff[0], "vs_ref_lo": diff[1], "vs_ref_hi": diff[2]})
    return rows


def task_table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Arms down, tasks across: final pass@1 and, for other arms, the paired difference from the reference."""
    tasks = sorted({r["task"] for r in rows})
    lines = ["| arm | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        by_task = {r["task"]: r for r in rows if r["arm"] == arm}
        cells = []
        for task in tasks:
            r = by_task.get(task)
            if r is None:
                cells.append("n/a")
                continue
            diff = "" if math.isnan(r["vs_ref"]) else f" ({_ci(r, 'vs_ref', True)})"
            cells.append(f"{r['final_pass1']:.3f}{diff}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ci(row: dict, key: str, signed: bool = False) -> str:
    value, lo, hi = row[key], row[f"{key}_lo"], row[f"{key}_hi"]
    if isinstance(value, float) and math.isnan(value):
        return "—"
    fmt = (lambda v: "n/a" if math.isnan(v) else f"{v:+.3f}") if signed else _fmt  # noqa: E731
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


COLUMNS = ["arm", "seeds", "unique prompts", "pool share", "curation rollouts", "base pass@1",
           "final pass@1 [95% CI]", "final greedy [95% CI]", "pass@1 gain over base [95% CI]",
           "pass@1 vs ref [95% CI]", "Holm p", "greedy vs ref [95% CI]", "steps to 90% of ref gain",
           "steps to ref's final [95% bootstrap]", "rollouts to 90%", "effective groups",
           "seeds below base (pass@1 / greedy)", "training s / cell", "cell wall-clock s"]


def _steps(row: dict) -> str:
    value, lo, hi = row["steps_to_ref"], row["steps_to_ref_lo"], row["steps_to_ref_hi"]
    if math.isnan(value):
        return "n/a"
    show = lambda v: "never" if math.isinf(v) else f"{v:.0f}"  # noqa: E731
    return f"{show(value)} [{show(lo)}, {show(hi)}]"


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The per-arm table as markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [r["arm"], str(r["seeds"]), f"{r['unique_prompts']:.1f}", _fmt(r["pool_share"]),
                 _fmt(r["curation_rollouts"], 0), _fmt(r["base_pass1"]), _ci(r, "final_pass1"),
                 _ci(r, "final_greedy"), _ci(r, "gain_pass1", True), _ci(r, "vs_ref_pass1", True),
                 _fmt(r["vs_ref_pass1_p_holm"]), _ci(r, "vs_ref_greedy", True), _fmt(r["steps_to_90"], 0),
                 _steps(r), _fmt(r["rollouts_to_90"], 0), _fmt(r["effective_group_frac"]), r["below_base"],
                 _fmt(r["train_seconds"], 1), _fmt(r["seconds"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(name: str, rows: Sequence[dict[str, Any]], reference: str, budget: Sequence[str] = (),
                    figures: Sequence[str] = (), descriptions: dict[str, str] | None = None,
                    per_task: Sequence[dict[str, Any]] = ()) -> str:
    """The whole report: settings, the per-arm table, one sentence per arm against the reference, figures."""
    from space.analysis.stats import describe_difference

    lines = [f"# Bench `{name}`", "", f"Reference arm: `{reference}`. Budget overrides: "
             + (", ".join(f"`{b}`" for b in budget) or "none") + ".", "",
             "Intervals are 95% Student-t intervals over seeds (n/a with one seed); differences against the "
             "reference are paired by seed. Steps (and rollouts) to 90%: the first evaluated point at which the "
             "arm's seed-mean pass@1 reaches its base + 0.9 x the reference's final gain (n/a: never, or the "
             "reference did not gain). Effective groups: share of GRPO groups whose rewards are not all equal, "
             "mean over epochs and seeds. Training s: the epochs' own compute time as recorded when they ran "
             "(kept when later replayed from cache); cell wall-clock: this execution of the cell, cache hits "
             "included.", "", table_markdown(rows), ""]
    for r in rows:
        note = (descriptions or {}).get(r["arm"], "")
        if r["arm"] == reference:
            continue
        if math.isnan(r["vs_ref_pass1"]):
            lines.append(f"- `{r['arm']}`: no seed shared with the reference.")
            continue
        sentence = describe_difference(r["vs_ref_pass1"], r["vs_ref_pass1_lo"], r["vs_ref_pass1_hi"],
                                       f"pass@1 minus {reference}'s")
        lines.append(f"- `{r['arm']}`" + (f" ({note})" if note else "") + f": {sentence} "
                     f"({r['paired_seeds']} paired seeds).")
    if per_task:
        lines += ["", "Final pass@1 per task of the held-out mix, mean over seeds; in brackets the difference from "
                  f"`{reference}`, paired by seed, with its 95% t-interval.", "", task_table_markdown(per_task)]
    lines += ["", "Holm p: two-sided paired t-test of final pass@1 against the reference, Holm-adjusted over all "
              "arms of this table. Steps to ref's final: steps for the arm's seed-mean curve to reach its base plus "
              "the reference's final gain, with a percentile bootstrap interval over seeds (never: not within the "
              "budget). Seeds below base: seeds whose paired bootstrap interval of the gain over the base model "
              "(400 eval prompts) lies below 0."]
    lines += [""] + [f"![{PurePath(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def json_safe(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, recursively (for JSON, Prefect tables and MLflow)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
