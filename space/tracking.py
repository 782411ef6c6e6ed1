"""The tracking interface: what the library reports, without knowing who listens.

`space` returns metric dicts and calls a `Tracker`; the MLflow implementation lives in `tasks/`
(the library never imports mlflow). `NullTracker` has the same methods and does nothing, so code
never asks "is logging on?". Metric names use slashes: `bandit/arm_03/solve_rate`, `reward/mean`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


class NullTracker:
    """Accepts every call and records nothing."""

    def log_params(self, params: dict[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def set_tags(self, tags: dict[str, str]) -> None:
        return None
