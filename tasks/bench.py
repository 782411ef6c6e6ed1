"""Bench tasks: the parent MLflow run, the report, and the summary of a cell's raw results.

The cell itself composes the run's flows, so it lives in flows/bench_cell.py; it returns raw results (per-epoch
metrics, evaluations, gains, seconds) and the report task derives everything else from them (`cell_summary`).
The parent run is found again by the grid's fingerprint, so a resumed grid keeps one parent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from space.analysis.bench import BenchCell, BenchSpec
from space.config import fingerprint
from space.provenance import code_version
from tasks import tracking
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
