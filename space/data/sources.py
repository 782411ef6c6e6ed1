"""Data sources: every source yields one normalised polars table of prompts.

Columns: `prompt_id` (content hash of question and answer, stable across runs and machines),
`question`, `answer`, `source` (task or dataset name), `level` (nullable int: a ground-truth
difficulty label where the source has one) and `metadata` (JSON text: the source's own per-item data,
e.g. the reasoning-gym entry its scorer needs).

Sources:
- `builtin`: short-answer reasoning-gym tasks at several levels (space/data/builtin_tasks.py); pool, eval
  and SFT splits come from disjoint seed streams and question-hash buckets, checked disjoint by text.
- `hf`: a Hugging Face `datasets` hub name (for users with a hub) or local jsonl/json/parquet/csv
  files, with a column mapping (GSM8K's `#### 42` answers are understood) and split selection.

Exact duplicates (same prompt_id) are dropped and counted. Bad rows (missing or empty question or
answer, wrong types, a level outside int64, one question with conflicting answers: space/data/rows.py) are
counted with their row number and field, and either skipped or rejected as the recipe says; never silently.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from space.data.rows import (  # noqa: F401  (BadRowsError, DataError, LoadReport: re-exported for callers)
    BadRowsError, DataError, LoadReport, drop_conflicting_labels, field_problem, reject_or_record,
    remove_eval_overlap,
)
from space.seeding import derive_rng

SCHEMA = {
    "prompt_id": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "source": pl.String,
    "level": pl.Int64,
    "metadata": pl.String,
}
Split = Literal["pool", "eval", "sft"]
INT64 = (-(2**63), 2**63 - 1)  # the range of the `level` column


class DataConfig(BaseModel):
    """Where the prompts come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["builtin", "hf"] = Field("builtin", description="builtin reasoning-gym mix, or a datasets source")
    pool_size: int = Field(2000, gt=0, description="builtin: prompts in the training pool")
    eval_size: int = Field(400, gt=0, description="builtin: held-out evaluation prompts")
    sft_size: int = Field(12000, gt=0, description="builtin: items in the SFT split the tiny model trains on")
    seed: int = Field(
        0, ge=0, description="builtin: base seed; splits use disjoint streams derived from it. Independent of the recipe "
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
    eval_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="hf: hold out this seeded fraction of the pool as the eval set"
    )
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
        if self.eval_fraction is not None and (self.source != "hf" or self.eval_path):
            raise ValueError("data.eval_fraction holds out part of an hf pool; it cannot be combined with "
                             "data.eval_path or the builtin source (which has its own eval split)")
        return self

    def has_eval(self) -> bool:
        """Whether the recipe has a held-out eval set (a single pool file alone has none)."""
        if self.source == "builtin" or self.eval_fraction is not None or self.eval_path:
            return True
        path = Path(self.path or "").expanduser()
        return self.eval_split is not None and not path.is_file()


def make_prompt_id(question: str, answer: str) -> str:
    """A stable 16-hex-digit id from the prompt's content."""
    digest = hashlib.sha256(f"{question}\x1f{answer}".encode()).hexdigest()
    return digest[:16]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_level(level: Any) -> tuple[int | None, str | None]:
    """A level label as int: integral floats (parquet/CSV columns with gaps) pass, NaN, bools and text fail."""
    if level is None:
        return None, None
    if isinstance(level, bool) or not isinstance(level, int | float):
        return None, f"expected int, got {type(level).__name__} {level!r}"
    if isinstance(level, float) and not level.is_integer():
        return None, f"expected int, got {level!r}"
    if not INT64[0] <= level <= INT64[1]:
        return None, f"{level!r} is outside the int64 range of levels"
    return int(level), None


def _check_row(
    raw: dict[str, Any], row: int, cfg: DataConfig, metadata_key: str | None
) -> tuple[dict[str, Any] | None, dict | None]:
    """A normalised row, or the reason it is bad (row number, field, problem)."""
    q_key, a_key = cfg.question_column, cfg.answer_column
    for key in (q_key, a_key):
        if key not in raw or _is_missing(raw[key]):
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
    level, problem = _check_level(raw.get(cfg.level_column) if cfg.level_column else None)
    if problem is not None:
        return None, {"row": row, "field": cfg.level_column, "problem": problem}
    meta = raw[metadata_key] if metadata_key else {k: v for k, v in raw.items() if k not in (q_key, a_key)}
    return {"question": question.strip(), "answer": answer, "level": level, "metadata": meta}, None


def normalize_rows(
    rows: list[dict[str, Any] | None], cfg: DataConfig, source: str, metadata_key: str | None = None,
    locations: list[str] | None = None, problems: list[str | None] | None = None,
) -> tuple[pl.DataFrame, LoadReport]:
    """Validate, normalise and de-duplicate raw rows into the common schema.

    Metadata is every column but question and answer, or the dict under `metadata_key` when given.
    `locations` (e.g. `train.jsonl line 7`) name the rows in reports; `problems` mark rows that could not
    even be parsed (invalid JSON or UTF-8), which count as bad rows."""
    report = LoadReport(raw_rows=len(rows))
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    kept_at: list[tuple[int, str]] = []  # (row, location) of each kept row, for conflict reports
    for row, raw in enumerate(rows):
        problem = problems[row] if problems else None
        clean, bad = (None, {"row": row, "field": None, "problem": problem}) if problem else \
            _check_row(raw, row, cfg, metadata_key)
        if bad is not None:
            if locations:
                bad["where"] = locations[row]
            reject_or_record(bad, report, cfg.bad_rows, source)
            continue
        pid = make_prompt_id(clean["question"], clean["answer"])
        if pid in seen:
            report.duplicates += 1
            continue
        seen.add(pid)
        kept_at.append((row, locations[row] if locations else f"{source} row {row}"))
        out.append({"prompt_id": pid, "source": raw.get("source", source), **clean,
                    "metadata": json.dumps(clean["metadata"], default=_jsonable, sort_keys=True)})
    out = drop_conflicting_labels(out, kept_at, report, cfg.answer_column, cfg.bad_rows, source)
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
    from space.data.builtin_tasks import generate_items

    return generate_items(split, size, seed)


def _builtin_rows_to_table(items: list[dict[str, Any]], cfg: DataConfig) -> tuple[pl.DataFrame, LoadReport]:
    from space.data.builtin_tasks import ORIGINAL_QUESTION_KEY

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


def _read_local(cfg: DataConfig, path: Path, split: str) -> tuple[list, list[str], list[str | None]]:
    """Rows, their locations (file and line) and parse problems, read by space itself (see datafiles)."""
    from space.data.files import local_files, read_file

    rows, where, problems = [], [], []
    for file in local_files(path, split):
        for location, row, problem in read_file(file):
            if cfg.limit is not None and len(rows) >= cfg.limit:
                break
            rows.append(row)
            where.append(location)
            problems.append(problem)
    return rows, where, problems


def _read_hf_split(cfg: DataConfig, location: str, split: str) -> tuple[pl.DataFrame, LoadReport]:
    """Local files (read line by line) or a hub dataset, validated into the common schema."""
    path = Path(location).expanduser()
    source = cfg.source_name or str(cfg.path)
    if not path.exists() and looks_local(location):
        raise FileNotFoundError(f"data file or directory {location!r} does not exist")
    if path.exists():
        rows, where, problems = _read_local(cfg, path, split)
        table, report = normalize_rows(rows, cfg, source, locations=where, problems=problems)
    else:
        import datasets

        ds = datasets.load_dataset(location, cfg.name, split=split)
        if cfg.limit is not None:
            ds = ds.select(range(min(cfg.limit, len(ds))))
        rows = ds.to_list()
        where = [f"{location} [{split}] row {i}" for i in range(len(rows))]
        table, report = normalize_rows(rows, cfg, source, locations=where)
    if table.height == 0:
        shown = "; ".join(f"{b.get('where')}: {field_problem(b)}" for b in report.bad_rows[:3])
        raise DataError(f"{location}: no usable rows ({report.raw_rows} read, {len(report.bad_rows)} bad"
                        + (f", e.g. {shown}" if shown else "") + ")")
    return table, report


def looks_local(location: str) -> bool:
    """A path, not a hub name: absolute, relative with ./ or ../, under ~, or ending in a data suffix."""
    from space.data.files import SUFFIXES

    return location.startswith(("/", "./", "../", "~")) or location.endswith(SUFFIXES)


def hold_out(table: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pool, eval): a seeded random `fraction` of the rows (at least one, at most all but one) held out."""
    if table.height < 2:
        raise DataError(f"data.eval_fraction needs at least 2 usable rows to hold some out, got {table.height}")
    n_eval = min(max(1, round(fraction * table.height)), table.height - 1)
    order = derive_rng(seed, "eval-holdout").permutation(table.height)
    mask = np.zeros(table.height, dtype=bool)
    mask[order[:n_eval]] = True
    return table.filter(~pl.Series(mask)), table.filter(pl.Series(mask))


def load_hf(cfg: DataConfig, split: Split) -> tuple[pl.DataFrame, LoadReport] | None:
    """The pool (`split`), and the eval set: `eval_path` (a file or a directory's `eval_split` files), a
    seeded `eval_fraction` of the pool, or `path`'s `eval_split`; None when the recipe has no eval set."""
    if split == "sft":
        raise ValueError("hf data sources have no SFT split; SFT is only for the builtin tiny model")
    if cfg.eval_fraction is not None:
        table, report = _read_hf_split(cfg, cfg.path, cfg.split)
        if table.height < 2:
            raise DataError(f"data.eval_fraction needs at least 2 usable rows to hold some out, got {table.height}: "
                            + report.summary(str(cfg.path)))
        pool, held = hold_out(table, cfg.eval_fraction, cfg.seed)
        chosen, other = (pool, held) if split == "pool" else (held, pool)
        report.kept_rows, report.held_out = chosen.height, other.height
        return chosen, report
    if split == "pool":
        return _read_hf_split(cfg, cfg.path, cfg.split)
    if not cfg.has_eval():
        return None
    return _read_hf_split(cfg, cfg.eval_path or cfg.path, cfg.eval_split or "")


def _eval_for_overlap(cfg: DataConfig) -> pl.DataFrame | None:
    if cfg.source == "builtin":  # the eval split's own candidates, before its own overlap filtering
        return _builtin_rows_to_table(_builtin_raw("eval", cfg.eval_size, cfg.seed), cfg)[0]
    loaded = load_hf(cfg, "eval")
    return loaded[0] if loaded is not None else None


def load_split(cfg: DataConfig, split: Split) -> tuple[pl.DataFrame, LoadReport] | None:
    """Load one split of the configured source as a normalised table plus its load report (None: the
    recipe has no eval set). The pool never shares a question with the eval set: overlap is removed."""
    loaded = {"builtin": load_builtin, "hf": load_hf}[cfg.source](cfg, split)
    if split != "pool" or loaded is None:
        return loaded
    table, report = loaded
    held_out = _eval_for_overlap(cfg)
    if held_out is not None and cfg.source == "builtin":  # exact copies are dropped by the eval split itself
        held_out = held_out.filter(~pl.col("question").is_in(table["question"].to_list()))
    if held_out is None:
        return table, report
    kept = remove_eval_overlap(table, held_out, report)
    if kept.height == 0:
        where = cfg.eval_path or (f"{cfg.path} [{cfg.eval_split}]" if cfg.source == "hf" else "the builtin eval split")
        raise DataError(f"all {table.height} pool rows also appear in the eval set ({where}), exactly or after "
                        f"whitespace and case folding: the pool is empty. Point data.eval_path at held-out rows")
    return kept, report
