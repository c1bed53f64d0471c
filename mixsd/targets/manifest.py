"""The manifest (which parts a set holds) and the checks every reader of a part shares.

A part exists for readers only once the manifest lists it: writers rename a finished, fsync'd part
into place and then add it to the manifest under an exclusive `flock` on `SET/.lock`, replacing
the manifest atomically. Several shard processes can therefore write one set at once without
losing each other's entries (flock works across processes on one host and over NFSv4; on
file systems without working flock, give each shard its own set and `mixsd targets merge` them).

Manifest (JSON): `{format, schema_version, provenance, rows, parts: [{path, lam, shard, rows,
bytes, sha256}], stats: {shard: {...}}, plans: {shard: {input, shards, records, shard_records,
samples, lams, rows, started, completed}}}`; part paths are relative to the set; `plans` (absent
in sets written before mixsd recorded them) says what a complete set holds (`completeness`).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from mixsd.errors import MixsdError
from mixsd.io import (
    fsync_dir,  # noqa: F401 (targets.writer and targets.ops import it here)
    write_atomic,
)
from mixsd.targets.card import write_card
from mixsd.targets.schema import LOCK, MANIFEST, META_VERSION, SCHEMA, SCHEMA_VERSION

FORMAT = "mixsd-target-set"
PART_KEYS = ("path", "lam", "shard", "rows", "bytes", "sha256")


def new_manifest(provenance: dict) -> dict:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "provenance": provenance,
        "rows": 0,
        "parts": [],
        "stats": {},
    }


def check_version(version, where: str) -> None:
    """Refuse data written by a newer schema than this code reads (and non-integer versions)."""
    if not isinstance(version, int):
        raise MixsdError(f"{where}: schema_version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise MixsdError(
            f"{where}: written with target-set schema v{version}, this mixsd reads up to "
            f"v{SCHEMA_VERSION}: upgrade mixsd"
        )


def read_manifest(root: str | Path) -> dict:
    """The set's manifest, checked for shape and version; MixsdError when missing or bad."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise MixsdError(f"{root}: target set not found (no such directory)")
    if not path.is_file():
        raise MixsdError(f"{root}: no {MANIFEST}: not a target set, or no part was ever completed")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MixsdError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MixsdError(f"{path}: not a mixsd target-set manifest (expected format '{FORMAT}')")
    check_version(manifest.get("schema_version"), str(path))
    parts = manifest.get("parts")
    if not isinstance(parts, list) or not isinstance(manifest.get("provenance"), dict):
        raise MixsdError(f"{path}: expected 'parts' (a list) and 'provenance' (a mapping)")
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or any(k not in part for k in PART_KEYS):
            raise MixsdError(f"{path}: parts[{i}] needs the keys {', '.join(PART_KEYS)}")
    return manifest


def write_manifest(root: Path, manifest: dict) -> None:
    manifest["rows"] = sum(p["rows"] for p in manifest["parts"])
    write_atomic(root / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
    write_card(root, manifest)  # the card is a view of the manifest: never older than it


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the set's exclusive lock (blocks until other writers release it)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def open_part(root: Path, entry: dict) -> pq.ParquetFile:
    """Open a listed part after the cheap checks (present, size as listed, readable footer,
    schema version, columns); MixsdError naming the part otherwise. Checksums: see validate."""
    path = root / entry["path"]
    if not path.is_file():
        raise MixsdError(f"{path}: listed in the manifest but missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise MixsdError(f"{path}: {size} bytes, manifest says {entry['bytes']} (truncated?)")
    try:
        part = pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for any corrupt footer
        raise MixsdError(f"{path}: not valid Parquet ({first_line(e)})") from None
    meta = part.schema_arrow.metadata or {}
    try:
        version = int(meta.get(META_VERSION, b""))
    except ValueError:
        raise MixsdError(f"{path}: no mixsd.schema_version in the file metadata") from None
    check_version(version, str(path))
    if not part.schema_arrow.remove_metadata().equals(SCHEMA):
        raise MixsdError(f"{path}: columns {part.schema_arrow.names} differ from schema v1")
    return part


def first_line(e: Exception) -> str:
    """An exception as one line (pyarrow messages can span several)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
