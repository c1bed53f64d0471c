"""Reading, validating and writing input sets.

Formats, chosen by the path: `.jsonl` (one JSON object per line), `.json` (a list of objects),
`.parquet`, `.csv` (header row; `paraphrases` as a JSON list string) and a `datasets.save_to_disk`
folder (a `Dataset`, or a `DatasetDict` whose split names fill in `split`). Each row becomes a
`Record` through `mixsd.data.parse` (prompt/reference, chat, Alpaca or TRL form; the `id` may be
missing, as in the files the paper's data builder writes: `check` then derives it from the
content).

`check` reports every problem with the file, the line (text formats) or row / record number
(counted from 1), and the field, plus notes (ids derived, fields ignored); `load_records` refuses a
file with any problem and prints the notes to stderr.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixsd.data.parse import IGNORED_FIELDS, parse_record, row_id
from mixsd.data.records import Record
from mixsd.errors import MixsdError
from mixsd.io import write_atomic
from mixsd.io import write_atomic as write_text_atomic  # noqa: F401 (kgfact, kgfunc import it here)

FORMATS = ".jsonl, .json, .parquet, .csv or a datasets save_to_disk folder"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file. `line` counts from 1; `unit` says what it counts."""

    file: str
    line: int | None
    field: str | None
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" if self.unit == "line" else f": {self.unit} {self.line}"
        what = f"field '{self.field}': {self.message}" if self.field else self.message
        return f"{where}: {what}"


def validate(path: str | Path) -> list[Problem]:
    """Every problem in the input set at `path` (empty when it is valid)."""
    return check(path)[1]


def load_records(path: str | Path, need_reference: bool = True) -> list[Record]:
    """The records at `path`; raises MixsdError naming the first problem when there is any.
    The notes (ids derived, fields ignored) go to stderr, one line each. `need_reference=False`
    (an answer is all the caller needs): see `parse_record`."""
    records, problems, notes = check(path, need_reference)
    if problems:
        more = len(problems) - 1
        hint = f" (and {more} more: 'mixsd data validate {path}' lists them)" if more else ""
        raise MixsdError(f"{problems[0]}{hint}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return records


def check(
    path: str | Path, need_reference: bool = True
) -> tuple[list[Record], list[Problem], list[str]]:
    """The valid records at `path`, the problems found reading and checking them, and notes on
    what was done to records that load (ids derived from content, fields ignored)."""
    path = Path(path)
    name = str(path)
    problems: list[Problem] = []
    records: list[Record] = []
    first_seen: dict[str, str] = {}  # id -> where it was first
    repeats: dict[str, int] = {}  # derived id -> records with that content so far
    ignored: dict[str, int] = {}
    rows = 0
    for line, unit, raw in _raw_rows(path, problems):
        rows += 1
        if isinstance(raw, Problem):
            problems.append(raw)
            continue
        record, errors = parse_record(raw, need_reference)
        problems += [Problem(name, line, f, m, unit) for f, m in errors]
        for f in set(raw) & set(IGNORED_FIELDS) if isinstance(raw, dict) else ():
            ignored[f] = ignored.get(f, 0) + 1
        ident = row_id(raw)
        if record is not None and raw.get("id") is None:
            # Same content, same id; the k-th repeat of a content gets "-k" (file order).
            k = repeats[record.id] = repeats.get(record.id, -1) + 1
            record = replace(record, id=f"{record.id}-{k}") if k else record
            ident = record.id
        if ident in first_seen:
            msg = f"duplicate id '{ident}' (first at {first_seen[ident]})"
            problems.append(Problem(name, line, "id", msg, unit))
        elif ident is not None:
            first_seen[ident] = f"line {line}" if unit == "line" else f"{unit} {line}"
            if record is not None:
                records.append(record)
    if rows == 0 and not problems:
        problems.append(Problem(name, None, None, "empty file: no records"))
    # Bad UTF-8 is found before parsing: put every problem back in file order.
    problems.sort(key=lambda p: (p.line is not None, p.unit, p.line or 0))
    notes = []
    if repeats:
        n, dup = sum(repeats.values()) + len(repeats), sum(repeats.values())
        again = f"; {dup} repeat{'s' * (dup != 1)} of a content get -1, -2, ..." if dup else ""
        notes.append(
            f"{name}: {n} record{'s' * (n != 1)} without an id: derived from the "
            f"content (h + 16 hex digits{again})"
        )
    if ignored:
        fields = ", ".join(f"{f} ({c} record{'s' * (c != 1)})" for f, c in sorted(ignored.items()))
        notes.append(f"{name}: ignored fields that mean nothing to mixsd: {fields}")
    return records, problems, notes


def _raw_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    """(number, unit, raw dict or Problem) for each row; whole-file problems go to `problems`."""
    name = str(path)
    suffix = path.suffix.lower()
    if not path.exists():
        problems.append(Problem(name, None, None, "not found"))
    elif path.is_dir():
        yield from _dataset_rows(path, problems)
    elif suffix in (".jsonl", ".ndjson"):
        for n, text in _lines(path, problems):
            if text is not None and text.strip():
                try:
                    yield n, "line", json.loads(text)
                except json.JSONDecodeError as e:
                    msg = f"malformed JSON: {e.msg} (column {e.colno})"
                    yield n, "line", Problem(name, n, None, msg)
    elif suffix == ".json":
        yield from _json_rows(path, problems)
    elif suffix in (".parquet", ".pq"):
        yield from _parquet_rows(path, problems)
    elif suffix == ".csv":
        yield from _csv_rows(path, problems)
    else:
        problems.append(Problem(name, None, None, f"unknown format (expected {FORMATS})"))


def _lines(path: Path, problems: list[Problem]) -> list[tuple[int, str | None]]:
    """(line number, text) per line, decoded one line at a time so that bad UTF-8 names its line
    (reported in `problems`, text None)."""
    out: list[tuple[int, str | None]] = []
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)  # as some Windows tools write
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            out.append((n, raw.decode("utf-8").removesuffix("\r")))
        except UnicodeDecodeError as e:
            msg = f"invalid UTF-8 (byte {e.start + 1} of the line)"
            problems.append(Problem(str(path), n, None, msg))
            out.append((n, None))
    return out


def _json_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    lines = [t for _, t in _lines(path, problems)]
    text = "" if None in lines else "\n".join(lines)  # bad UTF-8 is already reported
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(Problem(str(path), e.lineno, None, f"malformed JSON: {e.msg}"))
        return
    if not isinstance(data, list):
        msg = "expected a JSON list of records (use .jsonl for one record per line)"
        problems.append(Problem(str(path), None, None, msg))
        return
    for i, raw in enumerate(data, start=1):
        yield i, "record", raw


def _csv_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    # A row with bad UTF-8 is already reported; read on with an empty line so later rows keep
    # their line numbers.
    lines = [t or "" for _, t in _lines(path, problems)]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    start = 2  # the header is line 1
    for row in reader:
        raw: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v != ""}
        if "paraphrases" in raw:
            raw["paraphrases"] = _json_cell(raw["paraphrases"])
        if None in row:
            raw[None] = row[None]  # more cells than header columns
        yield start, "line", raw
        start = reader.line_num + 1


def _json_cell(text: str) -> Any:
    """A CSV cell holding JSON (the paraphrases list); the text itself when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parquet_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        problems.append(Problem(str(path), None, None, f"cannot read Parquet: {e}"))
        return
    for i, raw in enumerate(table.to_pylist(), start=1):
        yield i, "row", raw


def _dataset_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    markers = ("dataset_dict.json", "dataset_info.json", "state.json")
    if not any((path / m).is_file() for m in markers):
        msg = "not a datasets save_to_disk folder (no dataset_info.json or state.json)"
        problems.append(Problem(str(path), None, None, msg))
        return
    from datasets import Dataset, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here is a corrupt folder
        problems.append(Problem(str(path), None, None, f"cannot read dataset: {e}"))
        return
    parts = {None: data} if isinstance(data, Dataset) else dict(data)
    for split, part in parts.items():
        unit = "row" if split is None else f"split '{split}' row"
        for i, raw in enumerate(part.to_list(), start=1):
            if split is not None and raw.get("split") is None:
                raw["split"] = split
            yield i, unit, raw


def record_to_dict(record: Record) -> dict[str, Any]:
    """The JSON form of a record: the required fields, then the optional ones that are set."""
    out = {
        "id": record.id,
        "prompt": record.prompt,
        "reference": record.reference,
        "knowledge": record.knowledge,
        "answer": record.answer,
        "kind": record.kind,
        "split": record.split,
        "paraphrases": list(record.paraphrases) or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def write_records(records: Sequence[Record], path: str | Path) -> Path:
    """Write `records` as JSONL atomically (a temporary file renamed into place); returns `path`."""
    path = Path(path)
    lines = [json.dumps(record_to_dict(r), ensure_ascii=False) + "\n" for r in records]
    write_atomic(path, "".join(lines))
    return path
