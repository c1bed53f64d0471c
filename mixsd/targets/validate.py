"""`validate`: everything that can be wrong with a target set, one line per problem, streaming.

Checks: the manifest (present, parseable, schema version not from the future); completeness (every
planned shard ran and finished with its rows: `completeness`); every listed part
(present, size and sha256 as listed, valid Parquet, schema v1, row count, λ of its directory, its
rows' consistency: see `checks.batch_problems`); (id, sample, λ) unique across the set; and files
on disk the manifest does not list (readers ignore them: a crash's leftovers or a part being
written now). Memory: one batch, plus 8 bytes a row for the uniqueness check.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mixsd.errors import MixsdError
from mixsd.targets.checks import batch_problems
from mixsd.targets.completeness import completeness
from mixsd.targets.manifest import first_line, open_part, read_manifest
from mixsd.targets.provenance import sha256_file
from mixsd.targets.reader import listed_parts
from mixsd.targets.schema import NULL_LAM_DIR, format_lam, lam_dir, lam_ok

MAX_PER_PART = 5  # problem lines reported per part before summarising
BATCH = 4096


def validate(root: str | Path) -> tuple[list[str], int]:
    """(problems, rows in the listed parts). No problems means the set is sound."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except MixsdError as e:
        return [str(e)], 0
    problems = [f"{root}: {p}" for p in completeness(manifest)[0]]
    problems += _unlisted(root, {p["path"] for p in manifest["parts"]})
    hashes: dict[str, list[np.ndarray]] = {}
    rows = 0
    for entry in listed_parts(manifest):
        found, keys = _check_part(root, entry)
        problems += found
        if keys is not None:
            rows += entry["rows"]
            hashes.setdefault(format_lam(entry["lam"]), []).append(keys)
    for lam_text, arrays in hashes.items():
        problems += _duplicates(root, manifest, lam_text, np.concatenate(arrays))
    return problems, rows


def _unlisted(root: Path, listed: set[str]) -> list[str]:
    problems = []
    for path in sorted(root.glob("lam=*/*")):
        rel = path.relative_to(root).as_posix()
        if path.name.endswith(".tmp"):
            problems.append(f"{path}: half-written part (its writer crashed or is still running)")
        elif path.suffix == ".parquet" and rel not in listed:
            problems.append(f"{path}: part not in the manifest (readers ignore it)")
    return problems


def _check_part(root: Path, entry: dict) -> tuple[list[str], np.ndarray | None]:
    """Problems of one listed part, and the hashes of its (id, sample) keys when readable."""
    path = root / entry["path"]
    lam = entry["lam"]
    if not lam_ok(lam):
        return [f"{path}: λ {lam!r} in the manifest is not a number in [0, 1] (or null)"], None
    if Path(entry["path"]).parent.name != lam_dir(lam):
        return [f"{path}: listed with λ {format_lam(lam)} but lies in another λ directory"], None
    intact_size = path.is_file() and path.stat().st_size == entry["bytes"]
    if intact_size and sha256_file(path) != entry["sha256"]:
        return [f"{path}: sha256 differs from the manifest (corrupted after writing)"], None
    try:
        part = open_part(root, entry)
    except MixsdError as e:
        return [str(e)], None
    if part.metadata.num_rows != entry["rows"]:
        return [f"{path}: {part.metadata.num_rows} rows, manifest says {entry['rows']}"], None
    problems: list[str] = []
    keys = []
    offset = 0
    try:
        for batch in part.iter_batches(batch_size=BATCH):
            for p in batch_problems(batch, offset):
                problems.append(f"{path}: {p}")
            lams = batch.column("lam")
            if lams.null_count != (len(batch) if lam is None else 0) or (
                lam is not None and (np.asarray(lams.to_numpy()) != lam).any()
            ):
                problems.append(f"{path}: rows with λ other than {format_lam(lam)} (its directory)")
            keys.append(_key_hashes(batch))
            offset += len(batch)
    except Exception as e:  # pyarrow: ArrowInvalid, OSError, ... on corrupt pages
        return problems + [f"{path}: corrupt Parquet data ({first_line(e)})"], None
    if len(problems) > MAX_PER_PART:
        problems = problems[:MAX_PER_PART] + [f"{path}: ... {len(problems) - MAX_PER_PART} more"]
    return problems, np.concatenate(keys) if keys else np.zeros(0, np.int64)


def _key_hashes(batch) -> np.ndarray:
    pairs = zip(batch.column("id").to_pylist(), batch.column("sample").to_pylist(), strict=True)
    return np.fromiter((hash(k) for k in pairs), dtype=np.int64, count=len(batch))


def _duplicates(root: Path, manifest: dict, lam_text: str, hashes: np.ndarray) -> list[str]:
    """Name the duplicated (id, sample) keys of one λ: a second pass over that λ's parts only
    when two 64-bit hashes collide (which, for distinct keys, practically never happens)."""
    uniq, counts = np.unique(hashes, return_counts=True)
    suspects = set(uniq[counts > 1].tolist())
    if not suspects:
        return []
    seen: Counter = Counter()
    for entry in listed_parts(manifest):
        if format_lam(entry["lam"]) != lam_text:
            continue
        for batch in open_part(root, entry).iter_batches(BATCH, columns=["id", "sample"]):
            for key in zip(
                batch.column("id").to_pylist(), batch.column("sample").to_pylist(), strict=True
            ):
                if hash(key) in suspects:
                    seen[key] += 1
    dups = [k for k, n in seen.items() if n > 1]
    if not dups:
        return []
    (id_, sample), n = dups[0], seen[dups[0]]
    lam_text = "null" if lam_text == NULL_LAM_DIR else lam_text
    more = f" ({len(dups) - 1} more duplicated keys)" if len(dups) > 1 else ""
    return [f"{root}: (id {id_!r}, sample {sample}, λ {lam_text}) appears {n} times{more}"]
