"""`space compare`: the pure report (space.analysis.compare) on hand-built run records, then the command end to end on
two real `space run`s (the session's e2e run and the same recipe with another bandit policy) in real MLflow."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import tasks  # noqa: F401  (environment defaults before prefect and mlflow are imported)
from flows.cli import app
from prefect.logging.configuration import ensure_logging_setup
from space.analysis.compare import HEADERS, compare_figures, compare_markdown, raw_frame, table_rows, write_report

# Prefect's console handler binds sys.stderr when logging is set up: do it now, not inside a CliRunner call
# whose temporary stream is closed afterwards (the runs' flow logs would then fail to write)
ensure_logging_setup()
RECIPE = Path(__file__).parent / "recipes" / "e2e.yaml"
FULL = {"run_id": "0123456789abcdef", "run_name": "e2e-ts_lp-s3", "policy": "ts_lp", "pool": "reduced", "K": 3,
        "l": 4, "seed": 3, "unique_prompts": 12, "steps": 6, "base_pass1": 0.25, "final_pass1": 0.375,
        "base_greedy": 0.1875, "final_greedy": 0.25, "gain_pass1": 0.125, "gain_pass1_lo": -0.0625,
        "gain_pass1_hi": 0.3125, "curation_seconds": 41.26,
        "curve": [{"step": 0, "pass1": 0.25, "greedy": 0.1875}, {"step": 2, "pass1": 0.3, "greedy": 0.25},
                  {"step": 4, "pass1": 0.35, "greedy": 0.25}, {"step": 6, "pass1": 0.375, "greedy": 0.25}],
        "allocation": [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]}
# a run that logged no curation, no gain, no training record and no seed
SPARSE = {"run_id": "fedcba9876543210", "run_name": None, "policy": "uniform", "pool": "full", "K": 3, "l": None,
          "seed": None, "unique_prompts": None, "steps": None, "base_pass1": 0.25, "final_pass1": None,
          "base_greedy": None, "final_greedy": None, "gain_pass1": None, "gain_pass1_lo": None,
          "gain_pass1_hi": None, "curation_seconds": None, "curve": [], "allocation": None}


def test_table_cells_are_formatted_exactly():
    [row] = table_rows([FULL])
    assert row == {"run": "e2e-ts_lp-s3 (01234567)", "policy": "ts_lp", "pool": "reduced", "K": "3", "l": "4",
                   "seed": "3", "unique prompts": "12", "steps": "6", "pass@1 base -> final": "0.250 -> 0.375",
                   "greedy base -> final": "0.188 -> 0.250", "pass@1 change [paired 95% CI]": "+0.125 [-0.062, +0.312]",
                   "curation s": "41.3"}


def test_missing_values_show_as_dash_never_zero():
    [row] = table_rows([SPARSE])
    assert row["run"] == "fedcba9876543210"
    for header in ("l", "seed", "unique prompts", "steps", "greedy base -> final", "pass@1 change [paired 95% CI]",
                   "curation s"):
        assert row[header] == "-", header
    assert row["pass@1 base -> final"] == "0.250 -> -"
    # a change without its interval keeps the change and marks the interval as missing
    [partial] = table_rows([{**FULL, "gain_pass1_lo": float("nan")}])
    assert partial["pass@1 change [paired 95% CI]"] == "+0.125 -"


def test_csv_frame_keeps_numbers_and_nulls():
    frame = raw_frame([FULL, SPARSE])
    assert frame["K"].to_list() == [3, 3] and frame["seed"].to_list() == [3, None]
    assert frame["curation_seconds"].to_list() == [41.26, None]
    assert frame["gain_pass1_hi"].to_list() == [0.3125, None]


def test_markdown_holds_the_table_and_a_sentence_per_run_with_a_change():
    text = compare_markdown([FULL, SPARSE], ["accuracy_vs_step.png"])
    assert "| " + " | ".join(HEADERS) + " |" in text
    assert "| e2e-ts_lp-s3 (01234567) | ts_lp | reduced | 3 | 4 | 3 | 12 | 6 | 0.250 -> 0.375 |" in text
    assert "| fedcba9876543210 | uniform | full | 3 | - | - | - | - | 0.250 -> - | - | - | - |" in text
    assert "pass@1 change +0.125 (95% CI -0.062 to +0.312): the interval includes 0" in text
    assert text.count("pass@1 change +") == 1  # the sparse run has no change to describe
    assert "![accuracy_vs_step](accuracy_vs_step.png)" in text


def test_figures_have_one_accuracy_panel_per_metric_and_one_allocation_panel_per_run():
    figures = compare_figures([FULL, SPARSE])
    accuracy = figures["accuracy_vs_step.png"]
    assert [ax.get_title() for ax in accuracy.axes] == ["held-out pass@1", "held-out greedy accuracy"]
    for ax, metric in zip(accuracy.axes, ("pass1", "greedy")):
        [line] = ax.get_lines()  # only the full run has a curve
        np.testing.assert_allclose(line.get_xdata(), [0, 2, 4, 6])
        np.testing.assert_allclose(line.get_ydata(), [p[metric] for p in FULL["curve"]])
    allocation = figures["allocation.png"]
    panels = [ax for ax in allocation.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["e2e-ts_lp-s3 (01234567)", "fedcba9876543210"]
    np.testing.assert_allclose(panels[0].images[0].get_array(), FULL["allocation"])
    assert not panels[1].images and panels[1].texts[0].get_text() == "no allocation logged"


def test_report_files_are_written_with_the_panels_side_by_side(tmp_path):
    from matplotlib.image import imread

    paths = write_report([FULL, SPARSE], tmp_path)
    assert set(paths) == {"compare.md", "compare.csv", "accuracy_vs_step.png", "allocation.png"}
    assert pl.read_csv(paths["compare.csv"])["run_id"].to_list() == [FULL["run_id"], SPARSE["run_id"]]
    # 2 panels of max(4, 0.6 x 3 epochs + 2) = 4 inches at 110 dpi; accuracy: 12 x 4.2 inches
    assert imread(paths["allocation.png"]).shape[:2] == (440, 880)
    assert imread(paths["accuracy_vs_step.png"]).shape[:2] == (462, 1320)


def test_no_records_is_an_error():
    with pytest.raises(ValueError, match="no runs to compare"):
        table_rows([])


def test_unreachable_tracking_server_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    uri = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    result = CliRunner().invoke(app, ["compare", "--no-log"], env=env)
    assert result.exit_code == 2, result.output
    assert f"MLflow at {uri} cannot be reached" in result.output


# ---- end to end on real runs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(e2e_recipe, e2e_run):
    """The session's e2e run and the same recipe with another bandit policy (curation is a cache hit)."""
    from flows.run import run_flow
    from space.config import load_recipe

    other = "uniform" if e2e_recipe.train.bandit.policy != "uniform" else "ts_hard"
    second = run_flow(load_recipe(str(RECIPE), [f"train.bandit.policy={other}"]).resolved())
    return e2e_run, second


def _curation_seconds(client, run_id: str) -> float:
    return sum(v for k, v in client.get_run(run_id).data.metrics.items() if k.startswith("seconds/"))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(3600)  # the session's `space run` and a second one land in this test's setup
def test_compare_two_real_runs_matches_mlflow_and_logs_a_compare_run(two_runs, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    ids = [run["run_id"] for run in two_runs]
    result = CliRunner().invoke(app, ["compare", "--run", ids[0], "--run", ids[1], "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 runs of experiment 'space'" in result.output
    table = pl.read_csv(tmp_path / "compare.csv")
    assert table["run_id"].to_list() == ids
    for row, run in zip(table.to_dicts(), two_runs):
        parent = client.get_run(run["run_id"])
        metrics, tags = parent.data.metrics, parent.data.tags
        assert (row["policy"], row["pool"]) == (tags["space.policy"], tags["space.pool"])
        assert (row["K"], row["l"], row["seed"]) == (3, 4, 3)
        assert (tags["space.K"], tags["space.l"], parent.data.params["space.K"]) == ("3", "4", "3")
        assert row["unique_prompts"] == run["unique_prompts"] == metrics["train/unique_prompts"]
        for name, key in (("pass1", "pass_at_1"), ("greedy", "greedy_acc")):
            assert row[f"base_{name}"] == pytest.approx(metrics[f"base/eval/all/{key}"])
            assert row[f"final_{name}"] == pytest.approx(run["final_eval"][f"eval/all/{key}"])
        gain = run["gain"]["pass_at_1"]
        assert (row["gain_pass1"], row["gain_pass1_lo"], row["gain_pass1_hi"]) == pytest.approx(
            (gain["diff"], gain["lo"], gain["hi"]))
        assert row["steps"] == client.get_run(run["train_run_id"]).data.metrics["global_step"] > 0
        assert row["curation_seconds"] == pytest.approx(_curation_seconds(client, run["curate_run_id"]))
    assert table["policy"].n_unique() == 2
    markdown = (tmp_path / "compare.md").read_text()
    first = table.row(0, named=True)
    assert f"{first['base_pass1']:.3f} -> {first['final_pass1']:.3f}" in markdown

    [logged] = client.search_runs([client.get_run(ids[0]).info.experiment_id],
                                  filter_string="tags.`space.stage` = 'compare'")
    assert logged.data.tags["space.compared_runs"] == ",".join(ids)
    assert f"MLflow compare run: {logged.info.run_id}" in result.output
    files = {a.path for a in client.list_artifacts(logged.info.run_id, "compare")}
    assert files == {f"compare/{name}" for name in ("compare.md", "compare.csv", "accuracy_vs_step.png",
                                                     "allocation.png")}


@pytest.mark.e2e
def test_tag_filters_select_runs_and_no_log_logs_nothing(two_runs, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    second = client.get_run(two_runs[1]["run_id"])
    before = client.search_runs([second.info.experiment_id], filter_string="tags.`space.stage` = 'compare'")
    policy = second.data.tags["space.policy"]
    result = CliRunner().invoke(app, ["compare", "--tag", f"space.policy={policy}", "--tag", "space.recipe=e2e",
                                      "--no-log", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(tmp_path / "compare.csv")["run_id"].to_list() == [second.info.run_id]
    after = client.search_runs([second.info.experiment_id], filter_string="tags.`space.stage` = 'compare'")
    assert len(after) == len(before)


@pytest.mark.e2e
def test_unknown_run_id_and_empty_filter_are_named(two_runs):
    unknown = CliRunner().invoke(app, ["compare", "--run", "0" * 32, "--no-log"])
    assert unknown.exit_code == 2 and f"unknown run id '{'0' * 32}'" in unknown.output
    empty = CliRunner().invoke(app, ["compare", "--tag", "space.policy=no-such-policy", "--no-log"])
    assert empty.exit_code == 2
    assert "no runs in experiment 'space' match" in empty.output and "no-such-policy" in empty.output


@pytest.mark.e2e
@pytest.mark.slow
def test_allocation_comes_from_the_arm_tables_and_agrees_with_the_share_metrics(two_runs):
    from mlflow.tracking import MlflowClient

    from tasks.compare import _allocation, _history

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    for run in two_runs:
        train = client.get_run(run["train_run_id"])
        matrix = _allocation(client, train)
        assert matrix is not None and len(matrix[0]) == 3  # three epochs
        for arm, row in enumerate(matrix):
            logged = _history(client, train.info.run_id, f"bandit/arm_{arm:02d}/share")
            assert row == pytest.approx([logged[epoch] for epoch in sorted(logged)], abs=1e-4)  # metrics: 4 digits
