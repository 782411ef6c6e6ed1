"""Environment defaults derived from SPACE_HOME: the user's exports win, derived paths follow them."""

import os
from pathlib import Path

from tasks.environment import configure_environment

KEYS = ("SPACE_HOME", "PREFECT_HOME", "PREFECT_MEMO_STORE_PATH", "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
        "MLFLOW_TRACKING_URI", "VLLM_CONFIGURE_LOGGING")


def _configured(monkeypatch, **exported: str) -> dict[str, str]:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in exported.items():
        monkeypatch.setenv(key, value)
    configure_environment()
    return {key: os.environ[key] for key in KEYS if key in os.environ}


def test_everything_lands_under_space_home_by_default(monkeypatch, tmp_path):
    env = _configured(monkeypatch, SPACE_HOME=str(tmp_path / "home"))
    assert env["PREFECT_HOME"] == str(tmp_path / "home" / "prefect")
    assert env["PREFECT_MEMO_STORE_PATH"] == str(tmp_path / "home" / "prefect" / "memo_store.toml")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert (tmp_path / "home" / "prefect").is_dir()  # Prefect's server writes its memo store there at start


def test_an_exported_prefect_home_takes_the_memo_store_along(monkeypatch, tmp_path):
    env = _configured(monkeypatch, SPACE_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "elsewhere"))
    assert env["PREFECT_HOME"] == str(tmp_path / "elsewhere")
    assert Path(env["PREFECT_MEMO_STORE_PATH"]).parent == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere").is_dir()


def test_vllm_leaves_the_logging_set_up_alone_unless_exported(monkeypatch, tmp_path):
    """vLLM's dictConfig at engine start deadlocked against Prefect's API log handler (make demo hung)."""
    assert _configured(monkeypatch, SPACE_HOME=str(tmp_path))["VLLM_CONFIGURE_LOGGING"] == "0"
    exported = _configured(monkeypatch, SPACE_HOME=str(tmp_path), VLLM_CONFIGURE_LOGGING="1")
    assert exported["VLLM_CONFIGURE_LOGGING"] == "1"
