"""Target-set fixtures: a provenance and a small two-λ set."""

from __future__ import annotations

import pytest
from targets_rows import PROVENANCE, make_rows

from mixsd.targets.writer import TargetSetWriter


@pytest.fixture
def provenance():
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PROVENANCE.items()}


@pytest.fixture
def small_set(tmp_path, provenance):
    """λ 0.3 (25 rows) and λ 1 (10 rows) in parts of at most 10 rows; returns (root, rows)."""
    root = tmp_path / "set"
    rows = make_rows(25, 0.3) + make_rows(10, 1.0, start=100, seed=1)
    with TargetSetWriter(root, provenance, rows_per_part=10, row_group_rows=4) as w:
        w.write(rows[:17])
        w.write(rows[17:])
    return root, rows
