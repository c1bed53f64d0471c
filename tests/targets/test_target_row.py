"""The typed row: its fields are the schema's columns, and what it writes is what a set reads."""

from __future__ import annotations

import dataclasses

from targets_rows import make_rows

from mixsd.targets.reader import iter_rows
from mixsd.targets.schema import COLUMNS, TargetRow
from mixsd.targets.writer import TargetSetWriter


def test_the_row_fields_are_the_schema_columns_in_order():
    assert tuple(f.name for f in dataclasses.fields(TargetRow)) == COLUMNS


def test_typed_rows_and_dict_rows_write_the_same_set(tmp_path, provenance):
    rows = make_rows(6, lam=0.3) + make_rows(3, lam=None, start=10)
    typed = [TargetRow(**r) for r in rows]
    assert [t.to_dict() for t in typed] == rows
    for name, batch in (("typed", typed), ("dicts", rows)):
        with TargetSetWriter(tmp_path / name, provenance) as w:
            w.write(batch)
    assert list(iter_rows(tmp_path / "typed")) == list(iter_rows(tmp_path / "dicts"))
    assert sorted(iter_rows(tmp_path / "typed"), key=lambda r: r["id"]) == sorted(
        rows, key=lambda r: r["id"]
    )
