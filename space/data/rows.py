"""Row bookkeeping shared by the data sources: the load report, bad-row errors, and the checks that look at
the kept rows together (conflicting labels, overlap with the eval set).

Both checks compare questions after whitespace and case folding (`normal_text`): a pool question that
matches an eval question so is removed as overlap, and one question that carries two answers so is a
conflicting-label group, skipped or refused as `data.bad_rows` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl


@dataclass
class LoadReport:
    """What loading did to the raw rows: nothing dropped goes unreported."""

    raw_rows: int = 0
    kept_rows: int = 0
    duplicates: int = 0
    overlap_removed: int = 0
    held_out: int = 0
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    overlap: list[dict[str, Any]] = field(default_factory=list)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/raw_rows": self.raw_rows,
            f"{prefix}/kept_rows": self.kept_rows,
            f"{prefix}/duplicates": self.duplicates,
            f"{prefix}/overlap_removed": self.overlap_removed,
            f"{prefix}/bad_rows": len(self.bad_rows),
        }

    def summary(self, name: str) -> str:
        """One console paragraph: rows read, kept and skipped, with the reasons and the first culprits."""
        text = (f"{name}: read {self.raw_rows} rows, kept {self.kept_rows}; skipped {len(self.bad_rows)} bad, "
                f"{self.duplicates} duplicate, {self.overlap_removed} also in the eval set"
                + (f", {self.held_out} in the other split of data.eval_fraction" if self.held_out else ""))
        shown = [f"{b.get('where', 'row ' + str(b['row']))}: {field_problem(b)}"
                 for b in self.bad_rows[:3]]
        return text + (f" (e.g. {'; '.join(shown)})" if shown else "")


def field_problem(bad: dict[str, Any]) -> str:
    """`answer missing`, or the problem alone for a line that could not be parsed at all."""
    return f"{bad['field']} {bad['problem']}" if bad["field"] else bad["problem"]


class DataError(ValueError):
    """Data that cannot be used; the message names the file, row and field."""


class BadRowsError(DataError):
    """Raised when `bad_rows: reject` meets a bad row; the message names the row and the field."""


def reject_or_record(bad: dict[str, Any], report: LoadReport, bad_rows: str, source: str) -> None:
    """Record a bad row in the report (`skip`), or refuse the load naming it (`reject`)."""
    if bad_rows == "reject":
        where = bad.get("where", f"{source}: row {bad['row']}")
        field_name = f"field {bad['field']!r}: " if bad["field"] else ""
        raise BadRowsError(f"{where}, {field_name}{bad['problem']} (data.bad_rows=reject)")
    report.bad_rows.append(bad)


def normal_text(text: str) -> str:
    """Whitespace collapsed and case folded: what the overlap and conflict checks compare."""
    return " ".join(text.split()).casefold()


def drop_conflicting_labels(out: list[dict[str, Any]], kept_at: list[tuple[int, str]], report: LoadReport,
                            answer_column: str, bad_rows: str, source: str) -> list[dict[str, Any]]:
    """Rows whose question (after the whitespace and case folding of the overlap check) recurs with another
    answer (after the same folding) are a bad row group: every row of it is skipped, or the load is refused
    (`data.bad_rows`), naming the lines. Trained on, they would reward two contradictory answers.
    `kept_at` holds each kept row's (raw row number, location)."""
    answers: dict[str, dict[str, list[int]]] = {}
    for index, row in enumerate(out):
        answers.setdefault(normal_text(row["question"]), {}).setdefault(normal_text(row["answer"]), []).append(index)
    dropped: set[int] = set()
    for by_answer in answers.values():
        if len(by_answer) < 2:
            continue
        members = sorted(i for rows in by_answer.values() for i in rows)
        listed = ", ".join(f"{out[i]['answer']!r} at {kept_at[i][1]}" for i in members[:6])
        problem = (f"conflicts with another row: the same question {out[members[0]]['question'][:60]!r} has "
                   f"{len(by_answer)} different answers ({listed})")
        for i in members:
            bad = {"row": kept_at[i][0], "where": kept_at[i][1], "field": answer_column, "problem": problem}
            reject_or_record(bad, report, bad_rows, source)
        dropped.update(members)
    return [row for index, row in enumerate(out) if index not in dropped]


def remove_eval_overlap(pool: pl.DataFrame, eval_table: pl.DataFrame, report: LoadReport) -> pl.DataFrame:
    """Drop pool rows whose question is also an eval question, exactly or after whitespace/case
    normalisation; count them and record the first few in the report."""
    exact = set(eval_table["question"].to_list())
    normal = {normal_text(q) for q in exact}
    keep = []
    for pid, question in zip(pool["prompt_id"], pool["question"], strict=True):
        kind = "exact" if question in exact else "normalised" if normal_text(question) in normal else None
        keep.append(kind is None)
        if kind is not None and len(report.overlap) < 50:
            report.overlap.append({"prompt_id": pid, "match": kind, "question": question[:80]})
    kept = pool.filter(pl.Series(keep, dtype=pl.Boolean))
    report.overlap_removed += pool.height - kept.height
    report.kept_rows = kept.height
    return kept
