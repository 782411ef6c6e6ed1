"""The pre-flight every `space` command runs before any model, engine or embedding is loaded, printed as one block.

    space curate ...   ->   pre-flight (space curate, recipe builtin)
                              MLflow    ok  sqlite:////.../.space/mlflow.db (folder writable)
                              Prefect   ok  temporary local server, started by the first flow (PREFECT_API_URL unset)
                              disk      ok  41.2 GB free under /.../.space, the estimate is 0.5 GB (...)
                              data      ok  pool 1998 rows, eval 400; K x l = 4 x 25 = 100 kept
                              verifier  ok  reasoning_gym: every row's metadata names its task ('source_dataset')
                              model     ok  tiny: built by the bootstrap stage; ...

Order: the network probes first (`probe_services`, before the recipe is read: an unreachable server fails the
command in seconds), the disk, then per recipe the
data (the load stage itself, so the flow reuses its folder), the verifier's needs and, for a local model folder,
its chat template and the completion lengths (the same checks the curate flow runs after bootstrap). The pure
checks are in space/preflight.py, the probes in tasks/probes.py. A failure prints the block on stderr and raises
`PreflightError` listing the failed checks, which the CLI turns into its one paragraph (exit 2).

A flow a deployment starts (flows/run.py, flows/jobs.py, flows/bench.py) runs the same pre-flight first thing
(`flow_preflight`), its block in the flow run's log; called by the CLI, which has just passed it for the same
recipes in the same process, the flow skips it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from space.paths import space_home
from space.preflight import (BUILTIN_MODEL_BYTES, UNKNOWN_MODEL_BYTES, Check, disk_check, disk_estimate,
                             pool_size_check, raise_on_failure, render_block, verifier_check)
from tasks.probes import probe_mlflow, probe_prefect

if TYPE_CHECKING:  # this module is imported first thing by a command: the probes must not wait for polars
    from space.config import Recipe

# what each command talks to and needs (commands not listed run no pre-flight: recipe, recipes)
TRACKED = {"curate", "train", "run", "bench", "serve", "compare"}
FLOWS = {"bootstrap-model", "curate", "train", "run", "bench", "serve"}
TRAINS = {"train", "run", "bench", "serve"}
USER_ERRORS = (ValueError, KeyError, OSError, RuntimeError)  # what a check turns into a failed line
_PASSED: set[tuple[str, ...]] = set()  # (command, services, recipe fingerprints) passed, not yet used by a flow


def probe_services(command: str, echo: Callable[..., Any]) -> list[Check]:
    """The tracking store and the Prefect API, first thing in a command (before the recipe is even read): on
    failure the block so far goes to stderr and PreflightError ends the command."""
    checks = [probe_mlflow(os.environ["MLFLOW_TRACKING_URI"])] if command in TRACKED else []
    checks += [probe_prefect(os.environ.get("PREFECT_API_URL"))] if command in FLOWS else []
    if not all(c.ok for c in checks):
        echo(render_block(f"pre-flight (space {command})", checks), err=True)
        raise_on_failure(checks)
    return checks


def preflight(command: str, recipes: dict[str, Recipe], echo: Callable[..., Any], runs: int = 1,
              services: list[Check] | None = None) -> list[Check]:
    """Run the command's checks over `recipes` (label -> recipe: one for most commands, one per arm for a
    bench, whose `runs` cells the disk estimate counts), after the `services` already probed (else probed
    here), print the block with `echo`, raise PreflightError when any failed."""
    first = next(iter(recipes.values()), None)
    title = f"pre-flight (space {command}" + (f", recipe {first.name})" if len(recipes) == 1 and first else
                                              f", {len(recipes)} arms)" if recipes else ")")
    checks = list(services if services is not None else probe_services(command, echo))
    checks += [_disk(command, recipes, runs)] if recipes else []
    if all(c.ok for c in checks):
        for label, recipe in recipes.items():
            checks += _recipe_checks(command, recipe, "" if len(recipes) == 1 else f" [{label}]")
    block = render_block(title, checks)
    failed = not all(c.ok for c in checks)
    echo(block, err=failed)
    raise_on_failure(checks)
    _PASSED.add(_key(command, recipes))
    return checks


def flow_preflight(command: str, recipes: dict[str, Recipe], runs: int = 1) -> list[Check]:
    """The pre-flight at the start of a flow a deployment runs (or any direct call of the flow), its block in the
    flow run's log; skipped (returns []) when this process already passed it for the same command and recipes,
    as the CLI does before it calls the flow. A pass lets one flow skip, and only under the same tracking URI,
    Prefect API and SPACE_HOME: a later call of the flow in the same process (a test session, a notebook)
    checks again. Raises PreflightError as the CLI's pre-flight does."""
    key = _key(command, recipes)
    if key in _PASSED:
        _PASSED.discard(key)
        return []
    from prefect import get_run_logger

    logger = get_run_logger()

    def log(message: str, err: bool = False) -> None:
        (logger.error if err else logger.info)(message)

    return preflight(command, recipes, log, runs)


def _key(command: str, recipes: dict[str, Recipe]) -> tuple[str, ...]:
    from space.hashing import fingerprint

    services = tuple(f"{name}={os.environ.get(name, '')}" for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"))
    recipe_keys = sorted(f"{label}={fingerprint(recipe)}" for label, recipe in recipes.items())
    return (command, *services, f"SPACE_HOME={space_home()}", *recipe_keys)


def _model_bytes(name: str) -> int:
    if name in BUILTIN_MODEL_BYTES:
        return BUILTIN_MODEL_BYTES[name]
    folder = Path(name).expanduser()
    if folder.is_dir():
        return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    return UNKNOWN_MODEL_BYTES


def _disk(command: str, recipes: dict[str, Recipe], runs: int) -> Check:
    """Free space under SPACE_HOME against the estimate for every run the command may make."""
    recipe = next(iter(recipes.values()))
    estimate, how = disk_estimate(_model_bytes(recipe.model.name), recipe.train.epochs, runs, command in TRAINS)
    home = space_home()
    return disk_check(str(home), shutil.disk_usage(home).free, estimate, how)


def _recipe_checks(command: str, recipe: Recipe, label: str) -> list[Check]:
    """data, verifier and model for one recipe (bootstrap-model: the model alone)."""
    if command == "bootstrap-model":
        return [_renamed(_model(recipe, None), label)]
    data, manifest = _data(recipe, command in TRAINS)
    checks = [data]
    if manifest is not None:
        checks.append(_verifier(recipe, manifest))
        checks.append(_model(recipe, manifest if data.ok else None))
    return [_renamed(c, label) for c in checks]


def _renamed(check: Check, label: str) -> Check:
    return Check(check.name + label, check.ok, check.detail)


def _failed(name: str, err: BaseException) -> Check:
    return Check(name, False, f"{type(err).__name__}: {' '.join(str(err).split())}")


def _data(recipe: Recipe, needs_eval: bool) -> tuple[Check, dict[str, Any] | None]:
    """Load the data exactly as the load-data stage does (its folder is reused by the flow), then the sizes."""
    from tasks.curate import load_data, load_summary

    try:
        manifest = load_data.fn(recipe.data)
    except USER_ERRORS as err:
        return _failed("data", err), None
    curate = recipe.curate
    check = pool_size_check(manifest["pool"]["rows"], (manifest["eval"] or {}).get("rows"),
                            load_summary(manifest).replace("\n", "; "), curate.clusters.num_clusters,
                            curate.selection.per_cluster, needs_eval, recipe.train.pool)
    return check, manifest


def _verifier(recipe: Recipe, manifest: dict[str, Any]) -> Check:
    import polars as pl

    from space.data.verifiers import METADATA_NEEDS, known_verifiers

    splits = {}
    for split in ("pool", "eval"):
        if manifest[split] is not None:
            table = pl.read_parquet(manifest[split]["path"], columns=["prompt_id", "metadata"])
            splits[split] = (table["metadata"].to_list(), table["prompt_id"].to_list())
    return verifier_check(recipe.verifier.name, splits, METADATA_NEEDS, known_verifiers())


def _model(recipe: Recipe, data: dict[str, Any] | None) -> Check:
    """A built-in model is checked after bootstrap builds it; a local folder now: it exists, its tokenizer has a
    chat template and the completion limits hold the longest gold answer (the curate flow's own checks)."""
    from tasks.bootstrap import BUILTIN_MODELS, external_model

    name = recipe.model.name
    if name in BUILTIN_MODELS:
        return Check("model", True, f"{name}: built by the bootstrap stage; its chat template and the completion "
                     "lengths are checked right after it, before any engine starts")
    try:
        model = external_model.fn(name)
        if model["build"]["source"] == "hub":
            return Check("model", True, f"{name}: a hub model, checked when it loads")
        lengths = _template_and_lengths(recipe, model, data)
    except USER_ERRORS as err:
        return _failed("model", err)
    return Check("model", True, f"{model['path']}: chat template present" + lengths)


def _template_and_lengths(recipe: Recipe, model: dict[str, Any], data: dict[str, Any] | None) -> str:
    from transformers import AutoTokenizer

    from space.data.prompting import render_prompts
    from tasks.curate import check_lengths

    render_prompts(AutoTokenizer.from_pretrained(model["path"]), ["?"], recipe.model.system_prompt,
                   recipe.model.enable_thinking)
    if data is None:
        return ""
    longest = check_lengths.fn(data, model, recipe)
    return "; completion limits hold the longest gold answer" + "".join(
        f" ({split}: {v['tokens']} tokens)" for split, v in longest.items())


def bench_recipes(cells: Sequence[Any]) -> dict[str, Recipe]:
    """One recipe per bench arm (its first seed): the data, verifier and model do not depend on the seed."""
    recipes: dict[str, Recipe] = {}
    for cell in cells:
        recipes.setdefault(cell.arm, cell.recipe)
    return recipes
