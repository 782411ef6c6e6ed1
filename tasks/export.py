"""Export task: a finished curation written for other trainers (space/curate/export.py), with its dataset card.

Not cached: it writes into a folder the user chose, and `--force` decides what happens to what is there.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect import task

from space.config import Recipe, fingerprint
from tasks.stages import STAGE_OPTIONS


@task(**STAGE_OPTIONS, name="export-curation")
def export_curation(recipe: Recipe, model: dict[str, Any], curation: dict[str, Any], out: str,
                    formats: list[str], force: bool) -> dict[str, str]:
    """Write the curation of `curate_flow`'s result (`curation`: its stages and metrics) to `out`."""
    from space.curate.export import export_table, write_export
    from space.provenance import code_version

    stages = curation["stages"]
    table = export_table(pl.read_parquet(stages["select"]["path"]), recipe.curate.difficulty.source)
    card = {"recipe": recipe.name, "recipe_fingerprint": fingerprint(recipe), "code_version": code_version(),
            "embedder": recipe.curate.embedding.model, "reference_model": f"{model['name']} (sha {model['sha']})",
            "num_clusters": stages["cluster"]["num_clusters"], "per_cluster": recipe.curate.selection.per_cluster,
            "selection": recipe.curate.selection.selection, "difficulty_source": recipe.curate.difficulty.source,
            "seed": recipe.seed, "curation_table": stages["select"]["path"], "curation_sha": stages["select"]["sha"],
            "verifier": recipe.verifier.model_dump(mode="json"), "metrics": curation.get("metrics") or {}}
    return write_export(table, out, formats, card, force=force)
