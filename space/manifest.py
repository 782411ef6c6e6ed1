"""Manifests and atomic writes: the one way space marks a folder complete and replaces a file safely.

A folder (a pipeline stage's output, a built model, a training checkpoint) is complete when its
`space_manifest.json` exists. The manifest is written last and atomically (a temporary file in the same
folder, flushed to disk, then renamed over the target), so a reader sees either no manifest or a whole one:

    write_atomic(folder / "embeddings.npz", lambda fh: np.savez(fh, ids=ids, embeddings=emb))
    write_manifest(folder, {"rows": 96, ...})      # last
    read_manifest(folder)                          # None while the folder is unfinished
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

MANIFEST_NAME = "space_manifest.json"


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(binary file)` on a temporary file beside `path`, then rename it to `path`; on any error the
    temporary file is removed and `path` keeps its old content (or stays absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write `manifest` as the folder's `space_manifest.json` (sorted keys; non-JSON values as str), atomically."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(Path(directory) / MANIFEST_NAME, lambda handle: handle.write(text.encode()))
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none (not built, or interrupted before the manifest)."""
    path = Path(directory) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else None
