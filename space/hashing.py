"""Content hashes: of files (manifests, checkpoints and model builds share `sha256_file`) and of configs
and ids (`fingerprint`, the keys of stage folders and MLflow runs)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short hash of configs (pydantic models), ids and file hashes. It holds no code hash: stage keys add
    the hash of the code the stage runs (`tasks.common.stage_dir`), run keys the package's."""
    from pydantic import BaseModel

    def encode(part: Any) -> Any:
        return part.model_dump(mode="json") if isinstance(part, BaseModel) else part

    payload = json.dumps([encode(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
