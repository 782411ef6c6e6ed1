"""Export flow: curate a recipe (cached stages) and write the curation for another trainer (issue 20).

    space export --recipe builtin --out ./builtin-curation
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from flows.curate import curate_flow
from space.config import Recipe
from tasks.export import export_curation


@flow(name="export", log_prints=True)
def export_flow(recipe: Recipe, model: dict[str, Any], out: str, formats: list[str], force: bool = False
                ) -> dict[str, str]:
    """The recipe's curation (every stage cached from an earlier `space curate`) as hf/parquet/jsonl + card."""
    curation = curate_flow(recipe, model)
    paths = export_curation(recipe, model, curation, out, formats, force)
    print(f"exported {out}: {', '.join(sorted(paths))}")
    return paths
