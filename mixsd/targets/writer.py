"""Writing target sets: atomic parts, one manifest shared by concurrent shard writers, resume.

    with TargetSetWriter(root, provenance, shard="1-of-4") as w:
        w.write(rows)            # `TargetRow`s (or dicts of their columns); any order of λ
        w.add_stats({...})       # run statistics, kept per shard in the manifest

With a `plan` (what this shard will write: see `completeness`), the manifest records it when the
writer opens and stamps it `completed` when the writer is left normally; a killed or failed run
leaves it unstamped, so `validate`, `inspect`, `train` and `evaluate` see the set as incomplete.

Rows are converted to Arrow on `write` (compact: ~4 bytes a token, not a Python int each) and
buffered per λ; every `rows_per_part` rows of one λ become a part. A part is written under a
hidden temporary name, fsync'd, renamed to `lam=<λ>/part-<shard>-<n>.parquet`, and only then
listed in the manifest (under the set's lock, manifest replaced atomically). A crash loses at
most the buffered rows; `existing_keys` tells a resumed run what the set already holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import mixsd
from mixsd.errors import MixsdError
from mixsd.targets.checks import batch_problems
from mixsd.targets.completeness import merged_plan
from mixsd.targets.manifest import (
    fsync_dir,
    locked,
    new_manifest,
    read_manifest,
    write_manifest,
)
from mixsd.targets.provenance import check_compatible, sha256_file
from mixsd.targets.reader import iter_batches
from mixsd.targets.schema import (
    COLUMNS,
    MANIFEST,
    META_PROVENANCE,
    META_VERSION,
    ROW_GROUP_ROWS,
    SCHEMA,
    SCHEMA_VERSION,
    TargetRow,
    lam_dir,
)

CONVERT_ROWS = 512
_SHARD = re.compile(r"(\d+)(?:-of-|/)(\d+)")


def shard_numbers(shard: str) -> tuple[int, int]:
    """`"i-of-N"` or `"i/N"` (0 <= i < N) -> (i, N)."""
    m = _SHARD.fullmatch(str(shard).strip())
    if not m or not int(m[1]) < int(m[2]):
        raise MixsdError(f"shard '{shard}': expected i-of-N (or i/N) with 0 <= i < N")
    return int(m[1]), int(m[2])


def parse_shard(shard: str) -> str:
    """`"i-of-N"` or `"i/N"` (0 <= i < N) -> canonical `"i-of-N"`."""
    return "{}-of-{}".format(*shard_numbers(shard))


class TargetSetWriter:
    """Append rows to the target set at `root` (created if absent) as shard `shard`.

    Opening a set that exists checks the provenance against the set's (`check_compatible`,
    MixsdError naming the first differing field) and adopts this shard's parts that a crash left
    renamed but unlisted. Use as a context manager: leaving it (normally) writes the buffers.
    """

    def __init__(
        self,
        root: str | Path,
        provenance: dict,
        shard: str = "0-of-1",
        rows_per_part: int = 20_000,
        row_group_rows: int = ROW_GROUP_ROWS,
        plan: dict | None = None,
    ):
        if rows_per_part < 1 or row_group_rows < 1:
            raise ValueError("rows_per_part and row_group_rows must be >= 1")
        self.root = Path(root)
        self.shard = parse_shard(shard)
        self.rows_per_part = rows_per_part
        self.row_group_rows = row_group_rows
        self._pending: list[dict] = []
        self._buffers: dict[float | None, list[pa.RecordBatch]] = {}
        self.plan = plan
        # Through JSON once, so that what is compared later is what the manifest holds (tuples
        # become lists, paths strings).
        provenance = json.loads(json.dumps(provenance, default=str))
        self.provenance = {
            **provenance,
            "schema_version": SCHEMA_VERSION,
            "mixsd_version": mixsd.__version__,
            "created": provenance.get("created") or dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        with locked(self.root):
            if (self.root / MANIFEST).exists():
                manifest = read_manifest(self.root)
                try:
                    check_compatible(manifest["provenance"], self.provenance)
                except MixsdError as e:
                    raise MixsdError(f"{self.root}: exists, made differently: {e}") from None
                if "lams" in self.provenance:
                    old = manifest["provenance"].get("lams")
                    manifest["provenance"]["lams"] = _union(old, self.provenance["lams"])
                self.provenance = manifest["provenance"]
                self._recover(manifest)
            else:
                manifest = new_manifest(self.provenance)
            if plan is not None:
                plans = manifest.setdefault("plans", {})
                plans[self.shard] = merged_plan(plans.get(self.shard), plan, self.shard, _now())
            write_manifest(self.root, manifest)
        taken = [
            int(m[1]) for p in self.root.glob(f"lam=*/*part-{self.shard}-*") if (m := self._name(p))
        ]
        self._next = max(taken, default=-1) + 1

    def _name(self, path: Path) -> re.Match | None:
        return re.fullmatch(rf"\.?part-{self.shard}-(\d+)\.parquet(\.tmp)?", path.name)

    def _recover(self, manifest: dict) -> None:
        """Delete this shard's half-written temporaries; list its complete, unlisted parts (in
        `manifest`, which the caller writes)."""
        listed = {p["path"] for p in manifest["parts"]}
        for path in sorted(self.root.glob(f"lam=*/*part-{self.shard}-*")):
            m = self._name(path)
            if not m:
                continue
            if m[2]:
                path.unlink()
            elif path.relative_to(self.root).as_posix() not in listed:
                entry = self._adoptable(path)
                if entry is not None:
                    manifest["parts"].append(entry)

    def _adoptable(self, path: Path) -> dict | None:
        """The manifest entry of a renamed (hence complete) part, if it is ours and readable."""
        try:
            meta = pq.read_metadata(path)
            prov = json.loads(meta.metadata[META_PROVENANCE])
            check_compatible(self.provenance, prov)
        except Exception:  # not ours, or unreadable: leave it for validate to report
            return None
        lam = prov.get("lam")
        return self._entry(path, lam, meta.num_rows)

    def _entry(self, path: Path, lam: float | None, rows: int) -> dict:
        return {
            "path": path.relative_to(self.root).as_posix(),
            "lam": lam,
            "shard": self.shard,
            "rows": rows,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }

    def write(self, rows: list[TargetRow | dict]) -> None:
        """Buffer rows (`TargetRow`s, or dicts with the schema-v1 columns); write every full part.

        Rows are converted to Arrow and checked `CONVERT_ROWS` at a time (per-call conversion
        would cost milliseconds a row), so a bad row is refused at the latest by `flush`/`close`.
        """
        rows = [r.to_dict() if isinstance(r, TargetRow) else r for r in rows]
        unknown = set().union(*rows) - set(COLUMNS) if rows else set()
        if unknown:
            raise MixsdError(f"{self.root}: rows have unknown columns {sorted(unknown)}")
        self._pending.extend(rows)
        if len(self._pending) >= CONVERT_ROWS:
            self._convert()

    def _convert(self) -> None:
        rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            batch = pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise MixsdError(f"{self.root}: rows do not fit schema v1 ({e})") from None
        self.write_batch(batch)

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Buffer Arrow rows of schema v1, checked as validate checks them (the bulk path)."""
        self._convert()  # rows given to `write` before these come first
        if not batch.schema.remove_metadata().equals(SCHEMA):
            raise MixsdError(f"{self.root}: batch columns {batch.schema.names} are not schema v1")
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks().to_batches()[0] if len(batch) else None
        if batch is None or not len(batch):
            return
        problems = batch_problems(batch)
        if problems:
            raise MixsdError(f"{self.root}: refusing rows: {problems[0]}")
        lam = batch.column("lam")
        for value in pc.unique(lam).to_pylist():
            mask = lam.is_null() if value is None else pc.fill_null(pc.equal(lam, value), False)
            self._buffers.setdefault(value, []).append(batch.filter(mask))
            if sum(len(b) for b in self._buffers[value]) >= self.rows_per_part:
                self._flush_lam(value, full_only=True)

    def flush(self) -> None:
        """Write everything buffered as parts (e.g. at the end of a wave)."""
        self._convert()
        for lam in list(self._buffers):
            self._flush_lam(lam, full_only=False)

    def _flush_lam(self, lam: float | None, full_only: bool) -> None:
        table = pa.Table.from_batches(self._buffers.pop(lam, []), schema=SCHEMA)
        start = 0
        while len(table) - start >= self.rows_per_part or (not full_only and start < len(table)):
            n = min(self.rows_per_part, len(table) - start)
            self._write_part(lam, table.slice(start, n))
            start += n
        if start < len(table):
            self._buffers[lam] = table.slice(start).combine_chunks().to_batches()

    def _write_part(self, lam: float | None, table: pa.Table) -> None:
        folder = self.root / lam_dir(lam)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{self.shard}-{self._next:05d}.parquet"
        self._next += 1
        final, tmp = folder / name, folder / f".{name}.tmp"
        prov = {**self.provenance, "lam": lam, "shard": self.shard}
        meta = {META_VERSION: str(SCHEMA_VERSION).encode(), META_PROVENANCE: json.dumps(prov)}
        with open(tmp, "wb") as f:
            pq.write_table(
                table.replace_schema_metadata(meta),
                f,
                compression="zstd",
                row_group_size=self.row_group_rows,
                write_page_checksum=True,  # readers verify pages: corruption fails loudly
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(folder)
        entry = self._entry(final, lam, len(table))
        with locked(self.root):
            manifest = read_manifest(self.root)
            manifest["parts"].append(entry)
            write_manifest(self.root, manifest)

    def add_stats(self, stats: dict) -> None:
        """Merge run statistics (JSON-able) into this shard's `stats` entry of the manifest."""
        with locked(self.root):
            manifest = read_manifest(self.root)
            manifest["stats"].setdefault(self.shard, {}).update(stats)
            write_manifest(self.root, manifest)

    def close(self) -> None:
        """Write the buffers; with a plan, stamp this shard's plan completed."""
        self.flush()
        if self.plan is not None:
            with locked(self.root):
                manifest = read_manifest(self.root)
                manifest["plans"][self.shard]["completed"] = _now()
                write_manifest(self.root, manifest)

    def __enter__(self) -> TargetSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an error, keep the buffered rows out: they may be the cause, and a resumed run
        # regenerates them. Parts already written stay valid.
        if exc_type is None:
            self.close()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _union(old: list | None, new: list) -> list:
    """The λ list of a set that a run extends (`provenance.lams` stays true after adding a λ)."""
    return sorted(set(old or []) | set(new), key=lambda x: (x is None, x or 0.0))


def existing_keys(root: str | Path) -> set[tuple[str, int, float | None]]:
    """`(id, sample, lam)` of every row in the set's listed parts (empty if no set): for resume."""
    if not (Path(root) / MANIFEST).exists():
        return set()
    keys: set[tuple[str, int, float | None]] = set()
    for batch in iter_batches(root, columns=["id", "sample", "lam"]):
        keys.update(
            zip(*(batch.column(c).to_pylist() for c in ("id", "sample", "lam")), strict=True)
        )
    return keys
