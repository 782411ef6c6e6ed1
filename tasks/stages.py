"""A record of this process's finished task runs, for the console's end-of-run summary, and the options every
stage task carries.

Every task carries `**STAGE_OPTIONS`. Prefect calls `record_stage` when a task run ends, cache hits included
(their state is named "Cached"), in the process that ran it, so the record needs no API round trip (task
states reach the API as events, a moment later). A stage that found its finished folder on disk and computed
nothing (`note_reused`, called by `tasks.common.read_manifest`) counts as cached too: that happens after
`space --refresh` or with a copied SPACE_HOME, when Prefect's own cache misses.

`log_prints=False`: the flows log their own prints, but inside a stage library code may capture stdout by
swapping `sys.stdout` (dill does, to read a function's globals off `dis.dis` while `datasets` fingerprints
TRL's dataset maps). Prefect's print patch defeats that: dill then finds no globals and its disassembly lands
in the run's log, line by line. Stages print nothing of their own (progress goes to stderr, tasks/progress.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_REUSED: set[str] = set()  # task-run ids that reused a finished stage folder


@dataclass(frozen=True)
class StageRun:
    """One finished task run: its run name, final state name, seconds spent running, and whether it was cached."""

    name: str
    state: str
    seconds: float
    cached: bool


RECORDED: list[StageRun] = []


def note_reused() -> None:
    """Inside a task: say that this run reused a finished stage folder instead of computing."""
    from prefect.runtime import task_run

    if (run_id := task_run.get_id()) is not None:
        _REUSED.add(str(run_id))


def record_stage(task: Any, task_run: Any, state: Any) -> None:
    """Prefect hook (on completion and on failure): append this run to RECORDED."""
    cached = state.name == "Cached" or str(task_run.id) in _REUSED
    RECORDED.append(StageRun(task_run.name, state.name, task_run.total_run_time.total_seconds(), cached))


STAGE_OPTIONS: dict[str, Any] = {"on_completion": [record_stage], "on_failure": [record_stage], "log_prints": False}
