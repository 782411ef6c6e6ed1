"""MLflow at the edges: open a run, log params, metrics, tables and files, close it.

All calls go through `MlflowClient` with explicit run ids, so tasks running in worker threads never
depend on MLflow's thread-local "active run". The tracking URI comes from `MLFLOW_TRACKING_URI`, else a
SQLite store under SPACE_HOME (set by `tasks.environment`); artifacts go to an absolute folder beside it.
A run carries tags (stage, recipe, policy, pool, seed, fingerprint, Prefect flow run id and, with a Prefect
server, its URL) so runs of different policies line up in MLflow's compare view; with an MLflow server the
Prefect flow run gets a link artifact to the MLflow run. The experiment is created as a model-training one
(MLflow 3.17 otherwise opens new experiments in its GenAI view).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import task

from space.paths import space_home
from tasks.stages import STAGE_OPTIONS

EXPERIMENT = os.environ.get("SPACE_EXPERIMENT", "space")
_MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters
# the tag MLflow's UI reads to pick an experiment's view; "custom_model_development" is its "Machine learning"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


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
    return mlflow_client.create_experiment(name, artifact_location=artifacts.as_uri(), tags=EXPERIMENT_KIND)


class TrackingError(RuntimeError):
    """MLflow cannot be reached; the message names the tracking URI."""


def _unreachable(err: BaseException, doing: str) -> TrackingError:
    first = (str(err).splitlines() or [""])[0][:300]
    return TrackingError(f"MLflow at {os.environ['MLFLOW_TRACKING_URI']} cannot be reached while {doing} "
                         f"({type(err).__name__}: {first}); finished stages and checkpoints are kept on disk: "
                         "re-run once it is up")


def _is_connection_failure(err: BaseException) -> bool:
    """A request that never got an answer (after MLflow's own retries), as opposed to an answer that says no."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, requests.RequestException | ConnectionError | TimeoutError):
        return True
    # MLflow's REST client wraps a request that got no response (refused, reset, timed out) this way
    return isinstance(err, MlflowException) and re.match(r"API request to \S+ failed with (timeout )?exception",
                                                         str(err)) is not None


Call = TypeVar("Call", bound=Callable[..., Any])


def named_outage(doing: str) -> Callable[[Call], Call]:
    """A tracking call whose connection failures (after MLflow's HTTP retries: MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT) become a `TrackingError` naming the URI; other errors pass unchanged."""
    def wrap(call: Call) -> Call:
        @functools.wraps(call)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except TrackingError:
                raise
            except Exception as err:
                if _is_connection_failure(err):
                    raise _unreachable(err, doing) from err
                raise

        return guarded  # type: ignore[return-value]

    return wrap


def reachable_experiment_id() -> str:
    """`experiment_id()`, with an unreachable store reported as a `TrackingError` naming its URI (MLflow's
    own HTTP retries come first)."""
    try:
        return experiment_id()
    except Exception as err:  # noqa: BLE001  (MLflow raises several types at start; re-raised with the URI)
        raise _unreachable(err, "opening the experiment") from err


def run_tags(stage: str, recipe: Any, model: dict[str, Any], key: str, *key_parts: Any,
             compare: bool = True) -> dict[str, str]:
    """The tags of a space MLflow run: its stage, recipe, selection rule and model, and `space.fingerprint`,
    a hash of `key`, the code version and `key_parts` that `open_run` resumes an unfinished run by.

    `compare` adds the keys runs are compared on (`space.policy`, `space.pool`, `space.K`, `space.l`,
    `space.seed`); without it only `space.seed` (curation does not depend on the bandit)."""
    from space.config import compare_keys, fingerprint
    from space.provenance import code_version

    keys = compare_keys(recipe) if compare else {"space.seed": str(recipe.seed)}
    return {"space.stage": stage, "space.recipe": recipe.name, **keys,
            "space.selection": recipe.curate.selection.selection, "space.model": model["name"],
            "space.fingerprint": fingerprint(key, code_version(), *key_parts)}


def _flow_run_tags() -> dict[str, str]:
    """The Prefect flow run's id and, when a Prefect UI is configured, the URL of its page."""
    from prefect.runtime import flow_run
    from prefect.utilities.urls import url_for

    if flow_run.id is None:
        return {"prefect.flow_run_id": ""}
    url = url_for("flow-run", obj_id=flow_run.id)
    return {"prefect.flow_run_id": str(flow_run.id), **({"prefect.flow_run_url": url} if url else {})}


def run_url(run_id: str) -> str | None:
    """The MLflow UI page of a run when tracking goes to a server (http[s]), else None."""
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri}/#/experiments/{client().get_run(run_id).info.experiment_id}/runs/{run_id}"


def _announce(run_id: str, run_name: str, stage: str) -> None:
    """Name the run (URL with a server) in the task run's log; link it from the Prefect run's artifacts."""
    from prefect import get_run_logger
    from prefect.artifacts import create_link_artifact

    url = run_url(run_id)
    get_run_logger().info("MLflow run %s: %s", run_name, url or run_id)
    if url:
        create_link_artifact(url, link_text=f"MLflow run {run_name}", key=f"mlflow-{stage}",
                             description=f"the {stage} run in MLflow")


def _resumable_run(exp_id: str, run_fingerprint: str, parent_run_id: str | None) -> str | None:
    """The run to resume instead of opening a new one: under a parent, the child with this fingerprint in
    any state (a re-run after a kill finds the finished curate run of the same parent); at the top level,
    only an unfinished one (a fresh invocation after a finished run gets a run of its own)."""
    where = f"tags.`space.fingerprint` = '{run_fingerprint}'"
    where += (f" and tags.`mlflow.parentRunId` = '{parent_run_id}'" if parent_run_id
              else " and attributes.status != 'FINISHED'")
    runs = client().search_runs([exp_id], filter_string=where)
    return runs[0].info.run_id if runs else None


@task(**STAGE_OPTIONS, name="mlflow-open-run", retries=2, retry_delay_seconds=3)
def open_run(
    run_name: str, tags: dict[str, str], params: dict[str, Any], recipe_yaml: str, parent_run_id: str | None = None
) -> str:
    """Start a run, or resume the one a killed invocation left (same fingerprint; see `_resumable_run`);
    params and recipe are logged once."""
    mlflow_client = client()
    exp_id = reachable_experiment_id()
    run_id = (_resumable_run(exp_id, tags["space.fingerprint"], parent_run_id) if "space.fingerprint" in tags
              else None)
    if run_id is None:
        all_tags = {**tags, **_flow_run_tags()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run_id = mlflow_client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
        log_params(run_id, params)
        log_text(run_id, recipe_yaml, "recipe.yaml")
    _announce(run_id, run_name, tags.get("space.stage", "run"))
    return run_id


@named_outage("logging params")
def log_params(run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        client().log_batch(run_id, params=items[start : start + 100])


@named_outage("logging metrics")
def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items()) if v is not None]
    for start in range(0, len(items), 500):
        client().log_batch(run_id, metrics=items[start : start + 500])


@named_outage("logging files")
def log_files(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    mlflow_client = client()
    for path in paths:
        if Path(path).is_dir():
            mlflow_client.log_artifacts(run_id, str(path), artifact_path)
        else:
            mlflow_client.log_artifact(run_id, str(path), artifact_path)


@named_outage("logging a text artifact")
def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, text, artifact_file)


@named_outage("logging a table")
def log_table(run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
    """Rows through MLflow's `log_table` (MLflow's table view; `MlflowClient.load_table` reads it back).

    MLflow appends to an existing file, so callers give each table its own file (one per epoch), and a file
    the run already has is left alone: a resumed run that replays an epoch does not duplicate its rows."""
    import pandas as pd

    mlflow_client = client()
    folder = artifact_file.rsplit("/", 1)[0] if "/" in artifact_file else None
    if any(a.path == artifact_file for a in mlflow_client.list_artifacts(run_id, folder)):
        return
    mlflow_client.log_table(run_id, pd.DataFrame(rows), artifact_file)


@task(**STAGE_OPTIONS, name="mlflow-close-run", retries=2, retry_delay_seconds=3)
@named_outage("closing a run")
def close_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)
