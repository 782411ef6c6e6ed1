"""The `space` command: run the SPaCe stages as Prefect flows on a recipe.

    space run                         # bootstrap -> curate -> train -> final eval, builtin recipe
    space curate --recipe smollm2 --set curate.clusters.num_clusters=8
    space recipe --recipe builtin     # print the resolved recipe
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="SPaCe: self-paced curriculum RL fine-tuning on Prefect and MLflow.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

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
    path = space_home() / "recipes" / f"{resolved.name}-{fingerprint(resolved)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_recipe(resolved))
    typer.echo(f"recipe {resolved.name}: resolved recipe saved to {path}")
    return resolved


@app.command()
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
def bootstrap_model(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Build (tiny), convert (smollm2-135m) or locate the recipe's policy model."""
    resolved = _resolve(recipe, set)
    from flows.bootstrap import bootstrap_flow

    model = bootstrap_flow(resolved)
    typer.echo(f"model: {model['path']}")


@app.command()
def curate(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Phase 1: embed, estimate difficulty, cluster and keep representatives."""
    resolved = _resolve(recipe, set)
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow

    result = curate_flow(resolved, bootstrap_flow(resolved))
    typer.echo(f"reduced pool: {result['stages']['select']['reduced']}")
    typer.echo(f"MLflow run: {result['run_id']}")


@app.command()
def train(recipe: RecipeOption = "builtin", set: SetOption = None) -> None:
    """Phase 2: bandit-paced GRPO epochs on the curated pool (runs bootstrap and curation first, cached)."""
    resolved = _resolve(recipe, set)
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from flows.train import train_flow

    model = bootstrap_flow(resolved)
    result = train_flow(resolved, model, curate_flow(resolved, model))
    typer.echo(f"model: {result['model_dir']}")
    typer.echo(f"MLflow run: {result['run_id']}")


@app.command()
def run(
    recipe: RecipeOption = "builtin",
    set: SetOption = None,
    register: Annotated[str | None, typer.Option(help="register the final model in MLflow under this name "
                                                      "(alias @candidate)")] = None,
) -> None:
    """The main job: bootstrap -> curate -> train -> final eval, as one Prefect flow and one MLflow parent run."""
    resolved = _resolve(recipe, set)
    from flows.run import run_flow

    result = run_flow(resolved, register_as=register)
    for key in ("run_id", "curate_run_id", "train_run_id", "eval_run_id", "model_dir", "unique_prompts"):
        typer.echo(f"{key}: {result[key]}")
    for label, metrics in (("base", result["base_eval"]), ("final", result["final_eval"])):
        for key, value in sorted(metrics.items()):
            if key.startswith("eval/all/"):
                typer.echo(f"{label} {key}: {value:.4f}")


@app.command()
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
    resolved = _resolve(recipe, set)
    from flows.run import run_flow
    from flows.serve import serve_flow

    code = serve_flow(run_flow, name or resolved.name, cron=cron, interval=interval, limit=limit,
                      parameters={"recipe": resolved.model_dump(mode="json")},
                      tags=[f"recipe:{resolved.name}", f"policy:{resolved.train.bandit.policy}"])
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
