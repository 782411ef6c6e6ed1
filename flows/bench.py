"""`space bench`: a grid of arms x seeds at one rollout budget, one MLflow child run per cell, one report.

    space bench infra/bench/smoke.yaml
    space bench infra/bench/headline.yaml --out infra/results/bench/headline

Cells run as cached Prefect tasks on a thread pool of `max_parallel` workers (the spec's setting), so a
killed grid resumes at its unfinished cells. With max_parallel > 1 the cells share one process, hence
torch's global random state: results stay valid runs but are then not bit-reproducible.
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

import tasks  # noqa: F401
from space.analysis.bench import BenchSpec, resolve_cells
from space.paths import space_home
from flows.bench_cell import run_cell
from flows.preflight import bench_recipes, flow_preflight
from tasks.bench import close_bench_run, open_bench_run, preload_libraries, write_report


@flow(name="space-bench", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def bench_flow(spec: BenchSpec, spec_dir: str = ".", out: str | None = None, spec_yaml: str = "") -> dict[str, Any]:
    """Run every (arm, seed) cell, then write the report; returns the report's path, rows and figures."""
    cells = resolve_cells(spec, spec_dir)
    flow_preflight("bench", bench_recipes(cells), runs=len(cells))  # a deployment's run (the CLI ran it already)
    parent = open_bench_run(spec, cells, spec_yaml)
    if spec.max_parallel > 1:
        preload_libraries()
    futures = [run_cell.submit(spec.name, c.arm, c.seed, c.recipe, parent) for c in cells]
    wait(futures)
    failed = [f"{c.arm}/seed {c.seed}" for c, f in zip(cells, futures) if not f.state.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(cells)} bench cells failed: {failed} (re-run to resume)")
    results = [f.result() for f in futures]
    report = write_report(spec, results, out or str(space_home() / "bench" / spec.name), parent)
    close_bench_run(parent)
    print(f"bench {spec.name}: {len(cells)} cells; report {report['report']} (MLflow parent run {parent})")
    return {"parent_run_id": parent, **report}


def run_bench(spec: BenchSpec, spec_dir: str = ".", out: str | None = None, spec_yaml: str = "") -> dict[str, Any]:
    """`bench_flow` with the spec's `max_parallel` as the thread pool size (called directly, e.g. from a
    deployment, `bench_flow` runs one cell at a time)."""
    runner = ThreadPoolTaskRunner(max_workers=spec.max_parallel)
    return bench_flow.with_options(task_runner=runner)(spec, spec_dir, out, spec_yaml)
