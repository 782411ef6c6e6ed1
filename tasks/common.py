"""Shared plumbing for tasks: the cache policy, stage directories, hashes and manifests.

Cache keys are designed, not defaulted: every cached task takes its stage config and the content hashes
of its inputs as arguments, and `CACHED` keys on those inputs plus the task's own source. TASK_SOURCE
covers only the task function's lines, not the `space` code it calls (PrefectHQ/prefect#23062), so each
stage's fingerprint also folds in `space.__version__` (see `space.config.fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE

from space.config import fingerprint
from space.paths import space_home

CACHED = INPUTS + TASK_SOURCE
MANIFEST = "manifest.json"


def stage_dir(stage: str, *parts: Any) -> Path:
    """SPACE_HOME/artifacts/<stage>/<fingerprint of parts>: same inputs, same place."""
    path = space_home() / "artifacts" / stage / fingerprint(stage, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Written last and atomically, so a present manifest means the stage's files are complete."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    os.replace(tmp, directory / MANIFEST)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """A finished stage's manifest, found on disk even when Prefect's result cache was cleared."""
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None
