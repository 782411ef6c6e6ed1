"""MLflow at the edges: open a run, log params, metrics, tables and files, close it.

All calls go through `MlflowClient` with explicit run ids, so tasks running in worker threads never
depend on MLflow's thread-local "active run". The tracking URI comes from `MLFLOW_TRACKING_URI`, else a
SQLite store under SPACE_HOME (set by `tasks.environment`); artifacts go to an absolute folder beside it.
A run carries tags (stage, recipe, policy, pool, seed, fingerprint, Prefect flow run id) so runs of
different policies line up in MLflow's compare view.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prefect import task

from space.paths import space_home

EXPERIMENT = os.environ.get("SPACE_EXPERIMENT", "space")
_MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters


def client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def experiment_id(name: str = EXPERIMENT) -> str:
    """The experiment's id, creating it (with an absolute artifact location) the first time."""
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = space_home() / "mlartifacts" / name
    artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow_client.create_experiment(name, artifact_location=artifacts.as_uri())


class TrackingError(RuntimeError):
    """MLflow cannot be reached; the message names the tracking URI."""


def reachable_experiment_id() -> str:
    """`experiment_id()`, with an unreachable store reported as a `TrackingError` naming its URI (MLflow's
    own HTTP retries come first: MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)."""
    try:
        return experiment_id()
    except Exception as err:  # noqa: BLE001  (MLflow raises several types; re-raised with the URI)
        first = (str(err).splitlines() or [""])[0][:300]
        raise TrackingError(f"MLflow at {os.environ['MLFLOW_TRACKING_URI']} cannot be reached "
                            f"({type(err).__name__}: {first}); finished stages are cached, re-run once it is up"
                            ) from err


def _flow_run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or "")


def _unfinished_run(exp_id: str, run_fingerprint: str) -> str | None:
    runs = client().search_runs(
        [exp_id], filter_string=f"tags.`space.fingerprint` = '{run_fingerprint}' and attributes.status != 'FINISHED'"
    )
    return runs[0].info.run_id if runs else None


@task(name="mlflow-open-run", retries=2, retry_delay_seconds=3)
def open_run(
    run_name: str, tags: dict[str, str], params: dict[str, Any], recipe_yaml: str, parent_run_id: str | None = None
) -> str:
    """Start (or resume, when a killed run with the same fingerprint exists) a run; log params and recipe once."""
    mlflow_client = client()
    exp_id = reachable_experiment_id()
    run_id = _unfinished_run(exp_id, tags.get("space.fingerprint", "")) if "space.fingerprint" in tags else None
    if run_id is None:
        all_tags = {**tags, "prefect.flow_run_id": _flow_run_id()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run_id = mlflow_client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
        log_params(run_id, params)
        log_text(run_id, recipe_yaml, "recipe.yaml")
    return run_id


def log_params(run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        client().log_batch(run_id, params=items[start : start + 100])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items()) if v is not None]
    for start in range(0, len(items), 500):
        client().log_batch(run_id, metrics=items[start : start + 500])


def log_files(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    mlflow_client = client()
    for path in paths:
        if Path(path).is_dir():
            mlflow_client.log_artifacts(run_id, str(path), artifact_path)
        else:
            mlflow_client.log_artifact(run_id, str(path), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, text, artifact_file)


def log_table(run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
    """A table as MLflow's JSON table format (one file per call: log_table appends to existing files)."""
    columns = list(rows[0]) if rows else []
    payload = {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(json.dumps(payload, default=str))
        client().log_artifact(run_id, str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)


@task(name="mlflow-close-run", retries=2, retry_delay_seconds=3)
def close_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)
