"""Reading target sets, streaming: only parts the manifest lists, one record batch at a time.

Memory stays bounded by a batch (`batch_size` rows of the requested columns) and one row group's
pages, whatever the set's size. Unlisted files on disk (a crashed writer's leftovers, a part being
written right now) are never read. Checksums are verified by `validate`, not on every read; the
cheap checks (size as listed, footer, schema version, columns) happen on each open.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mixsd.errors import MixsdError
from mixsd.targets.manifest import first_line, open_part, read_manifest
from mixsd.targets.schema import COLUMNS, format_lam

__all__ = ["read_manifest", "iter_batches", "iter_rows", "lams", "listed_parts"]


def listed_parts(manifest: dict, lams: Iterable[float | None] | None = None) -> list[dict]:
    """The manifest's part entries, ordered by (λ, path), restricted to `lams` when given."""
    wanted = None if lams is None else {format_lam(x) for x in lams}
    parts = [p for p in manifest["parts"] if wanted is None or format_lam(p["lam"]) in wanted]
    return sorted(parts, key=lambda p: (p["lam"] is None, p["lam"] or 0.0, p["path"]))


def iter_batches(
    root: str | Path,
    lams: Iterable[float | None] | None = None,
    columns: list[str] | None = None,
    filter_correct: bool = False,
    batch_size: int = 1024,
) -> Iterator[pa.RecordBatch]:
    """Stream the set's rows as RecordBatches of schema v1 (or just `columns`, in that order).

    `lams`: only these λ values (None selects SFT rows). `filter_correct`: only rows whose
    `correct` is true (null, i.e. not scored, is dropped too).
    """
    root = Path(root)
    manifest = read_manifest(root)
    wanted = list(COLUMNS if columns is None else columns)
    unknown = [c for c in wanted if c not in COLUMNS]
    if unknown:
        raise MixsdError(f"{root}: unknown columns {unknown} (schema v1 has {', '.join(COLUMNS)})")
    read = wanted + ["correct"] if filter_correct and "correct" not in wanted else wanted
    for entry in listed_parts(manifest, lams):
        part = open_part(root, entry)
        try:
            for batch in part.iter_batches(batch_size=batch_size, columns=read):
                if filter_correct:
                    batch = batch.filter(pc.fill_null(batch.column("correct"), False))
                if batch.schema.names != wanted:  # Parquet returns columns in file order
                    batch = batch.select(wanted)
                if len(batch):
                    yield batch
        except (OSError, pa.ArrowException) as e:
            raise MixsdError(
                f"{root / entry['path']}: corrupt Parquet data ({first_line(e)})"
            ) from None


def iter_rows(
    root: str | Path,
    lams: Iterable[float | None] | None = None,
    columns: list[str] | None = None,
    filter_correct: bool = False,
) -> Iterator[dict]:
    """`iter_batches`, one dict per row (lists as Python lists, nulls as None)."""
    for batch in iter_batches(root, lams, columns, filter_correct):
        yield from batch.to_pylist()


def lams(root: str | Path) -> list[float | None]:
    """The λ values the set holds, ascending (None, the SFT λ, last)."""
    parts = listed_parts(read_manifest(root))
    return list(dict.fromkeys(p["lam"] for p in parts))
