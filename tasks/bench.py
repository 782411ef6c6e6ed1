"""Bench tasks: the parent MLflow run, one cached task per (arm, seed) cell, and the report.

A cell runs the stages of `space run` (bootstrap -> curate -> train -> final eval, as subflows) under its
own MLflow run, a child of the bench's parent run, and returns its raw results (per-epoch metrics,
evaluations, gains, seconds); the report task derives everything else from them (`cell_summary`).
Cells are cached on (arm, seed, resolved recipe, parent run) plus the task's source, so re-running a
killed or finished grid skips the finished cells; the parent run is found again by the grid's
fingerprint, so a resumed grid keeps one parent. Inside a cell, the stage caches make shared curation
(the same pool, model and curation settings) cheap.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from space.analysis.bench import BenchCell, BenchSpec
from space.config import Recipe, compare_keys, dump_recipe, fingerprint, flatten
from space.provenance import code_version
from tasks import tracking
from tasks.common import CACHED
from tasks.stages import STAGE_OPTIONS


def bench_fingerprint(spec: BenchSpec, cells: list[BenchCell]) -> str:
    """What the grid runs: name, reference and every cell's resolved recipe (not max_parallel)."""
    return fingerprint("bench", code_version(), spec.name, spec.reference, [c.recipe for c in cells])


def preload_libraries() -> None:
    """Resolve the lazily loaded library names once, in this thread, before cells run in parallel threads.

    transformers resolves top-level names lazily (`_LazyModule.__getattr__`); two cells resolving them at
    once failed here with "cannot import name 'AutoTokenizer' from 'transformers'" (max_parallel = 2).
    """
    import sentence_transformers
    import transformers
    import transformers.models.llama.modeling_llama  # noqa: F401 - the auto classes import it on first use
    import trl

    for name in ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "GenerationConfig", "LlamaConfig",
                 "LlamaForCausalLM", "LogitsProcessorList", "PreTrainedTokenizerFast", "PrinterCallback",
                 "TrainerCallback", "set_seed"):
        getattr(transformers, name)
    for name in ("GRPOConfig", "GRPOTrainer"):
        getattr(trl, name)
    getattr(sentence_transformers, "SentenceTransformer")


@task(**STAGE_OPTIONS, name="open-bench-run", retries=2, retry_delay_seconds=3)
def open_bench_run(spec: BenchSpec, cells: list[BenchCell], spec_yaml: str) -> str:
    """The grid's parent MLflow run: the existing one for the same grid (any status), else a new one."""
    client = tracking.client()
    exp_id = tracking.experiment_id()
    key = bench_fingerprint(spec, cells)
    found = client.search_runs([exp_id], filter_string=f"tags.`space.bench_fingerprint` = '{key}'",
                               order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    tags = {"space.stage": "bench", "space.bench": spec.name, "space.bench_fingerprint": key,
            "space.reference": spec.reference}
    run_id = client.create_run(exp_id, run_name=f"bench-{spec.name}", tags=tags).info.run_id
    tracking.log_params(run_id, {"bench.name": spec.name, "bench.seeds": list(spec.seeds),
                                 "bench.reference": spec.reference, "bench.budget": list(spec.budget),
                                 "bench.arms": [a.name for a in spec.arms]})
    tracking.log_text(run_id, spec_yaml, "bench.yaml")
    return run_id


@task(**STAGE_OPTIONS, name="bench-cell", cache_policy=CACHED, persist_result=True)
def run_cell(bench: str, arm: str, seed: int, recipe: Recipe, parent_run_id: str) -> dict[str, Any]:
    """Run one cell (the stages of `space run`) under a child MLflow run; return its raw results.

    The cached value holds facts (per-epoch metrics, evaluations, gains, seconds), not derived numbers:
    the report derives curves and statistics afresh (`cell_summary`), so a change to the report code never
    meets a stale cached summary (TASK_SOURCE covers only this function's lines, PrefectHQ/prefect#23062).
    """
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from flows.train import train_flow
    from tasks.gain import paired_gain

    start = time.perf_counter()
    tags = {"space.stage": "bench-cell", "space.bench": bench, "space.arm": arm, "space.recipe": recipe.name,
            **compare_keys(recipe), "space.seed": str(seed),
            "space.fingerprint": fingerprint("bench-cell", code_version(), parent_run_id, arm, seed, recipe)}
    run_id = tracking.open_run(f"{bench}-{arm}-s{seed}", tags, {**flatten(recipe), **compare_keys(recipe)},
                               dump_recipe(recipe), parent_run_id)
    model = bootstrap_flow(recipe)
    curation = curate_flow(recipe, model, parent_run_id=run_id)
    training = train_flow(recipe, model, curation, parent_run_id=run_id)
    gains = paired_gain(run_id, training["base_eval"], training["final_eval"], recipe.seed)
    raw = {"arm": arm, "seed": seed, "run_id": run_id, "seconds": time.perf_counter() - start, "gains": gains,
           "curation": curation_facts(curation["stages"]),
           "training": {"epochs": [{"epoch": e["epoch"], "metrics": e["metrics"]} for e in training["epochs"]],
                        "base_eval": {"metrics": training["base_eval"]["metrics"]},
                        "final_eval": {"metrics": training["final_eval"]["metrics"]},
                        "epoch_evals": training["epoch_evals"], "unique_prompts": training["unique_prompts"]}}
    cell = cell_summary(raw)
    for point in cell["curve"]:
        tracking.log_metrics(run_id, {"eval/pass_at_1": point["pass1"], "eval/greedy_acc": point["greedy"]},
                             step=int(point["step"]))
    tracking.log_metrics(run_id, {"final/pass_at_1": cell["final"]["pass1"],
                                  "final/greedy_acc": cell["final"]["greedy"], "unique_prompts": cell["unique_prompts"],
                                  "seconds/cell": cell["seconds"], "steps": cell["steps"], "rollouts": cell["rollouts"]})
    tracking.close_run(run_id)
    return raw


def curation_facts(stages: dict[str, Any]) -> dict[str, int]:
    """What curation spent and kept: difficulty rollouts drawn (0 when the difficulty came from labels), pool
    size and the reduced pool's size."""
    import polars as pl

    path = stages["difficulty"].get("rollouts")
    rollouts = pl.scan_parquet(path).select(pl.len()).collect().item() if path else 0
    return {"difficulty_rollouts": int(rollouts), "pool": int(stages["select"]["pool"]),
            "selected": int(stages["select"]["selected"])}


def cell_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """A cell's raw results (as `run_cell` returns them) -> the summary the report uses."""
    from space.analysis.bench_report import summarise_cell

    return summarise_cell(raw["arm"], raw["seed"], raw["training"], raw["gains"], raw["seconds"], raw["run_id"],
                          raw.get("curation"))


def _artifact_key(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"bench-{name}".lower()).strip("-")


@task(**STAGE_OPTIONS, name="bench-report")
def write_report(spec: BenchSpec, raw_cells: list[dict[str, Any]], out_dir: str,
                 parent_run_id: str) -> dict[str, Any]:
    """Per-arm table (markdown + JSON), figures; logged to the parent run and as Prefect artifacts."""
    from space.analysis.bench_plots import write_figures
    from space.analysis.bench_report import arm_rows, json_safe, report_markdown, task_rows

    cells = [cell_summary(raw) for raw in raw_cells]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = arm_rows(cells, spec.reference, order=[a.name for a in spec.arms])
    figures = write_figures(cells, rows, out)
    text = report_markdown(spec.name, rows, spec.reference, spec.budget, [p.name for p in figures],
                           {a.name: a.description for a in spec.arms if a.description},
                           task_rows(cells, spec.reference, [a.name for a in spec.arms]))
    (out / "report.md").write_text(text)
    (out / "rows.json").write_text(json.dumps(json_safe(rows), indent=2))
    (out / "cells.json").write_text(json.dumps(json_safe(cells), indent=2))
    tracking.log_files(parent_run_id, [out / "report.md", out / "rows.json", out / "cells.json", *figures], "report")
    for row in rows:
        tracking.log_metrics(parent_run_id, {f"{row['arm']}/{key}": row[key] for key in
                                             ("final_pass1", "final_greedy", "vs_ref_pass1", "unique_prompts")
                                             if row[key] == row[key]})  # NaN (undefined) is not logged
    create_markdown_artifact(text, key=_artifact_key(spec.name), description=f"space bench {spec.name}")
    create_table_artifact(json_safe(rows), key=_artifact_key(spec.name) + "-rows")
    return {"report": str(out / "report.md"), "rows": json_safe(rows), "figures": [str(p) for p in figures]}


@task(**STAGE_OPTIONS, name="close-bench-run", retries=2, retry_delay_seconds=3)
def close_bench_run(run_id: str) -> None:
    tracking.client().set_terminated(run_id, status="FINISHED")
