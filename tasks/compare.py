"""`space compare` at the MLflow edge: select finished runs, read each into a plain run record, log the report.

Reads what `space run` (and `space bench` cells) logged: the run's tags and params, its metrics
(base/final held-out accuracy, the paired gain, unique prompts), its train child (optimiser steps,
per-epoch held-out accuracy, allocation shares per arm) and its curate child (seconds per stage). The
table and figures are built by `space.analysis.compare`; a value a run did not log stays None ("-" in the table).

    records = [run_record(client, run) for run in select_runs("space", {"space.policy": "uniform"}, [])]
    run_id = log_compare_run("space", records, paths, {"space.policy": "uniform"})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks import tracking

RUN_STAGE = "run"  # what `space run` tags its parent run with; the default selection


def _tracking_error(err: Exception) -> tracking.TrackingError:
    first = (str(err).splitlines() or [""])[0][:300]
    return tracking.TrackingError(f"MLflow at {os.environ['MLFLOW_TRACKING_URI']} cannot be reached "
                                  f"({type(err).__name__}: {first})")


def find_experiment(name: str):
    """The experiment by name; an unreachable store or a missing experiment is a clear error."""
    client = tracking.client()
    try:
        found = client.get_experiment_by_name(name)
        known = [] if found is not None else [e.name for e in client.search_experiments()]
    except Exception as err:  # noqa: BLE001  (MLflow raises several types; re-raised with the URI)
        raise _tracking_error(err) from err
    if found is None:
        raise ValueError(f"no MLflow experiment named {name!r} at {os.environ['MLFLOW_TRACKING_URI']} "
                         f"(experiments there: {known or 'none'}); pass --experiment")
    return found


def _filter_string(tags: dict[str, str]) -> str:
    for key, value in tags.items():
        if "'" in value or "`" in key:
            raise ValueError(f"--tag {key}={value}: quotes are not allowed in a tag filter")
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


def _explicit_runs(client, run_ids: list[str]) -> list[Any]:
    from mlflow.exceptions import MlflowException

    runs = []
    for run_id in run_ids:
        try:
            runs.append(client.get_run(run_id))
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise _tracking_error(err) from err
            raise ValueError(f"unknown run id {run_id!r}: no such run at {os.environ['MLFLOW_TRACKING_URI']}") from None
    return runs


def select_runs(experiment: str, tags: dict[str, str], run_ids: list[str]) -> list[Any]:
    """The runs to compare: the given run ids (kept when they carry every --tag), else the experiment's
    `space run` parent runs (tag space.stage=run unless --tag sets space.stage) carrying every --tag."""
    client = tracking.client()
    exp = find_experiment(experiment)
    if run_ids:
        runs = [r for r in _explicit_runs(client, run_ids) if all(r.data.tags.get(k) == v for k, v in tags.items())]
        if not runs:
            raise ValueError(f"none of the runs {run_ids} carries the tags {tags}")
        return runs
    wanted = {"space.stage": RUN_STAGE, **tags}
    query = _filter_string(wanted)
    try:
        runs = client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"],
                                  max_results=1000)
    except Exception as err:  # noqa: BLE001
        raise _tracking_error(err) from err
    if not runs:
        raise ValueError(f"no runs in experiment {experiment!r} match {query}")
    return list(runs)


def _children(client, run) -> dict[str, Any]:
    """The run's child runs by their space.stage tag (the newest one per stage)."""
    found = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time ASC"],
                               filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    return {child.data.tags.get("space.stage"): child for child in found}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _as_int(value: Any) -> int | None:
    return None if value is None else int(float(value))


def _setting(run, tag: str, param: str) -> str | None:
    return _first(run.data.tags.get(tag), run.data.params.get(param))


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def _curve(client, train) -> list[dict[str, float | None]]:
    """Held-out accuracy against optimiser steps: the base model at step 0, then each evaluated epoch."""
    metrics = train.data.metrics
    points = []
    if "base/eval/all/pass_at_1" in metrics:
        points.append({"step": 0.0, "pass1": metrics["base/eval/all/pass_at_1"],
                       "greedy": metrics.get("base/eval/all/greedy_acc")})
    steps = _history(client, train.info.run_id, "global_step")
    pass1 = _history(client, train.info.run_id, "eval/all/pass_at_1")
    greedy = _history(client, train.info.run_id, "eval/all/greedy_acc")
    for epoch in sorted(pass1):
        points.append({"step": steps.get(epoch), "pass1": pass1[epoch], "greedy": greedy.get(epoch)})
    return points


def _allocation(client, train) -> list[list[float]] | None:
    """Arms x epochs matrix of the shares in the run's per-epoch arm tables (`tables/arms_epoch_NNN.json`, the
    epochs' `arm_rows`: arm ids are data, not read out of metric names); NaN where an arm has no row; None
    for a run without arm tables (plain training logs none)."""
    names = sorted(a.path for a in client.list_artifacts(train.info.run_id, "tables")
                   if a.path.rsplit("/", 1)[-1].startswith("arms_epoch_"))
    if not names:
        return None
    from tasks.train_report import arm_matrix

    tables = [client.load_table(train.info.experiment_id, name, run_ids=[train.info.run_id]) for name in names]
    return arm_matrix([{"arm_rows": table.to_dict("records")} for table in tables], "share")


def _curation_seconds(curate) -> float | None:
    seconds = [v for k, v in curate.data.metrics.items() if k.startswith("seconds/")] if curate else []
    return float(sum(seconds)) if seconds else None


def run_record(client, run) -> dict[str, Any]:
    """A run record for `space.analysis.compare` from a parent run (space run or bench cell) and its children."""
    children = _children(client, run)
    train, curate = children.get("train"), children.get("curate")
    mine, trained = run.data.metrics, (train.data.metrics if train else {})

    def metric(*keys: str) -> float | None:
        return _first(*(source.get(k) for k in keys for source in (mine, trained)))

    record = {"run_id": run.info.run_id, "run_name": run.info.run_name,
              "policy": _first(_setting(run, "space.policy", "train.bandit.policy"),
                               train and train.data.tags.get("space.policy")),
              "pool": _first(_setting(run, "space.pool", "train.pool"), train and train.data.tags.get("space.pool")),
              "K": _as_int(_setting(run, "space.K", "curate.clusters.num_clusters")),
              "l": _as_int(_setting(run, "space.l", "curate.selection.per_cluster")),
              "seed": _as_int(_setting(run, "space.seed", "seed")),
              "unique_prompts": _as_int(metric("train/unique_prompts", "unique_prompts")),
              "steps": _as_int(trained.get("global_step")), "curation_seconds": _curation_seconds(curate),
              "curve": _curve(client, train) if train else [],
              "allocation": _allocation(client, train) if train else None}
    for name, key in (("pass1", "pass_at_1"), ("greedy", "greedy_acc")):
        record[f"base_{name}"] = metric(f"base/eval/all/{key}")
        record[f"final_{name}"] = metric(f"final/eval/all/{key}")
    for suffix, key in (("", "diff"), ("_lo", "lo"), ("_hi", "hi")):
        record[f"gain_pass1{suffix}"] = metric(f"gain/pass_at_1/{key}")
    return record


def run_records(experiment: str, tags: dict[str, str], run_ids: list[str]) -> list[dict[str, Any]]:
    client = tracking.client()
    return [run_record(client, run) for run in select_runs(experiment, tags, run_ids)]


def log_compare_run(experiment: str, records: list[dict[str, Any]], paths: list[Path], tags: dict[str, str]) -> str:
    """A new MLflow run (tag space.stage=compare) holding the report's files and the compared run ids."""
    client = tracking.client()
    exp_id = find_experiment(experiment).experiment_id
    ids = [r["run_id"] for r in records]
    run_tags = {"space.stage": "compare", "space.compared_runs": ",".join(ids),
                "mlflow.note.content": Path(next(p for p in paths if p.name == "compare.md")).read_text()[:5000]}
    run_id = client.create_run(exp_id, run_name=f"compare-{len(ids)}-runs", tags=run_tags).info.run_id
    tracking.log_params(run_id, {"compare.runs": ",".join(ids),
                                 "compare.tags": ",".join(f"{k}={v}" for k, v in tags.items()) or "-"})
    tracking.log_files(run_id, paths, "compare")
    client.set_terminated(run_id, status="FINISHED")
    return run_id
