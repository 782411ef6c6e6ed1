"""Reading local prompt files row by row, so every problem is reported with its file and line.

`datasets`' JSON loader stops at the first broken line with "Expected object or value at position 38" and
no file or line, so space reads local files itself: JSONL line by line (invalid UTF-8, invalid JSON and
non-object lines become bad rows naming `file line N`), JSON arrays, CSV and parquet through polars.
Each reader returns `(location, row or None, problem or None)` triples; `space.data.sources` validates the rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
Item = tuple[str, dict[str, Any] | None, str | None]


class DataFileError(ValueError):
    """A local data file that cannot be read at all; the message names the file (and line, if known)."""


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"invalid UTF-8 (byte {err.start} of the line)"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err.msg} (column {err.colno})"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def read_jsonl(path: Path) -> Iterator[Item]:
    """One item per non-blank line: the object, or why the line is not one."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if raw.strip():
                row, problem = _parse_line(raw)
                yield f"{path} line {number}", row, problem


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path} line {_line_of(data, err.start)}: invalid UTF-8 (byte {err.start})") from None


def read_json(path: Path) -> Iterator[Item]:
    """A JSON array of objects, or JSON lines under a .json name."""
    if not path.read_bytes().lstrip().startswith(b"["):
        yield from read_jsonl(path)
        return
    try:
        rows = json.loads(_decode(path))
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path} line {err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    for index, row in enumerate(rows):
        problem = None if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"
        yield f"{path} item {index}", row if problem is None else None, problem


def _csv_records(path: Path) -> tuple[str, list[int], list[tuple[int, Item]]]:
    """The CSV re-written without its ragged records, the first line of each kept record, and one bad item per
    record with more or fewer fields than the header (polars would refuse the whole file, naming no line)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header = next(reader, None)
    out, kept_lines, ragged = io.StringIO(), [], []
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    start = reader.line_num + 1
    for record in reader:
        if record and len(record) != len(header):
            fields = f"{len(record)} field" + ("s" if len(record) != 1 else "")
            ragged.append((start, (f"{path} line {start}", None, f"{fields} where the header has {len(header)}")))
        elif record:
            writer.writerow(record)
            kept_lines.append(start)
        start = reader.line_num + 1
    return out.getvalue(), kept_lines, ragged


def read_table(path: Path) -> Iterator[Item]:
    """CSV (row locations are file lines; a record with more or fewer fields than the header is a bad row) or
    parquet (row indices) through polars."""
    import io

    import polars as pl

    lines: list[int] = []
    ragged: list[tuple[int, Item]] = []
    try:
        if path.suffix == ".csv":
            text, lines, ragged = _csv_records(path)
            table = pl.read_csv(io.StringIO(text), infer_schema_length=None)
        else:
            table = pl.read_parquet(path)
    except DataFileError:
        raise
    except Exception as err:  # polars' own errors: re-raised naming the file
        raise DataFileError(f"{path}: cannot be read as {path.suffix[1:]}: {str(err).splitlines()[0]}") from err
    if path.suffix != ".csv":
        yield from ((f"{path} row {index}", row, None) for index, row in enumerate(table.iter_rows(named=True)))
        return
    good = [(line, (f"{path} line {line}", row, None)) for line, row in zip(lines, table.iter_rows(named=True))]
    yield from (item for _, item in sorted([*good, *ragged], key=lambda pair: pair[0]))


def read_file(path: Path) -> Iterator[Item]:
    """Dispatch on the suffix; an unsupported suffix names the file and the supported ones."""
    readers = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_table, ".parquet": read_table}
    if path.suffix not in readers:
        raise DataFileError(f"{path}: unsupported file type {path.suffix!r} (supported: {', '.join(SUFFIXES)})")
    yield from readers[path.suffix](path)


def local_files(path: Path, split: str) -> list[Path]:
    """A file as given, or the files of a directory whose names start with the split (train.jsonl, ...)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.stem.startswith(split))
    if not files:
        raise FileNotFoundError(f"data path {str(path)!r}: no {split}*.jsonl/.json/.parquet/.csv files found")
    return files
