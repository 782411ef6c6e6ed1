"""Test helper: which Prefect task runs happened since a moment, and in which states.

    from conftest_states import task_states_since
    states = task_states_since(since)        # {"embed": {"Cached"}, "train-epoch": {"Completed"}, ...}
    states = task_states_since(since, expect={"embed", "cluster"})   # waits until both are recorded

The server records task-run states from events in batches (its task_run_recorder service), so on a loaded
machine a task that finished a moment ago may not be readable yet: `expect` names the tasks to wait for
(up to `timeout` seconds) before answering.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

FINAL = {"Completed", "Cached", "Failed", "Crashed", "Cancelled"}


def task_states_since(since: datetime, expect: Iterable[str] = (), timeout: float = 120.0) -> dict[str, set[str]]:
    """Task name -> state names of the task runs created after `since` (the newest 200 task runs); waits until
    every name in `expect` has a final state recorded, or `timeout` passes (then answers what it has)."""
    expect, deadline = set(expect), time.monotonic() + timeout
    while True:
        states = _read_states(since)
        recorded = {name for name, names in states.items() if names & FINAL}
        if expect <= recorded or time.monotonic() > deadline:
            return states
        time.sleep(1.0)


def _read_states(since: datetime) -> dict[str, set[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
    states: dict[str, set[str]] = {}
    for run in runs:
        if run.created and run.created >= since and run.state is not None:
            states.setdefault(run.name.rsplit("-", 1)[0], set()).add(run.state.name)
    return states
