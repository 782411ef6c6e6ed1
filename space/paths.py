"""Where space keeps its files: one data directory, `SPACE_HOME` (default `./.space`)."""

from __future__ import annotations

import os
from pathlib import Path


def space_home() -> Path:
    """The data directory: models, curation artefacts, checkpoints, the MLflow store, Prefect's home."""
    home = Path(os.environ.get("SPACE_HOME", ".space")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    """Built-in models (the tiny SFT model, the converted SmolLM2) live here, one folder each."""
    path = space_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
