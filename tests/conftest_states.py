"""Test helper: which Prefect task runs happened since a moment, and in which states.

    from conftest_states import task_states_since
    states = task_states_since(since)        # {"embed": {"Cached"}, "train-epoch": {"Completed"}, ...}
"""

from __future__ import annotations

from datetime import datetime


def task_states_since(since: datetime) -> dict[str, set[str]]:
    """Task name -> state names of the task runs created after `since` (the newest 200 task runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
    states: dict[str, set[str]] = {}
    for run in runs:
        if run.created and run.created >= since and run.state is not None:
            states.setdefault(run.name.rsplit("-", 1)[0], set()).add(run.state.name)
    return states
