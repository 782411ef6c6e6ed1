"""The `space` command: run the SPaCe stages as Prefect flows on a recipe.

    space run                         # bootstrap -> curate -> train -> final eval, builtin recipe
    space curate --recipe smollm2 --set curate.clusters.num_clusters=8
    space recipe --recipe builtin     # print the resolved recipe
    space bench infra/bench/smoke.yaml
    space export --recipe builtin --out ./curation   # the curation for your own trainer (docs/integrations.md)
    space compare --tag space.recipe=builtin   # finished runs side by side
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

app = typer.Typer(help="SPaCe: self-paced curriculum RL fine-tuning on Prefect and MLflow.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
_STATE: dict[str, Any] = {"debug": False, "verbose": False}


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", envvar="SPACE_DEBUG",
                                        help="on error, show the full traceback (and Prefect's)")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="ignore Prefect's result cache: every stage re-checks "
                                          "its folder's file hashes and recomputes what is damaged")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", envvar="SPACE_VERBOSE",
                                          help="show the INFO logs of Prefect, vLLM, transformers and the other "
                                          "libraries (quiet by default: warnings and errors only)")] = False,
) -> None:
    """Options before the command: `space --debug run ...`, `space --verbose run ...`."""
    from flows.console import quiet_environment

    _STATE["debug"], _STATE["verbose"] = debug, verbose
    quiet_environment(verbose)  # before any library is imported
    if refresh:
        os.environ["PREFECT_TASKS_REFRESH_CACHE"] = "true"


def _set_up_console() -> None:
    """Without --debug, console log handlers print no tracebacks (Prefect's API handler still records them,
    so the Prefect UI shows them), and without --verbose either, no ERROR lines about failed task and flow runs;
    the error itself ends the command as one paragraph. Without --verbose, the
    console shows warnings and errors only (flows/console.py); with rich bars, log lines print above them."""
    from prefect.logging.configuration import ensure_logging_setup

    from flows.console import NoRunFailures, NoTraceback, console_handlers, quiet_loggers, route_logs_above_bars
    from tasks.progress import progress_mode

    ensure_logging_setup()  # Prefect's handlers exist from here on (later setups are incremental)
    quiet_loggers(_STATE["verbose"])
    if progress_mode() == "rich":
        route_logs_above_bars()
    if not _STATE["debug"]:
        for handler in console_handlers():
            handler.addFilter(NoTraceback())
            if not _STATE["verbose"]:
                handler.addFilter(NoRunFailures())


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; without --debug an exception becomes one paragraph on stderr and a non-zero exit."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _STATE["debug"]:
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001  (shown, never swallowed: the exit code says it failed)
            from flows.console import KNOWN_ERRORS, describe_error

            typer.echo(describe_error(err), err=True)
            raise typer.Exit(2 if isinstance(err, KNOWN_ERRORS) else 1) from None

    return run

RecipeOption = Annotated[str, typer.Option("--recipe", "-r", help="shipped recipe name or a YAML path")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a recipe key: section.key=value (repeatable)")
]


def _resolve(recipe: str, overrides: list[str] | None):
    """Load and validate the recipe, save the resolved YAML under SPACE_HOME/recipes, say where."""
    from space.config import RecipeError, dump_recipe, fingerprint, load_recipe
    from space.paths import space_home

    try:
        resolved = load_recipe(recipe, overrides or [])
    except RecipeError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    _set_up_console()
    path = space_home() / "recipes" / f"{resolved.name}-{fingerprint(resolved)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_recipe(resolved))
    typer.echo(f"recipe {resolved.name}: resolved recipe saved to {path}")
    return resolved


def _probe(command: str) -> None:
    """First thing in a command: MLflow and Prefect reachable (flows/preflight.py), in seconds."""
    from flows.preflight import probe_services

    _STATE["services"] = probe_services(command, typer.echo)


def _preflight(command: str, recipes: dict[str, Any], runs: int = 1) -> None:
    """The checks every command runs before any model, engine or embedding loads (flows/preflight.py): one
    block on the console; a failure ends the command as one paragraph, exit 2."""
    from flows.preflight import preflight
    from flows.watchdog import start_watchdog

    if command != "compare" and "watchdog" not in _STATE:  # stops what this command starts, should it be killed
        _STATE["watchdog"] = start_watchdog()
    preflight(command, recipes, typer.echo, runs, _STATE.pop("services", None))


@app.command()
@friendly_errors
def recipe(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Print the fully resolved recipe (shipped recipes: `space recipes`)."""
    from space.config import dump_recipe, load_recipe, RecipeError

    try:
        typer.echo(dump_recipe(load_recipe(recipe, set or [])))
    except RecipeError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


@app.command()
def recipes() -> None:
    """List the recipes shipped with space."""
    from space.config import shipped_recipes

    for name in shipped_recipes():
        typer.echo(name)


@app.command("bootstrap-model")
@friendly_errors
def bootstrap_model(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Build (tiny), convert (smollm2-135m) or locate the recipe's policy model."""
    _probe("bootstrap-model")
    resolved = _resolve(recipe, set)
    _preflight("bootstrap-model", {resolved.name: resolved})
    from flows.bootstrap import bootstrap_flow

    model = bootstrap_flow(resolved)
    typer.echo(f"model: {model['path']}")


@app.command()
@friendly_errors
def curate(
    recipe: RecipeOption = "builtin",
    set: SetOption = None,
    add: Annotated[str | None, typer.Option("--add", help="place the prompts of this file (jsonl/json/parquet/csv, "
                                            "the recipe's columns) in the existing clusters; no re-clustering")] = None,
    drift_quantile: Annotated[float, typer.Option(help="with --add: a new prompt is 'far' beyond this quantile of "
                                                  "its cluster's pool distances")] = 0.95,
) -> None:
    """Phase 1: embed, estimate difficulty, cluster and keep representatives (or, with --add, place new prompts)."""
    start = time.monotonic()
    _probe("curate")
    resolved = _resolve(recipe, set)
    _preflight("curate", {resolved.name: resolved})
    from flows.bootstrap import bootstrap_flow
    from flows.console import render_summary, stage_rows
    from flows.curate import curate_add_flow, curate_flow
    from tasks.stages import RECORDED

    first = len(RECORDED)

    if add is not None:
        placed = curate_add_flow(resolved, bootstrap_flow(resolved), add, drift_quantile)
        typer.echo(f"added: {placed['added']} prompts, drift {placed['drift']:.3f}, table {placed['path']}")
        return
    result = curate_flow(resolved, bootstrap_flow(resolved))
    typer.echo(render_summary(stage_rows(RECORDED[first:]), {}, {"MLflow curate run": result["run_id"],
                              "wall clock": f"{time.monotonic() - start:.1f} s"}, title="space curate summary"))
    typer.echo(f"reduced pool: {result['stages']['select']['reduced']}")


@app.command()
@friendly_errors
def export(
    recipe: RecipeOption = "builtin",
    set: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="folder to write (default: SPACE_HOME/exports/<recipe>)")] = None,
    format: Annotated[list[str] | None, typer.Option(
        "--format", help="hf (datasets save_to_disk), parquet or jsonl; repeatable (default: all three)")] = None,
    force: Annotated[bool, typer.Option(help="replace a previous export in --out")] = False,
) -> None:
    """Write the recipe's curation (pool, clusters, difficulty, selected subset) and a dataset card for another
    trainer (docs/integrations.md); curates first when needed (cached)."""
    from space.curate.export import FORMATS, check_out_dir
    from space.paths import space_home

    resolved = _resolve(recipe, set)
    folder = (out or space_home() / "exports" / resolved.name).resolve()
    check_out_dir(folder, force)  # before any stage runs
    from flows.bootstrap import bootstrap_flow
    from flows.export import export_flow

    paths = export_flow(resolved, bootstrap_flow(resolved), str(folder), list(format or FORMATS), force)
    typer.echo(f"export: {folder} ({', '.join(sorted(paths))})")


@app.command()
@friendly_errors
def train(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Phase 2: bandit-paced GRPO epochs on the curated pool (runs bootstrap and curation first, cached)."""
    start = time.monotonic()
    _probe("train")
    resolved = _resolve(recipe, set)
    _preflight("train", {resolved.name: resolved})
    from flows.bootstrap import bootstrap_flow
    from flows.console import accuracy_pairs, render_summary, stage_rows
    from flows.curate import curate_flow
    from flows.train import train_flow
    from tasks.stages import RECORDED

    first = len(RECORDED)
    model = bootstrap_flow(resolved)
    result = train_flow(resolved, model, curate_flow(resolved, model))
    accuracy = accuracy_pairs(result["base_eval"]["metrics"], result["final_eval"]["metrics"])
    ids = {"MLflow train run": result["run_id"], "MLflow eval run": result["eval_run_id"],
           "wall clock": f"{time.monotonic() - start:.1f} s"}
    typer.echo(render_summary(stage_rows(RECORDED[first:]), accuracy, ids, title="space train summary"))
    typer.echo(f"model: {result['model_dir']}")


@app.command()
@friendly_errors
def run(
    recipe: RecipeOption = "builtin",
    set: SetOption = None,
    register: Annotated[str | None, typer.Option(help="register the final model in MLflow under this name "
                                                      "(alias @candidate)")] = None,
) -> None:
    """The main job: bootstrap -> curate -> train -> final eval, as one Prefect flow and one MLflow parent run."""
    start = time.monotonic()
    _probe("run")
    resolved = _resolve(recipe, set)
    _preflight("run", {resolved.name: resolved})
    from flows.console import run_summary
    from flows.run import run_flow
    from tasks.gain import describe_gains
    from tasks.stages import RECORDED

    first = len(RECORDED)
    result = run_flow(resolved, register_as=register)
    typer.echo(run_summary(RECORDED[first:], result, time.monotonic() - start))
    typer.echo(f"model: {result['model_dir']} (trained on {result['unique_prompts']} unique prompts)")
    for line in describe_gains(result["gain"]):
        typer.echo(line)


@app.command()
@friendly_errors
def bench(
    spec: Annotated[Path, typer.Argument(help="bench spec YAML (see infra/bench/)")],
    out: Annotated[Path | None, typer.Option(help="results folder (default: SPACE_HOME/bench/<name>)")] = None,
) -> None:
    """Run a grid of arms x seeds at one rollout budget and write a report (markdown + figures)."""
    _probe("bench")
    from space.analysis.bench import BenchSpecError, load_bench_spec, resolve_cells

    try:
        parsed = load_bench_spec(spec)
        cells = resolve_cells(parsed, spec.parent)
    except BenchSpecError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    _set_up_console()  # the console of `space run`: progress lines, no library INFO logs unless --verbose
    typer.echo(f"bench {parsed.name}: {len(parsed.arms)} arms x {len(parsed.seeds)} seeds = {len(cells)} cells")
    from flows.preflight import bench_recipes

    _preflight("bench", bench_recipes(cells), runs=len(cells))
    from flows.bench import run_bench
    from flows.console import render_summary, stage_rows
    from tasks.stages import RECORDED

    start, first = time.monotonic(), len(RECORDED)
    result = run_bench(parsed, str(spec.parent.resolve()), str(out.resolve()) if out else None, spec.read_text())
    typer.echo((Path(result["report"])).read_text())
    typer.echo(render_summary(stage_rows(RECORDED[first:]), {}, {
        "MLflow bench run": result["parent_run_id"], "report": result["report"],
        "wall clock": f"{time.monotonic() - start:.1f} s"}, title="space bench summary"))


def _parse_tags(pairs: list[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--tag {pair!r}: expected KEY=VALUE, e.g. space.policy=uniform")
        tags[key.strip()] = value.strip()
    return tags


@app.command()
@friendly_errors
def compare(
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment (default: the one space logs to, "
                                                        "SPACE_EXPERIMENT or 'space')")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="keep runs with this tag, KEY=VALUE (repeatable), e.g. "
                                                       "space.policy=uniform")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", help="compare this MLflow run id (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (default: SPACE_HOME/compare/<time>)")] = None,
    log: Annotated[bool, typer.Option(help="log the report as a new MLflow run (tag space.stage=compare)")] = True,
) -> None:
    """Finished runs side by side: a table (printed, compare.md, compare.csv), figures, and an MLflow run.

    Without --run: every `space run` parent run of the experiment (with the --tag filters)."""
    import tasks  # noqa: F401  (environment defaults before mlflow is imported)
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from space.analysis.compare import HEADERS, table_rows, write_report
    from space.paths import space_home
    from tasks.compare import log_compare_run, run_records
    from tasks.tracking import EXPERIMENT

    tags = _parse_tags(tag)
    _preflight("compare", {})
    name = experiment or EXPERIMENT
    records = run_records(name, tags, list(run or []))
    folder = out or space_home() / "compare" / datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = write_report(records, folder)
    table = Table(title=f"{len(records)} runs of experiment {name!r}")
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in table_rows(records):
        table.add_row(*(row[h] for h in HEADERS))
    Console(width=max(160, Console().width)).print(table)
    typer.echo(f"report: {paths['compare.md']} (+ compare.csv, {', '.join(p for p in paths if p.endswith('.png'))})")
    if log:
        typer.echo(f"MLflow compare run: {log_compare_run(name, records, list(paths.values()), tags)}")


@app.command()
@friendly_errors
def serve(
    recipe: RecipeOption = "builtin",
    set: SetOption = None,
    cron: Annotated[str | None, typer.Option(help="cron schedule, e.g. '0 3 * * *'")] = None,
    interval: Annotated[int | None, typer.Option(help="schedule every N seconds")] = None,
    name: Annotated[str | None, typer.Option(help="deployment name (default: the recipe name)")] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs at a time (later ones wait)")] = 1,
) -> None:
    """Serve `space run` on a recipe as a scheduled Prefect deployment (needs PREFECT_API_URL; blocks).

    Stops on SIGTERM or Ctrl-C within seconds, pausing the schedule when the server still answers."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("serve needs a Prefect server: run `prefect server start` (see infra/servers.sh) and set "
                   "PREFECT_API_URL=http://127.0.0.1:4200/api; the temporary local server runs no scheduler", err=True)
        raise typer.Exit(2)
    _probe("serve")
    resolved = _resolve(recipe, set)
    _preflight("serve", {resolved.name: resolved})
    from flows.run import run_flow
    from flows.serve import serve_flow

    code = serve_flow(run_flow, name or resolved.name, cron=cron, interval=interval, limit=limit,
                      parameters={"recipe": resolved.model_dump(mode="json")},
                      tags=[f"recipe:{resolved.name}", f"policy:{resolved.train.bandit.policy}"])
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
