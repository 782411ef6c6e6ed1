"""Test helper: run the `space` command in a subprocess against a SPACE_HOME of the test's own.

    out = run_cli(tmp_path, "curate", "--set", "seed=1", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    args = plain_recipe_args(tmp_path, rows, "verifier.name=exact")   # a jsonl pool and a local tiny model
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without the user's stores and debug switch, SPACE_HOME=home, plain progress lines."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI", "SPACE_DEBUG")}
    return {**env, "SPACE_HOME": str(home), "PYTHONPATH": str(ROOT), "SPACE_PROGRESS": "plain", **extra}


def run_cli(home: Path, *args: str, debug: bool = False, **env: str) -> subprocess.CompletedProcess:
    """`python -m flows.cli [--debug] ARGS` to completion, output captured."""
    return subprocess.run([sys.executable, "-m", "flows.cli", *(["--debug"] if debug else []), *args],
                          capture_output=True, text=True, env=cli_env(home, **env), cwd=ROOT, timeout=600)


def plain_recipe_args(tmp_path: Path, rows: list[dict], *sets: str) -> tuple[str, ...]:
    """`--set` arguments for a plain question/answer jsonl pool (a quarter held out) and a local tiny model."""
    from conftest_models import make_tiny_model_dir

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    model = tmp_path / "m" if (tmp_path / "m").is_dir() else make_tiny_model_dir(tmp_path / "m")
    sets = ("data.source=hf", f"data.path={path}", "data.eval_fraction=0.25", f"model.name={model}", *sets)
    return tuple(a for item in sets for a in ("--set", item))
