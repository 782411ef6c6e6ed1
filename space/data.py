"""Data sources: every source yields one normalised polars table of prompts.

Columns: `prompt_id` (content hash of question and answer, stable across runs and machines),
`question`, `answer`, `source` (task or dataset name), `level` (nullable int: a ground-truth
difficulty label where the source has one) and `metadata` (JSON text: the source's own per-item data,
e.g. the reasoning-gym entry its scorer needs).

Sources:
- `builtin`: short-answer reasoning-gym tasks at several levels (space/builtin_tasks.py); pool, eval
  and SFT splits come from disjoint seed streams and question-hash buckets, checked disjoint by text.
- `hf`: a Hugging Face `datasets` hub name (for users with a hub) or local jsonl/json/parquet/csv
  files, with a column mapping (GSM8K's `#### 42` answers are understood) and split selection.

Exact duplicates (same prompt_id) are dropped and counted. Bad rows (missing or empty question or
answer, wrong types) are counted with their row number and field, and either skipped or rejected as
the recipe says; never silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA = {
    "prompt_id": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "source": pl.String,
    "level": pl.Int64,
    "metadata": pl.String,
}
Split = Literal["pool", "eval", "sft"]
_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataConfig(BaseModel):
    """Where the prompts come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["builtin", "hf"] = Field("builtin", description="builtin reasoning-gym mix, or a datasets source")
    pool_size: int = Field(2000, gt=0, description="builtin: prompts in the training pool")
    eval_size: int = Field(400, gt=0, description="builtin: held-out evaluation prompts")
    sft_size: int = Field(12000, gt=0, description="builtin: items in the SFT split the tiny model trains on")
    seed: int = Field(
        0, description="builtin: base seed; splits use disjoint streams derived from it. Independent of the recipe "
        "seed on purpose: runs with different seeds share the data (and the curation cache)"
    )
    builtin_question: Literal["compact", "original"] = Field(
        "compact", description="builtin: short questions (tiny model) or reasoning-gym's own wording (instruct LMs)"
    )
    path: str | None = Field(None, description="hf: hub dataset name, or a local file/directory")
    eval_path: str | None = Field(None, description="hf: a separate local file or directory for evaluation")
    name: str | None = Field(None, description="hf: dataset configuration name (e.g. 'main' for gsm8k)")
    split: str = Field("train", description="hf: split used as the training pool")
    eval_split: str | None = Field("test", description="hf: split used for evaluation (None: no eval set)")
    question_column: str = Field("question", description="hf: column holding the prompt text")
    answer_column: str = Field("answer", description="hf: column holding the gold answer")
    level_column: str | None = Field(None, description="hf: optional difficulty label column (int)")
    answer_format: Literal["plain", "gsm8k"] = Field("plain", description="gsm8k: keep what follows '####'")
    source_name: str | None = Field(None, description="hf: value of the `source` column (default: path)")
    limit: int | None = Field(None, gt=0, description="hf: keep at most this many rows per split")
    bad_rows: Literal["skip", "reject"] = Field("skip", description="skip bad rows with a report, or fail")

    @model_validator(mode="after")
    def _hf_needs_path(self) -> DataConfig:
        if self.source == "hf" and not self.path:
            raise ValueError("data.path is required when data.source is 'hf'")
        return self


@dataclass
class LoadReport:
    """What loading did to the raw rows: nothing dropped goes unreported."""

    raw_rows: int = 0
    kept_rows: int = 0
    duplicates: int = 0
    overlap_removed: int = 0
    bad_rows: list[dict[str, Any]] = field(default_factory=list)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/raw_rows": self.raw_rows,
            f"{prefix}/kept_rows": self.kept_rows,
            f"{prefix}/duplicates": self.duplicates,
            f"{prefix}/overlap_removed": self.overlap_removed,
            f"{prefix}/bad_rows": len(self.bad_rows),
        }


class BadRowsError(ValueError):
    """Raised when `bad_rows: reject` meets a bad row; the message names the row and the field."""


def make_prompt_id(question: str, answer: str) -> str:
    """A stable 16-hex-digit id from the prompt's content."""
    digest = hashlib.sha256(f"{question}\x1f{answer}".encode()).hexdigest()
    return digest[:16]


def _check_row(
    raw: dict[str, Any], row: int, cfg: DataConfig, metadata_key: str | None
) -> tuple[dict[str, Any] | None, dict | None]:
    """A normalised row, or the reason it is bad (row number, field, problem)."""
    q_key, a_key = cfg.question_column, cfg.answer_column
    for key in (q_key, a_key):
        if key not in raw:
            return None, {"row": row, "field": key, "problem": "missing"}
    question, answer = raw[q_key], raw[a_key]
    if not isinstance(question, str):
        return None, {"row": row, "field": q_key, "problem": f"expected text, got {type(question).__name__}"}
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        return None, {"row": row, "field": a_key, "problem": f"expected text or number, got {type(answer).__name__}"}
    answer = str(answer).split("####")[-1].strip() if cfg.answer_format == "gsm8k" else str(answer).strip()
    if not question.strip():
        return None, {"row": row, "field": q_key, "problem": "empty"}
    if not answer:
        return None, {"row": row, "field": a_key, "problem": "empty"}
    level = raw.get(cfg.level_column) if cfg.level_column else None
    if level is not None and not isinstance(level, int):
        return None, {"row": row, "field": cfg.level_column, "problem": f"expected int, got {type(level).__name__}"}
    meta = raw[metadata_key] if metadata_key else {k: v for k, v in raw.items() if k not in (q_key, a_key)}
    return {"question": question.strip(), "answer": answer, "level": level, "metadata": meta}, None


def normalize_rows(
    rows: list[dict[str, Any]], cfg: DataConfig, source: str, metadata_key: str | None = None
) -> tuple[pl.DataFrame, LoadReport]:
    """Validate, normalise and de-duplicate raw rows into the common schema.

    Metadata is every column but question and answer, or the dict under `metadata_key` when given."""
    report = LoadReport(raw_rows=len(rows))
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for row, raw in enumerate(rows):
        clean, bad = _check_row(raw, row, cfg, metadata_key)
        if bad is not None:
            if cfg.bad_rows == "reject":
                raise BadRowsError(f"{source}: row {bad['row']}, field {bad['field']!r}: {bad['problem']}")
            report.bad_rows.append(bad)
            continue
        pid = make_prompt_id(clean["question"], clean["answer"])
        if pid in seen:
            report.duplicates += 1
            continue
        seen.add(pid)
        out.append({"prompt_id": pid, "source": raw.get("source", source), **clean,
                    "metadata": json.dumps(clean["metadata"], default=_jsonable, sort_keys=True)})
    report.kept_rows = len(out)
    return pl.DataFrame(out, schema=SCHEMA), report


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ---------------------------------------------------------------------------------------------
# builtin


def _builtin_raw(split: Split, size: int, seed: int) -> list[dict[str, Any]]:
    from space.builtin_tasks import generate_items

    return generate_items(split, size, seed)


def _builtin_rows_to_table(items: list[dict[str, Any]], cfg: DataConfig) -> tuple[pl.DataFrame, LoadReport]:
    from space.builtin_tasks import ORIGINAL_QUESTION_KEY

    original = cfg.builtin_question == "original"
    rows = [{"question": item["metadata"][ORIGINAL_QUESTION_KEY] if original else item["question"],
             "answer": str(item["answer"]), "source": item["source"], "level": item["level"],
             "metadata": item["metadata"]} for item in items]
    mapped = cfg.model_copy(update={"question_column": "question", "answer_column": "answer", "level_column": "level"})
    return normalize_rows(rows, mapped, "builtin", metadata_key="metadata")


def load_builtin(cfg: DataConfig, split: Split) -> tuple[pl.DataFrame, LoadReport]:
    """A builtin split. Splits are disjoint by construction (each question hashes to one split's buckets);
    this checks it by question text against the splits before it (pool, then sft, then eval) and
    removes and counts any overlap rather than trusting the construction."""
    sizes = {"pool": cfg.pool_size, "sft": cfg.sft_size, "eval": cfg.eval_size}
    order: list[Split] = ["pool", "sft", "eval"]
    earlier: set[str] = set()
    for name in order[: order.index(split)]:
        earlier.update(_builtin_rows_to_table(_builtin_raw(name, sizes[name], cfg.seed), cfg)[0]["question"])
    table, report = _builtin_rows_to_table(_builtin_raw(split, sizes[split], cfg.seed), cfg)
    fresh = table.filter(~pl.col("question").is_in(list(earlier)))
    report.overlap_removed = table.height - fresh.height
    report.kept_rows = fresh.height
    return fresh, report


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets (hub or local files)


def _local_files(path: Path, split: str) -> list[Path]:
    """A file as given, or the files of a directory whose names start with the split (train.jsonl, ...)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in _LOCAL_BUILDERS and p.stem.startswith(split))
    if not files:
        raise FileNotFoundError(f"data.path {str(path)!r}: no {split}*.jsonl/.json/.parquet/.csv files found")
    return files


def _read_hf_split(cfg: DataConfig, location: str, split: str) -> list[dict[str, Any]]:
    import datasets

    path = Path(location).expanduser()
    if path.exists():
        files = _local_files(path, split)
        builder = _LOCAL_BUILDERS.get(files[0].suffix)
        if builder is None:
            raise ValueError(f"data path {location!r}: unsupported file type {files[0].suffix!r}")
        ds = datasets.load_dataset(builder, data_files={"rows": [str(f) for f in files]}, split="rows")
    else:
        ds = datasets.load_dataset(location, cfg.name, split=split)
    if cfg.limit is not None:
        ds = ds.select(range(min(cfg.limit, len(ds))))
    return ds.to_list()


def load_hf(cfg: DataConfig, split: Split) -> tuple[pl.DataFrame, LoadReport]:
    """The recipe's hf split: `split` for the pool, `eval_split` for eval (no SFT split for hf sources)."""
    if split == "sft":
        raise ValueError("hf data sources have no SFT split; SFT is only for the builtin tiny model")
    name = cfg.split if split == "pool" else cfg.eval_split
    if name is None:
        raise ValueError("data.eval_split is None, so this recipe has no evaluation set")
    location = cfg.eval_path if split == "eval" and cfg.eval_path else cfg.path
    if split == "eval" and Path(location).expanduser().is_file():
        raise ValueError("data.path is a single file (the pool); give the evaluation file as data.eval_path")
    return normalize_rows(_read_hf_split(cfg, location, name), cfg, cfg.source_name or str(cfg.path))


def load_split(cfg: DataConfig, split: Split) -> tuple[pl.DataFrame, LoadReport]:
    """Load one split of the configured source as a normalised table plus its load report."""
    loader = {"builtin": load_builtin, "hf": load_hf}[cfg.source]
    return loader(cfg, split)
