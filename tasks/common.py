"""Shared plumbing for tasks: the cache policy, stage directories, hashes and manifests.

Cache keys are designed, not defaulted: every cached task takes its stage config and the content hashes
of its inputs as arguments, and `CACHED` keys on those inputs, the task's own source and the code it
calls. TASK_SOURCE covers only the task function's lines, not the `space` code it calls
(PrefectHQ/prefect#23062), so `CACHED` and every stage folder's fingerprint also fold in the hash of the
code the task runs (`space.provenance.function_code_key`: the modules and functions of `space` and
`tasks` it reaches): an edit recomputes the stages whose code it touches, and those downstream of them
whose inputs change; the stages before them stay cached.

A stage folder is reused only when its manifest exists and every file the manifest lists is present
with its recorded sha256; otherwise the stage recomputes. Inputs handed over from an upstream stage are
checked the same way (`verify_files`), and a mismatch is an `ArtifactError` naming the file.

Prefect's cached result of a stage is its manifest, and it is trusted the same way (`IntactArtifacts`):
the key folds in SPACE_HOME, so a result store shared by several homes (a worker's, `~/.prefect`) never
hands one home's manifest to another; and a record whose files are gone or changed is stepped over, so
the task runs again (reusing what is intact on disk) instead of passing dead paths downstream.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects

from space.hashing import fingerprint, sha256_file
from space.manifest import MANIFEST_NAME
from space.manifest import write_manifest as write_manifest_file
from space.paths import space_home
from space.provenance import code_version, function_code_key, source_hash
from tasks.stages import note_reused

MANIFEST = MANIFEST_NAME  # the one manifest name (space/manifest.py)
FILES_KEY = "files"
log = logging.getLogger(__name__)


class ArtifactError(RuntimeError):
    """A stage's file is missing or differs from the sha256 its manifest recorded."""


@lru_cache(maxsize=None)
def code_key() -> str:
    """Content hash of the `space` library and of these tasks (computed once per process)."""
    return f"{code_version()}-{source_hash(Path(__file__).resolve().parent)}"


def task_code_key() -> str:
    """The hash of the code the running Prefect task reaches; outside a task (a task's `.fn` called
    directly), the whole packages' `code_key()`."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return function_code_key(context.task.fn) if context is not None else code_key()


CODE = CachePolicy.from_cache_key_fn(lambda context, _inputs: function_code_key(context.task.fn))
MAX_DAMAGED_RECORDS = 8  # how many damaged records in a row a key steps over before it gives up caching


@dataclass
class IntactArtifacts(CachePolicy):
    """`base`'s key in this SPACE_HOME, stepped past stored results whose files are missing or changed.

    A damaged record at key K moves the key to hash(K, "damaged"): the task runs and stores its result
    there, and later runs step over K again (still damaged) to find it, so the cache heals without deleting
    anything. None (no caching) only after MAX_DAMAGED_RECORDS damaged records in a row.
    """

    base: CachePolicy = field(default_factory=lambda: INPUTS + TASK_SOURCE + CODE)

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        base = self.base.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs)
        if base is None:
            return None
        key = hash_objects(base, str(space_home()), raise_on_failure=True)
        store = task_ctx.result_store
        for _ in range(MAX_DAMAGED_RECORDS):
            if not store.exists(key):
                return key
            problems = result_problems(store.read(key).result)
            if not problems:
                return key
            log.warning("cached result of %s lists damaged files (%s): running the task again",
                        task_ctx.task.name, "; ".join(problems[:3]))
            key = hash_objects(key, "damaged", raise_on_failure=True)
        return None


def result_problems(result: Any) -> list[str]:
    """What is wrong with the files a task's result lists: a stage manifest's files, a file part's sha, a
    model folder's presence (bootstrap); nothing for results that name no files (a bench cell's facts)."""
    if not isinstance(result, dict):
        return []
    path = result.get("path")
    if FILES_KEY not in result and isinstance(path, str) and Path(path).is_dir():
        return []  # a model folder (bootstrap): intact when present
    return file_problems(result)


CACHED = IntactArtifacts()


def stage_dir(stage: str, *parts: Any) -> Path:
    """SPACE_HOME/artifacts/<stage>/<fingerprint of parts and code>: same inputs and code, same place."""
    path = space_home() / "artifacts" / stage / fingerprint(stage, task_code_key(), *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """The first 16 hex digits of the file's sha256 (what stage manifests record)."""
    return sha256_file(path)[:16]


def _hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every file under the stage folder (relative path -> hash), its own manifest excepted (a
    checkpoint's manifest in a subfolder is one of the stage's files)."""
    return {p.relative_to(directory).as_posix(): file_sha256(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p != directory / MANIFEST}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Written last and atomically, with the sha256 of every file in the folder, so a present manifest
    means the stage's files are complete, and a changed file can be told apart."""
    return write_manifest_file(directory, {**manifest, "dir": str(directory), FILES_KEY: _hash_files(directory)})


def file_problems(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with the files a manifest lists: missing, or changed since it was written."""
    if FILES_KEY in manifest:
        listed = {Path(manifest["dir"]) / name: sha for name, sha in manifest[FILES_KEY].items()}
    else:  # a part of a stage's manifest handed downstream (e.g. the data stage's pool): its path and sha
        listed = {Path(manifest["path"]): manifest["sha"]} if {"path", "sha"} <= set(manifest) else {}
    problems = []
    for path, sha in listed.items():
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != sha:
            problems.append(f"{path}: content differs from the manifest (sha256 {sha} recorded)")
    return problems


def verify_files(*manifests: dict[str, Any] | None) -> None:
    """Raise `ArtifactError` naming every missing or changed file of these upstream manifests."""
    problems = [p for m in manifests if m for p in file_problems(m)]
    if problems:
        raise ArtifactError("stage artifacts are damaged: " + "; ".join(problems)
                            + ". Re-run with `space --refresh ...` to recompute the damaged stages.")


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """A finished stage's manifest, found on disk even when Prefect's result cache was cleared; None (the
    stage recomputes) when there is none or a file it lists is missing or changed."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        log.warning("%s is not valid JSON (%s): recomputing the stage", path, err)
        return None
    manifest["dir"] = str(directory)  # where it is now (a copied SPACE_HOME moves it)
    if FILES_KEY not in manifest or (problems := file_problems(manifest)):
        log.warning("stage folder %s is incomplete or changed (%s): recomputing it", directory,
                    "; ".join(problems) if FILES_KEY in manifest else "manifest lists no file hashes")
        return None
    note_reused()
    return manifest


class OpenStage(NamedTuple):
    """A stage folder as a task finds it: `done` is its finished manifest (return it), else None and the
    upstream inputs were verified before `start` (a `time.perf_counter()` reading) was taken."""

    dir: Path
    done: dict[str, Any] | None
    start: float


def open_stage_dir(directory: Path, *inputs: dict[str, Any] | None) -> OpenStage:
    """The preamble of every stage task: reuse a finished folder, else check the upstream manifests' files
    (`verify_files`) and start the clock."""
    done = read_manifest(directory)
    if done is None:
        verify_files(*inputs)
    return OpenStage(directory, done, time.perf_counter())


def open_stage(stage: str, *key_parts: Any, inputs: tuple[dict[str, Any] | None, ...] = ()) -> OpenStage:
    """`open_stage_dir` on `stage_dir(stage, *key_parts)`:

        out, done, start = open_stage("embed", pool["sha"], cfg, inputs=(pool,))
        if done is not None:
            return done
    """
    return open_stage_dir(stage_dir(stage, *key_parts), *inputs)
