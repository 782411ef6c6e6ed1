"""Browser tests of the Prefect and MLflow UIs, in Debian's Chromium driven headless by Playwright.

`infra/servers.sh` starts both servers on free ports; `space serve` serves `space run` on the e2e recipe and
two runs (seeds 3 and 4) are triggered from the Prefect API and waited for. Then the Prefect flow-run page
of a run must list its subflows and its artifacts, and MLflow's compare page for the two parent runs must
show both run names and a rendered metric chart. Screenshots land in the test's tmp dir;
SPACE_KEEP_SCREENSHOTS=1 also copies the two docs/operations.md shows to infra/results/screenshots/. Chromium
comes from `make test` (infra/install_chromium.sh); Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest_servers import prefect_client, space_servers, stop_process, wait_for_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "tests" / "recipes" / "e2e.yaml")
CHROMIUM = os.environ.get("SPACE_CHROMIUM", "/usr/bin/chromium")
README_SHOTS = REPO / "infra" / "results" / "screenshots"
SEEDS = (3, 4)
SUBFLOWS = ("bootstrap", "curate", "train")
# without the background-networking flags Chromium's own connections are refused on a closed network
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with space_servers(tmp_path_factory.mktemp("servers")) as running:
        yield running


def _serve(servers, home: Path, log: Path) -> subprocess.Popen:
    """`space serve` of the e2e recipe (no schedule), its runs tracked on the servers' MLflow."""
    env = {**servers.env, "SPACE_HOME": str(home), "PREFECT_API_URL": servers.prefect,
           "MLFLOW_TRACKING_URI": servers.mlflow}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--recipe", RECIPE, "--name", "browser"],
                                env=env, cwd=REPO, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _wait_for_final_state(client, run_id, serving: subprocess.Popen, timeout: float = 2400):
    deadline = time.monotonic() + timeout
    while True:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state
        assert serving.poll() is None, serving.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"run {run_id} not finished: {state}\n{serving.log.read_text()[-3000:]}"
        time.sleep(3)


@pytest.fixture(scope="module")
def deployment_runs(servers, tmp_path_factory):
    """Two runs of the served deployment (seeds 3 and 4), created through the API; both must complete.
    Returns the Prefect flow runs and, per run, its MLflow parent run."""
    from mlflow.tracking import MlflowClient

    home = tmp_path_factory.mktemp("runs")
    serving = _serve(servers, home, home / "serve.log")
    try:
        with prefect_client(servers.prefect) as client:
            deployment = wait_for_deployment(client, serving, "space-run/browser")
            recipe = deployment.parameters["recipe"]
            created = [client.create_flow_run_from_deployment(deployment.id, parameters={
                "recipe": {**recipe, "seed": seed}}) for seed in SEEDS]
            for run in created:
                state = _wait_for_final_state(client, run.id, serving)
                assert state.is_completed(), f"{state}\n{serving.log.read_text()[-3000:]}"
            flow_runs = [client.read_flow_run(run.id) for run in created]
    finally:
        stop_process(serving)
    mlflow = MlflowClient(servers.mlflow)
    experiment = mlflow.get_experiment_by_name("space")
    parents = []
    for run in flow_runs:
        [parent] = mlflow.search_runs([experiment.experiment_id], filter_string=(
            f"tags.`space.stage` = 'run' and tags.`prefect.flow_run_id` = '{run.id}'"))
        parents.append(parent)
    return SimpleNamespace(flow_runs=flow_runs, parents=parents, experiment_id=experiment.experiment_id)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run infra/install_chromium.sh (make test does)"
    profile = tempfile.mkdtemp(prefix="space-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000})
        # the Prefect UI opens a "Join the community" dialog over the page on a first visit
        context.add_init_script("localStorage.setItem('join-the-community-modal-dismissed', 'true')")
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def _screenshot(page, tmp_path: Path, name: str, readme: bool = False) -> Path:
    """A PNG in the test's tmp dir; the ones docs/operations.md shows are also copied there when
    SPACE_KEEP_SCREENSHOTS=1."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if readme and os.environ.get("SPACE_KEEP_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, README_SHOTS / name)
    return path


def _prefect_page(browser, servers, flow_run_id, tab: str):
    """A Prefect flow-run page with `tab` open (the SPA renders the tabs once the run has loaded)."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_navigation_timeout(120_000)  # a loaded 2-core box: the MLflow UI took over 30 s once
    page.goto(f"{servers.prefect.removesuffix('/api')}/runs/flow-run/{flow_run_id}", wait_until="networkidle")
    tab_button = page.locator("li.p-tab", has_text=tab)
    expect(tab_button).to_be_visible(timeout=30_000)
    tab_button.click()
    expect(page).to_have_url(f"{page.url.split('?')[0]}?tab={tab.replace(' ', '+')}")
    return page


def _subflows(servers, parent_id) -> dict[str, object]:
    """The parent's subflow runs by flow name, from the Prefect API."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with prefect_client(servers.prefect) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))
        return {client.read_flow(child.flow_id).name: child for child in children}


def _artifact_keys(servers, flow_run_id) -> set[str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_client(servers.prefect) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))
        return {artifact.key for artifact in found}


@pytest.mark.timeout(3600)  # the two e2e runs land in this test's setup, on 2 shared cores
def test_prefect_flow_run_page_lists_the_subflow_runs(servers, deployment_runs, browser, tmp_path):
    from playwright.sync_api import expect

    run = deployment_runs.flow_runs[0]
    subflows = _subflows(servers, run.id)
    assert set(subflows) == set(SUBFLOWS), sorted(subflows)
    page = _prefect_page(browser, servers, run.id, "Subflow Runs")
    rows = page.locator(".flow-run-list-item")
    expect(rows).to_have_count(len(SUBFLOWS), timeout=30_000)
    shown = {tuple(text.splitlines()[:3]) for text in rows.all_inner_texts()}  # flow name, run name, state
    assert shown == {(name, child.name, "Completed") for name, child in subflows.items()}, shown
    _screenshot(page, tmp_path, "prefect-flow-run.png", readme=True)
    page.close()


# what each run's stages publish (tasks/tracking.py, tasks/curate_report.py, tasks/train_report.py)
ARTIFACTS = {"space-run": {"mlflow-run"}, "curate": {"curation-clusters", "curation-summary", "mlflow-curate"},
             "train": {"training-progress", "training-epochs", "training-summary", "mlflow-train", "mlflow-eval"}}


@pytest.mark.timeout(3600)
def test_prefect_artifacts_tabs_list_every_artifact_key(servers, deployment_runs, browser, tmp_path):
    from playwright.sync_api import expect

    run = deployment_runs.flow_runs[0]
    pages = {"space-run": run.id, **{name: child.id for name, child in _subflows(servers, run.id).items()
                                     if name in ARTIFACTS}}
    for flow_name, flow_run_id in pages.items():
        keys = _artifact_keys(servers, flow_run_id)
        assert keys == ARTIFACTS[flow_name], (flow_name, sorted(keys))
        page = _prefect_page(browser, servers, flow_run_id, "Artifacts")
        titles = page.locator(".artifact-card__title")
        expect(titles).to_have_count(len(keys), timeout=30_000)
        assert set(titles.all_inner_texts()) == keys, (flow_name, titles.all_inner_texts())
        if flow_name == "train":
            _screenshot(page, tmp_path, "prefect-train-artifacts.png")
        page.close()


@pytest.mark.timeout(3600)
def test_mlflow_compare_page_shows_both_run_names_and_a_metric_chart(servers, deployment_runs, browser, tmp_path):
    from playwright.sync_api import expect

    run_ids = [parent.info.run_id for parent in deployment_runs.parents]
    names = [parent.info.run_name for parent in deployment_runs.parents]
    assert names == [f"e2e-ts_lp-s{seed}" for seed in SEEDS]
    shared_metrics = set.intersection(*(set(parent.data.metrics) for parent in deployment_runs.parents))
    assert "final/eval/all/pass_at_1" in shared_metrics
    page = browser.new_page()
    page.set_default_navigation_timeout(120_000)  # a loaded 2-core box: the MLflow UI took over 30 s once
    page.goto(f"{servers.mlflow}/#/compare-runs?runs={json.dumps(run_ids)}"
              f"&experiments={json.dumps([deployment_runs.experiment_id])}", wait_until="domcontentloaded")
    # not "networkidle": the compare page can keep polling (it never went idle within 120 s twice, under load)
    expect(page.get_by_text(f"Comparing {len(run_ids)} Runs from 1 Experiment")).to_be_visible(timeout=120_000)
    for name in names:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    # the parallel-coordinates chart, drawn by plotly: axes for params whose values differ between the runs
    # (the seed, logged as `seed` and `space.seed`), then one metric both runs logged
    params = [parent.data.params for parent in deployment_runs.parents]
    differing = {key for key in set(params[0]) | set(params[1]) if params[0].get(key) != params[1].get(key)}
    axis_titles = page.locator(".js-plotly-plot text.axis-title")
    expect(axis_titles.first).to_be_visible(timeout=30_000)
    axes = [text.strip() for text in axis_titles.all_text_contents()]
    assert "seed" in axes[:-1] and set(axes[:-1]) <= differing and axes[-1] in shared_metrics, (axes, differing)
    close_assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close_assistant.count():  # MLflow 3.17 opens its assistant panel beside the page
        close_assistant.click()
    _screenshot(page, tmp_path, "mlflow-compare-runs.png", readme=True)
    page.close()
