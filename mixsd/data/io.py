"""Reading, validating and writing input sets.

Formats, chosen by the path: `.jsonl` (one JSON object per line), `.json` (a list of objects),
`.parquet`, `.csv` (header row; `paraphrases` as a JSON list string) and a `datasets.save_to_disk`
folder (a `Dataset`, or a `DatasetDict` whose split names fill in `split`). A record gives its
prompt and reference in one of three forms: `prompt`/`reference`; chat form, `messages: [{role:
user, ...}, {role: assistant, ...}]`; or Alpaca form, `instruction`, optional `input`, `output`
(prompt = instruction, a blank line, input). The `id` may be missing, as in the files the paper's
data builder writes: it is then derived from the content (`content_id`).

`check` reports every problem with the file, the line (text formats) or row / record number
(counted from 1), and the field, plus notes (ids derived, fields ignored); `load_records` refuses a
file with any problem and prints the notes to stderr.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixsd.data.records import KINDS, Record
from mixsd.errors import MixsdError

FORMATS = ".jsonl, .json, .parquet, .csv or a datasets save_to_disk folder"
_OPTIONAL_TEXT = ("knowledge", "answer", "split")
_FORMS = {"messages": ("messages",), "Alpaca": ("instruction", "input", "output")}
_FIELDS = {"id", "prompt", "reference", "kind", "paraphrases", *_OPTIONAL_TEXT}
_FIELDS |= {f for fields in _FORMS.values() for f in fields}
# Written by the paper's data builder next to `messages`; nothing in mixsd reads them.
IGNORED_FIELDS = ("clear_answer", "mix_meta", "subject")


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


def load_records(path: str | Path) -> list[Record]:
    """The records at `path`; raises MixsdError naming the first problem when there is any.
    The notes (ids derived, fields ignored) go to stderr, one line each."""
    records, problems, notes = check(path)
    if problems:
        more = len(problems) - 1
        hint = f" (and {more} more: 'mixsd data validate {path}' lists them)" if more else ""
        raise MixsdError(f"{problems[0]}{hint}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return records


def check(path: str | Path) -> tuple[list[Record], list[Problem], list[str]]:
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
        record, errors = parse_record(raw)
        problems += [Problem(name, line, f, m, unit) for f, m in errors]
        for f in set(raw) & set(IGNORED_FIELDS) if isinstance(raw, dict) else ():
            ignored[f] = ignored.get(f, 0) + 1
        ident = _ident(raw)
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
        notes.append(f"{name}: {n} record{'s' * (n != 1)} without an id: derived from the "
                     f"content (h + 16 hex digits{again})")  # fmt: skip
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


def _ident(raw: Any) -> str | None:
    """The id a row claims, if it is a usable one (for the duplicate check)."""
    ident = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(ident, int) and not isinstance(ident, bool):
        return str(ident)
    return ident if _text(ident) else None


def parse_record(raw: Any) -> tuple[Record | None, list[tuple[str | None, str]]]:
    """A `Record` from one raw row, or None and the (field, message) problems that prevent it."""
    if not isinstance(raw, dict):
        return None, [(None, f"expected a JSON object, got {type(raw).__name__}")]
    if None in raw:
        return None, [(None, "more cells than header columns")]
    raw = {k: v for k, v in raw.items() if v is not None and k not in IGNORED_FIELDS}
    errors: list[tuple[str | None, str]] = []
    required = ["prompt", "reference"]
    forms = [f for f, fields in _FORMS.items() if set(fields) & set(raw)]
    if len(forms) + ("prompt" in raw or "reference" in raw) > 1:
        field = next(f for form in forms for f in _FORMS[form] if f in raw)
        msg = "give one of messages, prompt/reference or instruction/input/output"
        errors.append((field, msg))
        required = []  # no "missing" noise on top
    elif forms == ["messages"]:
        turns = _from_messages(raw.pop("messages"))
        if turns is None:
            errors.append(("messages", _MESSAGES))
            required = []
        else:
            raw = {**turns, **raw}
    elif forms == ["Alpaca"]:
        turns, bad = _from_alpaca(raw)
        errors += bad
        required = [] if bad else required
        raw = {**(turns or {}), **{k: v for k, v in raw.items() if k not in _FORMS["Alpaca"]}}
    if "id" in raw:
        raw["id"] = _ident(raw) or raw["id"]  # integer ids become strings
        if not _text(raw["id"]):
            errors.append(("id", f"expected a non-empty string, got {_show(raw['id'])}"))
    for field in required:
        if field not in raw:
            errors.append((field, "missing (required: a non-empty string)"))
        elif not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    for field in _OPTIONAL_TEXT:
        if field in raw and not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    kind = raw.get("kind", "fact")
    if kind not in KINDS:
        errors.append(("kind", f"unknown kind {_show(kind)} (expected one of: {', '.join(KINDS)})"))
    # a misspelt optional field (`knowlege`) would silently change what the expert sees
    for field in sorted(set(raw) - _FIELDS):
        near = difflib.get_close_matches(field, [*_FIELDS, *IGNORED_FIELDS], n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        errors.append((field, f"unknown field ({hint}expected: {', '.join(sorted(_FIELDS))})"))
    paraphrases = raw.get("paraphrases", [])
    if not (isinstance(paraphrases, (list, tuple)) and all(_text(p) for p in paraphrases)):
        msg = f"expected a list of non-empty strings, got {_show(paraphrases)}"
        errors.append(("paraphrases", msg))
    if errors:
        return None, errors
    record = Record(
        id=raw["id"] if "id" in raw else content_id(raw, kind, paraphrases),
        prompt=raw["prompt"],
        reference=raw["reference"],
        knowledge=raw.get("knowledge"),
        answer=raw.get("answer"),
        kind=kind,
        split=raw.get("split"),
        paraphrases=tuple(paraphrases),
    )
    return record, []


_MESSAGES = "expected [{role: user, content}, {role: assistant, content}], non-empty contents"


def _from_messages(messages: Any) -> dict[str, str] | None:
    """prompt/reference from a chat-form record (one user turn, then one assistant turn)."""
    ok = (
        isinstance(messages, list)
        and len(messages) == 2
        and all(isinstance(m, dict) and _text(m.get("content")) for m in messages)
        and [m.get("role") for m in messages] == ["user", "assistant"]
    )
    return {"prompt": messages[0]["content"], "reference": messages[1]["content"]} if ok else None


def _from_alpaca(raw: dict) -> tuple[dict[str, str] | None, list[tuple[str, str]]]:
    """prompt/reference from an Alpaca-form record: instruction, optional input, output."""
    errors = []
    for field in ("instruction", "output"):
        if field not in raw:
            errors.append((field, "missing (required: a non-empty string)"))
        elif not _text(raw[field]):
            errors.append((field, f"expected a non-empty string, got {_show(raw[field])}"))
    extra = raw.get("input", "")
    if not isinstance(extra, str):
        errors.append(("input", f"expected a string, got {_show(extra)}"))
    if errors:
        return None, errors
    prompt = raw["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    return {"prompt": prompt, "reference": raw["output"]}, []


def content_id(raw: dict, kind: str, paraphrases) -> str:
    """The id of a record given without one: "h" + 16 hex digits of a hash of everything mixsd
    reads from it, so the same record gets the same id on every run and every shard. `check`
    appends "-k" to the k-th repeat of a content within a file."""
    content = [raw["prompt"], raw["reference"], *(raw.get(f) for f in _OPTIONAL_TEXT), kind]
    text = json.dumps([*content, list(paraphrases)], ensure_ascii=False)
    return "h" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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
    write_text_atomic(path, "".join(lines))
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
