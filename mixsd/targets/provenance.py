"""Provenance: how a target set was made, and whether two sets (or a set and a run) agree.

A provenance is a JSON-able dict the producer fills (generate: model, tokenizer, templates,
sampling, seed, λ list, engine and version, input fingerprint); the writer adds `schema_version`,
`mixsd_version` and `created`. Token ids are the truth, so the tokenizer and the model weights are
identified by content hashes, not by names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mixsd.errors import MixsdError

# Fields that legitimately differ between compatible runs of one set: bookkeeping (time, counts,
# checksums, stats) and λ, since a set may gain λ values (parts are per λ) and shards.
IGNORED = frozenset(
    {"created", "rows", "row_counts", "sha256", "parts", "stats", "lam", "lams", "shard"}
)
CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (memory stays flat for any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """`sha256:<hex>` of what decides token ids: vocabulary (sorted), merges, added and special
    tokens, and the chat template. Two tokenizers with equal fingerprints tokenize alike."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"].get("merges", [])]
    added = sorted((t["id"], t["content"], t["special"]) for t in backend.get("added_tokens", []))
    return _digest(
        {
            "vocab": sorted(tokenizer.get_vocab().items()),
            "merges": merges,
            "added_tokens": added,
            "special_tokens": tokenizer.special_tokens_map,
            "chat_template": tokenizer.chat_template,
        }
    )


def model_fingerprint(path: str | Path) -> dict:
    """`{name, revision, weights_sha256}` of a local model directory or a hub-cache snapshot.

    `revision` is the snapshot's commit when `path` lies in a hub cache (`.../snapshots/<rev>`),
    else null. `weights_sha256` hashes the sorted `(file name, file sha256)` of the weight files;
    a hub-cache blob is named by its sha256 already, so it is not read again.
    """
    path = Path(path)
    if not path.is_dir():
        raise MixsdError(f"{path}: model directory not found")
    resolved = path.resolve()
    revision = resolved.name if resolved.parent.name == "snapshots" else None
    files = sorted(p for p in path.iterdir() if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file())
    if not files:
        raise MixsdError(f"{path}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    hashes = []
    for f in files:
        blob = os.path.basename(os.path.realpath(f))
        hashes.append([f.name, blob if _SHA256.fullmatch(blob) else sha256_file(f)])
    return {"name": str(path), "revision": revision, "weights_sha256": _digest(hashes)}


def input_fingerprint(records: Iterable) -> str:
    """`sha256:<hex>` of the input set: each record (a dataclass or dict) canonically serialized,
    sorted, so the order of the input file does not matter (rows are keyed by id)."""
    lines = sorted(
        canonical_json(dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r) for r in records
    )
    return _digest(lines)


def check_compatible(old: dict, new: dict) -> None:
    """Raise MixsdError naming the first field (dotted, e.g. `sampling.top_p`) where two
    provenances differ, ignoring bookkeeping (`IGNORED`). A model's `name` (its path) may differ
    when both sides identify the weights by hash: the same model moved is the same model."""
    diff = _first_difference(old, new, "")
    if diff is not None:
        field, a, b = diff
        raise MixsdError(f"incompatible provenance: '{field}' is {_short(a)} vs {_short(b)}")


def _first_difference(a: Any, b: Any, prefix: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if (not prefix and key in IGNORED) or _moved_model(prefix + key, a, b):
                continue
            # An absent field and a null one mean the same: "not set".
            diff = _first_difference(a.get(key), b.get(key), prefix + key + ".")
            if diff is not None:
                return diff
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


def _moved_model(field: str, a: dict, b: dict) -> bool:
    return field == "model.name" and bool(a.get("weights_sha256")) and bool(b.get("weights_sha256"))


def _short(value: Any, width: int = 60) -> str:
    text = "(not set)" if value is None else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
