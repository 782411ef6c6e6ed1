"""Code-aware stage caches end to end: editing one `space` function recomputes the stages that run it (and
those whose inputs then change), while the stages before stay cached.

A copy of the code (space/, tasks/, flows/) and a copy of the session's finished SPACE_HOME; `space curate`
from the copy is all cache hits; after a behaviour-changing edit of `space/curate/clustering.py` (same clusters,
other label ids), embedding, difficulty and features are still reused, clustering and selection recompute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_ROW = re.compile(r"^  (?P<stage>\S.*?) {2,}(?P<runs>\d+) +(?P<seconds>\d+\.\d) +(?P<cached>yes|no|\d+ of \d+)$",
                         re.MULTILINE)
RELABEL = '''

_cluster_features_as_shipped = cluster_features


def cluster_features(features, cfg):  # appended by tests/test_stage_keys.py: the same clusters, ids shifted by one
    labels, centroids, info = _cluster_features_as_shipped(features, cfg)
    return (labels + 1) % len(centroids), np.roll(centroids, 1, axis=0), info
'''


def _curate(repo: Path, home: Path) -> dict[str, str]:
    """`space curate` on the e2e recipe from the code under `repo`; stage -> cached column of its summary."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI")}
    env.update(SPACE_HOME=str(home), PYTHONPATH=str(repo), SPACE_PROGRESS="off")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "curate", "--recipe", str(repo / "e2e.yaml")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {m["stage"]: m["cached"] for m in SUMMARY_ROW.finditer(done.stdout)}


@pytest.mark.timeout(3600)
def test_editing_clustering_recomputes_clustering_and_selection_only(e2e_run, tmp_path):
    from space.paths import space_home

    repo, home = tmp_path / "repo", tmp_path / "home"
    for package in ("space", "tasks", "flows"):
        shutil.copytree(ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "recipes" / "e2e.yaml", repo / "e2e.yaml")
    for folder in ("artifacts", "models"):
        shutil.copytree(space_home() / folder, home / folder)

    upstream = ("load-data", "fit-context", "embed", "estimate-difficulty", "build-features")
    before = _curate(repo, home)
    assert all(before[stage] == "yes" for stage in (*upstream, "cluster", "select-representatives")), before

    clustering = repo / "space" / "curate" / "clustering.py"
    clustering.write_text(clustering.read_text() + RELABEL)
    after = _curate(repo, home)
    assert all(after[stage] == "yes" for stage in upstream), after
    assert after["cluster"] == "no" and after["select-representatives"] == "no", after
