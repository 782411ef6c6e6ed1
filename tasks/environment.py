"""Environment defaults for Prefect, MLflow and Hugging Face, derived from SPACE_HOME."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from space.paths import space_home


def configure_environment() -> None:
    """Set defaults (never overriding what the user exported) before prefect or mlflow is imported."""
    home = space_home()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "prefect" / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # vLLM's own logging set-up runs logging.config.dictConfig when an engine starts; dictConfig flushes every
        # existing handler while holding logging's lock, and Prefect's API log handler waits in its flush for a
        # thread that needs that lock: `make demo` hung there (py-spy: APILogHandler.flush under dictConfig in
        # LLM.__init__). vLLM's records go to the handlers already in place instead; its level is set below.
        "VLLM_CONFIGURE_LOGGING": "0",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # the memo store lives in whichever PREFECT_HOME is in force; its folder must exist before the server writes
    prefect_home = Path(os.environ["PREFECT_HOME"]).expanduser()
    os.environ.setdefault("PREFECT_MEMO_STORE_PATH", str(prefect_home / "memo_store.toml"))
    Path(os.environ["PREFECT_MEMO_STORE_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    apply_vllm_log_level()


def apply_vllm_log_level() -> None:
    """VLLM_LOGGING_LEVEL on vLLM's logger, before vLLM is imported.

    vLLM (0.32) configures its logging only when an engine starts, so what it logs while being imported
    ("Triton is installed, but doesn't include CPU backend. Disabling Triton.") reaches Python's last-resort
    handler whatever VLLM_LOGGING_LEVEL says. Setting the level here covers this process and the engine
    processes vLLM spawns: they re-import the main program (`space`), which imports this package first.
    """
    level = os.environ.get("VLLM_LOGGING_LEVEL", "").upper()
    if isinstance(logging.getLevelName(level), int):
        logging.getLogger("vllm").setLevel(level)
