"""validate (and the readers) on each kind of damage: one clear line each, non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from targets_rows import make_rows
from typer.testing import CliRunner

from mixsd.cli.targets import app
from mixsd.errors import MixsdError
from mixsd.targets.provenance import sha256_file
from mixsd.targets.reader import iter_rows, read_manifest
from mixsd.targets.schema import MANIFEST, SCHEMA
from mixsd.targets.writer import TargetSetWriter


def run_validate(root) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["validate", str(root)])
    return result.exit_code, result.output.strip().splitlines()


def edit_manifest(root, change) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def add_raw_part(root, rows, lam, folder, version=b"1") -> None:
    """A part written around the writer's checks, listed like a real one."""
    path = root / folder / "part-9-of-10-00000.parquet"
    path.parent.mkdir(exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table.replace_schema_metadata({b"mixsd.schema_version": version}), path)
    entry = {"path": f"{folder}/{path.name}", "lam": lam, "shard": "9-of-10", "rows": len(rows)}
    entry |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    edit_manifest(root, lambda m: m["parts"].append(entry))


def relist(root, path) -> None:
    """Make the manifest agree with a damaged part, as if the damage happened before listing."""
    entry = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    edit_manifest(root, lambda m: m["parts"][0].update(entry))


def first_part(root):
    return root / read_manifest(root)["parts"][0]["path"]


def test_sound_set_is_ok(small_set):
    root, _ = small_set
    note = "completeness unknown: written before mixsd recorded plans"  # no plan: see below
    assert run_validate(root) == (0, [f"OK: 35 rows ({note})"])


def test_planned_set_validates_or_says_what_is_missing(tmp_path, provenance):
    from targets_rows import make_rows

    from mixsd.targets.writer import TargetSetWriter

    root = tmp_path / "s"
    plan = {"input": "sha256:c", "records": 8, "shard_records": 4, "samples": 1, "lams": [0.3]}
    with TargetSetWriter(root, provenance, shard="0/2", plan=plan) as w:
        w.write(make_rows(4))
    assert run_validate(root) == (
        1,
        [f"{root}: incomplete: shard 1-of-2 never ran", f"{root}: incomplete: 4 of 8 planned rows"],
    )
    with TargetSetWriter(root, provenance, shard="1/2", plan=plan) as w:
        w.write(make_rows(4, start=10))
    assert run_validate(root) == (0, ["OK: 8 rows"])


def test_truncated_parquet(small_set):
    root, _ = small_set
    path = first_part(root)
    path.write_bytes(path.read_bytes()[:-100])
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1 and "truncated" in lines[0] and path.name in lines[0]
    with pytest.raises(MixsdError, match="truncated"):
        list(iter_rows(root))


def test_truncated_parquet_with_matching_manifest_is_not_parquet(small_set):
    root, _ = small_set
    path = first_part(root)
    path.write_bytes(path.read_bytes()[:-100])
    relist(root, path)
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"{path}: not valid Parquet (Parquet magic bytes not found")


def test_flipped_byte_with_matching_manifest_fails_page_checksums(small_set):
    root, _ = small_set
    path = first_part(root)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    relist(root, path)
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"{path}: corrupt Parquet data")
    with pytest.raises(MixsdError, match="corrupt Parquet data"):
        list(iter_rows(root))


def test_flipped_byte_is_a_checksum_mismatch(small_set):
    root, _ = small_set
    path = first_part(root)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    code, lines = run_validate(root)
    assert code == 1 and lines == [
        f"{path}: sha256 differs from the manifest (corrupted after writing)"
    ]


def test_missing_manifest(small_set):
    root, _ = small_set
    (root / MANIFEST).unlink()
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1 and "no .manifest.json" in lines[0]
    with pytest.raises(MixsdError, match="not a target set"):
        list(iter_rows(root))


def test_part_not_in_manifest(small_set):
    root, _ = small_set
    path = first_part(root)
    edit_manifest(root, lambda m: m["parts"].pop(0))
    code, lines = run_validate(root)
    assert code == 1 and lines == [f"{path}: part not in the manifest (readers ignore it)"]
    assert len(list(iter_rows(root))) == 25


def test_future_schema_version_in_manifest_and_in_a_file(small_set):
    root, _ = small_set
    edit_manifest(root, lambda m: m.update(schema_version=2))
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1 and "schema v2, this mixsd reads up to v1" in lines[0]
    edit_manifest(root, lambda m: m.update(schema_version=1))
    add_raw_part(root, make_rows(2, 0.5, start=900), 0.5, "lam=0.5", version=b"2")
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1 and "schema v2" in lines[0] and "lam=0.5" in lines[0]
    with pytest.raises(MixsdError, match="upgrade mixsd"):
        list(iter_rows(root, lams=[0.5]))


def test_bad_lam_in_manifest_and_in_rows(small_set):
    root, _ = small_set
    rows = [{**r, "lam": 1.5} for r in make_rows(2, start=900)]
    add_raw_part(root, rows, 1.5, "lam=1.5")
    code, lines = run_validate(root)
    assert code == 1 and lines == [
        f"{root}/lam=1.5/part-9-of-10-00000.parquet: λ 1.5 in the manifest is not a number in "
        "[0, 1] (or null)"
    ]
    edit_manifest(root, lambda m: m["parts"].pop())
    (root / "lam=1.5/part-9-of-10-00000.parquet").unlink()
    add_raw_part(root, rows, 0.3, "lam=0.3")
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 2
    assert "row 0 (id 'ex900'): lam 1.5 is outside [0, 1] (and 1 more rows)" in lines[0]
    assert "rows with λ other than 0.3" in lines[1]


def test_row_inconsistency_and_duplicates(small_set, provenance):
    root, rows = small_set
    bad = make_rows(3, 0.3, start=900)
    bad[1]["source"] = bad[1]["source"] + [0]
    add_raw_part(root, bad, 0.3, "lam=0.3")
    code, lines = run_validate(root)
    n = len(bad[1]["target_ids"])
    assert code == 1 and lines == [
        f"{root}/lam=0.3/part-9-of-10-00000.parquet: row 1 (id 'ex901'): "
        f"len(source)={n + 1} but len(target_ids)={n}"
    ]
    edit_manifest(root, lambda m: m["parts"].pop())
    (root / "lam=0.3/part-9-of-10-00000.parquet").unlink()
    with TargetSetWriter(root, provenance) as w:  # the writer does not look for duplicates
        w.write(rows[3:5])
    code, lines = run_validate(root)
    assert code == 1 and len(lines) == 1
    assert (
        lines[0] == f"{root}: (id 'ex3', sample 1, λ 0.3) appears 2 times (1 more duplicated keys)"
    )


def test_cli_error_is_one_line_without_traceback(small_set):
    root, _ = small_set
    path = first_part(root)
    path.write_bytes(path.read_bytes()[:-10])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "mixsd", "targets", "inspect", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,  # a bound for a hang only: a busy machine may take minutes to start it
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {path}: ")
    assert "Traceback" not in proc.stderr
