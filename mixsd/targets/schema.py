"""Target-set schema v1: the columns of one target row, defined once for writer, reader and checks.

A target set is a directory:

    SET/.manifest.json                          parts (path, λ, rows, bytes, sha256), provenance
    SET/.lock                                   flock(2) lock serialising manifest updates
    SET/lam=0.3/part-0-of-2-00000.parquet       one λ per directory (hive style), zstd
    SET/lam=__HIVE_DEFAULT_PARTITION__/part-... SFT rows (λ null)

Decisions (and why):
- `lam` is stored IN each file (float64, null for SFT) as well as in the directory name.
  `datasets.load_dataset("parquet", data_dir=SET)` reads only the files' columns (it ignores hive
  directories), so λ must be in the file for it to be a column there. The directory makes λ
  visible to people and lets `pyarrow.dataset` prune by λ: pass `partitioning=partitioning()`
  (hive with `lam: float64`, same type as the file column, so no duplicate-field conflict) or no
  partitioning at all (λ then comes from the files). `partitioning="hive"` infers `lam` as a string
  and so conflicts with the file's float column: do not use it.
- SFT rows (λ null) live in `lam=__HIVE_DEFAULT_PARTITION__`, the hive spelling of null, which
  pyarrow parses back to null; a word like `sft` would not parse as a float.
- λ directory names are canonical: the shortest repr of the float, without a trailing `.0`
  (`0`, `0.3`, `1`), so one λ always maps to one directory.
- The manifest is a dot-file: both `datasets` and `pyarrow.dataset` skip hidden files, whereas a
  visible `manifest.json` next to the parts is read by both as if it were Parquet (and fails).
- The dataset card `README.md` (`targets.card`) must be visible, and there is no other name for
  it on a hub: pyarrow readers of the folder pass `ignore_prefixes=IGNORE_PREFIXES` to skip it
  (`datasets` reads the card's globs, or `.parquet` files only with `data_dir`).
- Parts are zstd-compressed, in row groups of `ROW_GROUP_ROWS` rows (what a streaming reader
  holds at once), with Parquet page CRCs that every reader verifies: a damaged page fails loudly.
- Each file's key-value metadata holds `mixsd.schema_version` and `mixsd.provenance` (the set's
  provenance JSON, plus the part's λ and shard), so a lone part still says how it was made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

from mixsd.outputs import MANIFEST as MANIFEST  # defined there: outputs are checked without pyarrow

SCHEMA_VERSION = 1

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sample", pa.int32()),
        ("attempt", pa.int32()),
        ("lam", pa.float64()),  # null for SFT rows
        ("kind", pa.string()),  # 'mixsd' | 'sft'
        ("prompt_ids", pa.list_(pa.int32())),  # naive prompt, exactly as the model saw it
        ("expert_prompt_ids", pa.list_(pa.int32())),
        ("target_ids", pa.list_(pa.int32())),  # includes the stop token when finish_reason='stop'
        ("target_text", pa.string()),
        ("source", pa.list_(pa.uint8())),  # per target token: 1 = naive conditional, 0 = expert
        ("expert_logprob", pa.list_(pa.float32())),  # per target token, null if not computed
        ("naive_logprob", pa.list_(pa.float32())),
        ("finish_reason", pa.string()),  # 'stop' | 'length' | 'prompt_too_long'
        ("correct", pa.bool_()),
        ("reference", pa.string()),
        ("answer", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
KINDS = ("mixsd", "sft")
FINISH_REASONS = ("stop", "length", "prompt_too_long")
REQUIRED = ("id", "sample", "attempt", "kind", "prompt_ids", "target_ids", "finish_reason")

# File key-value metadata keys.
META_VERSION = b"mixsd.schema_version"
META_PROVENANCE = b"mixsd.provenance"

LOCK = ".lock"
NULL_LAM_DIR = "__HIVE_DEFAULT_PARTITION__"

# `pyarrow.dataset.dataset(SET, ignore_prefixes=...)`: its default (hidden files) plus the card.
IGNORE_PREFIXES = [".", "_", "README"]  # a list: pyarrow refuses a tuple

ROW_GROUP_ROWS = 2048  # streaming granularity: a reader holds about one row group per column


@dataclass(frozen=True, kw_only=True)
class TargetRow:
    """One row before it is written: the columns of `SCHEMA`, same names, same order (a test
    holds them equal), typed. SFT rows leave `source` and the log-probs None."""

    id: str
    sample: int
    attempt: int
    lam: float | None
    kind: str
    prompt_ids: list[int]
    expert_prompt_ids: list[int] | None
    target_ids: list[int]
    target_text: str
    source: list[int] | None = None
    expert_logprob: list[float] | None = None
    naive_logprob: list[float] | None = None
    finish_reason: str
    correct: bool
    reference: str | None
    answer: str | None

    def to_dict(self) -> dict:
        """The row as `TargetSetWriter.write` takes it (shallow: lists are shared, not copied)."""
        return {name: getattr(self, name) for name in COLUMNS}


def partitioning():
    """The set's hive partitioning for `pyarrow.dataset.dataset(SET, partitioning=...,
    ignore_prefixes=IGNORE_PREFIXES)`: `lam` typed float64 like the file column. (A function: importing pyarrow.dataset costs ~40 MB.)"""
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([("lam", pa.float64())]), flavor="hive")


def format_lam(lam: float | None) -> str:
    """Canonical text of λ for directory names and messages: `0`, `0.3`, `1`; null -> hive null."""
    if lam is None:
        return NULL_LAM_DIR
    text = repr(float(lam))
    return text[:-2] if text.endswith(".0") else text


def show_lam(lam: float | None) -> str:
    """λ for messages: canonical, or `null` (an SFT row)."""
    return "null" if lam is None else format_lam(lam)


def lam_dir(lam: float | None) -> str:
    return f"lam={format_lam(lam)}"


def lam_ok(lam: float | None) -> bool:
    return lam is None or (isinstance(lam, (int, float)) and not math.isnan(lam) and 0 <= lam <= 1)
