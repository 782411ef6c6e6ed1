"""Export a curation for other trainers, and read one back (issue 20).

The curation of a recipe (the whole clustered pool, each row flagged `selected` or not) is written as

    out/hf/                 a Hugging Face `datasets` dataset (`Dataset.save_to_disk`; `datasets.load_from_disk`)
    out/curation.parquet    the same rows for polars / pandas / pyarrow
    out/curation.jsonl      the same rows, one JSON object a line
    out/README.md           the dataset card: recipe, embedder, reference model, K, l, selection rule, code hash,
                            curation metrics, and what each column means
    out/export.json         the card's facts as JSON, written last ("export.json present" = export complete)

    table = export_table(curation, difficulty_source="rollouts")
    write_export(table, Path("out"), formats=("hf", "parquet", "jsonl"), card=facts, force=False)
    curation = read_curation("out")            # also a datasets.Dataset, a polars frame or a single file

`read_curation` is what the trainer integrations (space/integrations) load; it refuses a table without the
columns they need and names the missing column.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

FORMATS = ("hf", "parquet", "jsonl")
# What each exported column holds (also the dataset card's column table).
COLUMNS = {
    "prompt_id": "stable id of the prompt (the key the integrations match rewards by)",
    "question": "the question text as loaded (not chat-rendered)",
    "answer": "gold answer the verifier compares against",
    "metadata": "JSON string of the row's extra verifier fields (e.g. reasoning-gym's entry)",
    "source": "which source/task the row came from",
    "level": "the source's difficulty level label, if any",
    "cluster": "cluster id = the bandit's arm (0..K-1)",
    "difficulty": "d_i in [0, 1] (1 - reference solve rate, or a rescaled label); null when unknown",
    "difficulty_source": "measured (reference rollouts), predicted (kNN propagation) or label",
    "solve_rate": "reference model's solve rate over its k rollouts; null when not measured",
    "k": "reference rollouts drawn for this prompt; null when not measured",
    "distance": "distance of the prompt's feature vector to its cluster centroid",
    "selected": "true for the l representatives per cluster kept by the selection rule (the reduced pool)",
}
REQUIRED = ("prompt_id", "question", "answer", "cluster", "selected")
OUTPUTS = ("hf", "curation.parquet", "curation.jsonl", "README.md", "export.json")


class ExportError(ValueError):
    """A curation that cannot be exported or read back; the message names the column, id or file."""


def export_table(curation: pl.DataFrame, difficulty_source: str) -> pl.DataFrame:
    """The curation table (tasks/curate.py `curation_table`) reduced to the exported columns, in `COLUMNS` order.

    `difficulty_source` is the recipe's `curate.difficulty.source`: with `propagate` each row says whether its
    difficulty was measured or predicted (the table's `measured` column), with `rollouts` all are measured."""
    missing = [c for c in (*REQUIRED, "difficulty", "distance") if c not in curation.columns]
    if missing:
        raise ExportError(f"the curation table has no column {missing[0]!r} (columns: {curation.columns})")
    if difficulty_source == "propagate":
        if "measured" not in curation.columns:
            raise ExportError("difficulty source 'propagate' but the curation table has no column 'measured'")
        kind = pl.when(pl.col("measured")).then(pl.lit("measured")).otherwise(pl.lit("predicted"))
    else:
        kind = pl.lit({"rollouts": "measured", "label": "label"}.get(difficulty_source, difficulty_source))
    table = curation.with_columns(kind.alias("difficulty_source"))
    for name in COLUMNS:  # optional columns absent from a source stay null, with the right meaning
        if name not in table.columns:
            table = table.with_columns(pl.lit(None).alias(name))
    return table.select(*COLUMNS).sort("cluster", "prompt_id")


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a non-empty folder unless `force`; even with `force`, refuse one holding files an export does not
    write (so `--force` never deletes anything but a previous export)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    if not force:
        raise ExportError(f"--out {out} is not empty ({', '.join(present[:5])}); pass --force to overwrite an export")
    foreign = [name for name in present if name not in OUTPUTS]
    if foreign:
        raise ExportError(f"--out {out} holds files that are not an export's ({', '.join(foreign[:5])}); "
                          "--force only replaces a previous export: choose another folder")


def write_export(table: pl.DataFrame, out: Path, formats: Sequence[str], card: dict[str, Any],
                 force: bool = False) -> dict[str, str]:
    """Write `table` in each of `formats` plus README.md and export.json; returns {name: path}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format {unknown[0] if unknown else None!r}: choose from {FORMATS}")
    out = Path(out)
    check_out_dir(out, force)
    for name in OUTPUTS:  # a previous export (only reachable with force, see check_out_dir)
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    if "hf" in formats:
        from datasets import Dataset

        Dataset.from_polars(table).save_to_disk(str(out / "hf"))
        paths["hf"] = str(out / "hf")
    if "parquet" in formats:
        table.write_parquet(out / "curation.parquet")
        paths["parquet"] = str(out / "curation.parquet")
    if "jsonl" in formats:
        table.write_ndjson(out / "curation.jsonl")
        paths["jsonl"] = str(out / "curation.jsonl")
    facts = {**card, "rows": table.height, "selected": int(table["selected"].sum()), "formats": list(formats)}
    (out / "README.md").write_text(dataset_card(facts, table))
    paths["README.md"] = str(out / "README.md")
    (out / "export.json").write_text(json.dumps(facts, indent=2, default=str))  # last: the export is complete
    paths["export.json"] = str(out / "export.json")
    return paths


def dataset_card(facts: dict[str, Any], table: pl.DataFrame) -> str:
    """README.md of an export: how it was made (recipe, models, K, l, rule, code hash), metrics, columns, loading."""
    per_cluster = table.group_by("cluster").agg(pl.len().alias("size"), pl.col("selected").sum().alias("kept"),
                                                pl.col("difficulty").mean().alias("mean_difficulty")).sort("cluster")
    lines = [f"# SPaCe curation: recipe `{facts.get('recipe')}`", "",
             f"{table.height} prompts in {per_cluster.height} clusters; {int(table['selected'].sum())} selected "
             "(the reduced pool). Written by `space export`.", "", "## How it was made", "",
             "| fact | value |", "|---|---|"]
    for key in ("recipe", "recipe_fingerprint", "code_version", "embedder", "reference_model", "num_clusters",
                "per_cluster", "selection", "difficulty_source", "seed"):
        lines.append(f"| {key} | `{facts.get(key)}` |")
    metrics = facts.get("metrics") or {}
    if metrics:
        lines += ["", "## Curation metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())]
    lines += ["", "## Clusters", "", "| cluster | size | selected | mean difficulty |", "|---|---|---|---|"]
    for row in per_cluster.iter_rows(named=True):
        mean = "" if row["mean_difficulty"] is None else f"{row['mean_difficulty']:.3f}"
        lines.append(f"| {row['cluster']} | {row['size']} | {row['kept']} | {mean} |")
    lines += ["", "## Columns", "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in COLUMNS.items()]
    lines += ["", "## Loading", "", "```python", "import datasets, polars as pl",
              'pool = datasets.load_from_disk("hf")            # every prompt; filter on `selected` for the subset',
              'reduced = pl.read_parquet("curation.parquet").filter(pl.col("selected"))', "```", "",
              "Train on it with your own trainer: docs/integrations.md of the space repository.", ""]
    return "\n".join(lines)


def read_curation(source: Any) -> pl.DataFrame:
    """An exported curation as a polars frame: a folder written by `write_export` (parquet, else hf, else jsonl),
    one .parquet / .jsonl file, a `datasets.Dataset` or a polars frame. Raises ExportError naming a missing column
    or a duplicate prompt id."""
    if isinstance(source, pl.DataFrame):
        table, where = source, "the curation frame"
    elif isinstance(source, (str, Path)):
        table, where = _read_path(Path(source)), str(source)
    elif hasattr(source, "to_polars"):  # datasets.Dataset
        table, where = source.to_polars(), "the curation dataset"
    else:
        raise ExportError(f"cannot read a curation from {type(source).__name__}: give a folder, file, "
                          "datasets.Dataset or polars.DataFrame")
    for name in REQUIRED:
        if name not in table.columns:
            raise ExportError(f"{where} has no column {name!r} (columns: {table.columns}); "
                              "export it with `space export`")
    duplicated = table.filter(pl.col("prompt_id").is_duplicated())["prompt_id"]
    if duplicated.len():
        raise ExportError(f"{where}: prompt_id {duplicated[0]!r} appears more than once")
    return table.with_columns(pl.col("prompt_id").cast(pl.String), pl.col("cluster").cast(pl.Int64),
                              pl.col("selected").cast(pl.Boolean))


def _read_path(path: Path) -> pl.DataFrame:
    if path.is_dir():
        if (path / "curation.parquet").exists():
            return pl.read_parquet(path / "curation.parquet")
        if (path / "hf").is_dir():
            from datasets import load_from_disk

            return load_from_disk(str(path / "hf")).to_polars()
        if (path / "curation.jsonl").exists():
            return pl.read_ndjson(path / "curation.jsonl")
        raise ExportError(f"{path} holds no curation.parquet, hf/ or curation.jsonl: not a `space export` folder")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".jsonl":
        return pl.read_ndjson(path)
    raise ExportError(f"{path}: expected an export folder, a .parquet or a .jsonl file")
