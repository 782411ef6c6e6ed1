"""Which code produced a result: a content hash of a package's sources, part of every cache key.

A version string never changes between commits, so a cache keyed on it silently reuses results computed
by old code. `code_version()` hashes the bytes of every `.py` source and shipped recipe of the `space`
package (sorted relative path + content), once per process: any edit to the library changes every
stage's fingerprint (see `space.config.fingerprint`), so stages recompute after a fix.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

SOURCE_SUFFIXES = (".py", ".yaml")


def source_hash(root: Path, suffixes: tuple[str, ...] = SOURCE_SUFFIXES) -> str:
    """sha256 over the sorted (relative path, bytes) of the files under `root` with these suffixes."""
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_version() -> str:
    """The content hash of the installed `space` package's sources (computed once per process)."""
    return source_hash(Path(__file__).resolve().parent)
