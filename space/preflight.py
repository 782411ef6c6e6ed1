"""Pre-flight: what every `space` command checks before any model, engine or embedding is loaded.

The checks here are pure: they take numbers, tables and recipe values and return one `Check` each (a name,
pass or fail, one line of detail); `flows/preflight.py` gathers the inputs (network probes, the data stage,
the model folder, free disk) and prints the block:

    pre-flight (space curate, recipe builtin)
      MLflow     ok      sqlite:///.../.space/mlflow.db (folder writable)
      data       ok      pool 1998 rows, eval 400; K x l = 4 x 25 = 100 kept and trained on (train.pool: reduced)
      ...

A failed check names what to change (the recipe key, the URI, the folder), so the command can stop before it
spends minutes on a model, an engine or an embedding that a later stage would throw away.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

MIN_FEATURE_ROWS = 2  # the PCA block needs N >= 2 (space/curate/features.py, capped_dims)
GB = 1024**3
MB = 1024**2
# what the built-in models weigh on disk (fp32 safetensors): tiny (3.2 M parameters), SmolLM2-135M converted
BUILTIN_MODEL_BYTES = {"tiny": 13 * MB, "smollm2-135m": 540 * MB}
UNKNOWN_MODEL_BYTES = 2 * GB  # a hub model of unknown size: assumed 0.5 B parameters in fp32
STORES_BYTES = GB // 2  # data stages, curation artifacts, Prefect's and MLflow's stores


@dataclass(frozen=True)
class Check:
    """One line of the pre-flight block: a name, whether it passed, and what was found or what to change."""

    name: str
    ok: bool
    detail: str


class PreflightError(ValueError):
    """A pre-flight check failed; the message lists every failed check with what to change."""


TRAINED_ON = {  # what `train.pool` trains on, for the data line
    "reduced": "kept and trained on (train.pool: reduced)",
    "refill": "kept as the first active set, refilled from the pool (train.pool: refill)",
    "informative": "kept as representatives; training uses every prompt the reference model solves sometimes, "
                   "measured or predicted (train.pool: informative)",
    "full": "kept as representatives; training uses every clustered prompt (train.pool: full)",
}


def pool_size_check(pool_rows: int, eval_rows: int | None, summary: str, num_clusters: int, per_cluster: int,
                    needs_eval: bool, train_pool: str = "reduced") -> Check:
    """The pool left after bad rows, duplicates, eval overlap and the eval split, against what curation needs:
    K <= N (k-means, `curate.clusters.num_clusters`) and N >= 2 (the PCA block of the features); a run or a
    training also needs a non-empty eval set. N <= K x l is allowed: selection then keeps every prompt."""
    problems = []
    if pool_rows < max(num_clusters, MIN_FEATURE_ROWS):
        problems.append(f"the pool has {pool_rows} usable rows, but curation needs at least "
                        f"{max(num_clusters, MIN_FEATURE_ROWS)} (curate.clusters.num_clusters = {num_clusters} "
                        f"clusters, and {MIN_FEATURE_ROWS} rows for the features' PCA)")
    if needs_eval and not eval_rows:
        problems.append("training evaluates on a held-out set, and this recipe has none: set data.eval_path, "
                        "data.eval_fraction or data.eval_split")
    kept = num_clusters * per_cluster
    shape = (f"K x l = {num_clusters} x {per_cluster} = {kept}"
             + (" (no reduction: selection keeps every prompt)" if pool_rows <= kept else f" {TRAINED_ON[train_pool]}"))
    found = f"pool {pool_rows} rows, eval {eval_rows if eval_rows is not None else 'none'}; {shape}"
    if problems:
        return Check("data", False, "; ".join(problems) + f" [{summary}]")
    return Check("data", True, found)


def missing_metadata_rows(metadata: Sequence[str | None], key: str) -> list[int]:
    """Indices of rows whose metadata (JSON text, as the data sources store it) has no `key`."""
    missing = []
    for index, raw in enumerate(metadata):
        try:
            entry = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or key not in entry:
            missing.append(index)
    return missing


def verifier_check(name: str, splits: dict[str, tuple[Sequence[str | None], Sequence[str]]],
                   needs: dict[str, str], known: Sequence[str]) -> Check:
    """Whether every row carries what verifier `name` scores it with. `splits` maps a split to its (metadata,
    prompt ids); `needs` maps a verifier name to the metadata key it needs (space.data.verifiers)."""
    key = needs.get(name)
    if key is None:
        return Check("verifier", True, f"{name}: needs only the gold answers")
    problems = []
    for split, (metadata, ids) in splits.items():
        missing = missing_metadata_rows(metadata, key)
        if missing:
            problems.append(f"{len(missing)} of {len(metadata)} {split} rows (e.g. prompt_id {ids[missing[0]]})")
    if not problems:
        return Check("verifier", True, f"{name}: every row's metadata names its task ({key!r})")
    others = ", ".join(n for n in known if n not in needs)
    return Check("verifier", False, f"verifier.name = {name!r} scores a row with the task its metadata names "
                 f"({key!r}), which {' and '.join(problems)} lack: for plain question/answer rows set "
                 f"verifier.name to one of {others}")


def disk_estimate(model_bytes: int, epochs: int, cells: int = 1, trains: bool = True) -> tuple[int, str]:
    """Bytes a command may write under SPACE_HOME, and how the figure was made: per run the model, an MLflow
    copy of the final model and one checkpoint per epoch (weights and two AdamW moments), plus the stores."""
    copies = 2 + 3 * epochs if trains else 1
    total = cells * (copies * model_bytes + STORES_BYTES)
    inner = (f"model {model_bytes / MB:.0f} MB x {copies} cop{'ies' if copies > 1 else 'y'}"
             + (f", with {epochs} epoch checkpoints," if trains else "")
             + f" + {STORES_BYTES / GB:.1f} GB of data, artifacts and stores")
    how = f"({cells} runs x [{inner}])" if cells > 1 else f"({inner})"
    return total, how


def disk_check(home: str, free_bytes: int, estimate: int, how: str) -> Check:
    """Free space under SPACE_HOME against the estimate (a cached re-run needs far less)."""
    found = f"{free_bytes / GB:.1f} GB free under {home}, the estimate is {estimate / GB:.1f} GB {how}"
    if free_bytes < estimate:
        return Check("disk", False, found + ": free some space or point SPACE_HOME at a larger disk")
    return Check("disk", True, found)


def render_block(title: str, checks: Sequence[Check]) -> str:
    """The block the console prints: a title, then one aligned line per check."""
    width = max((len(c.name) for c in checks), default=0)
    return "\n".join([title, *(f"  {c.name:<{width}}  {'ok' if c.ok else 'FAILED':<6}  {c.detail}" for c in checks)])


def raise_on_failure(checks: Sequence[Check]) -> None:
    """PreflightError listing every failed check, or nothing."""
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    if failed:
        raise PreflightError("pre-flight failed, nothing was started: " + " | ".join(failed))
