"""Where a command writes: one check of its output path, run before any work.

Every command that writes (generate, targets merge/export/from-references, train, evaluate, the
data and model builders) calls `check_output` first, so that a wrong `--out` costs a second and
one line, never a traceback after an hour, and never damages what is there: an input, a target
set (its manifest is its table of contents), Parquet files a reader would mix in, or a folder
that belongs to something else.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from mixsd.errors import MixsdError

MANIFEST = ".manifest.json"  # a target set's manifest (targets.schema imports it from here)

# What marks a folder as an output of each kind: a rerun may resume or rewrite such a folder.
KINDS = {
    "target set": (MANIFEST,),
    "run": ("config.yaml", "checkpoints", "metrics.jsonl"),
    "report": ("metrics.json", "report.md", "predictions.jsonl"),
    "compare": ("compare.json", "compare.md"),
    "corpus": ("train.jsonl",),
    "model": ("config.json",),
    "toy model": ("config.json", "world"),  # `world/` is written first: a killed build resumes
    "file": (),
}


def check_output(
    path: str | Path, kind: str, inputs: Iterable[str | Path | None] = (), option: str = "--out"
) -> Path:
    """Refuse (MixsdError, one line) an output `path` of `kind` (see `KINDS`) that is one of
    `inputs` or lies inside a target set; an existing file where a folder is expected
    (or a folder where a file is); a folder with Parquet parts but no manifest; a non-empty folder
    that is not an output of the same kind; a place that cannot be written. Returns `path`."""
    out = Path(path)
    where = out.resolve()
    for folder in (where, *where.parents):
        if (folder / MANIFEST).is_file() and not (folder == where and kind == "target set"):
            raise MixsdError(
                f"{option} {out}: inside the target set {folder}: write somewhere else"
            )
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if where == source:
            raise MixsdError(f"{option} {out}: is also an input ({given}): choose another path")
    if kind == "file":
        if out.is_dir():
            raise MixsdError(f"{option} {out}: is a folder; expected a file path")
    elif out.exists() and not out.is_dir():
        raise MixsdError(f"{option} {out}: exists and is a file; expected a folder ({kind})")
    elif out.is_dir():
        _check_folder(out, kind, option)
    _check_writable(out, option)
    return out


def _check_folder(out: Path, kind: str, option: str) -> None:
    entries = sorted(p.name for p in out.iterdir())
    if not entries or any(name in entries for name in KINDS[kind]):
        return  # empty, or an output of this kind (a resumable set or run, a report rewritten)
    parts = next(iter([*out.glob("*.parquet"), *out.glob("lam=*/*.parquet")]), None)
    if parts is not None:
        raise MixsdError(
            f"{option} {out}: holds Parquet files but no {MANIFEST} (e.g. {parts.name}): not a "
            "target set; readers would mix them in: remove them or choose another folder"
        )
    raise MixsdError(
        f"{option} {out}: not empty and not a {kind} (holds {entries[0]}"
        f"{', ...' if len(entries) > 1 else ''}): choose a new or empty folder"
    )


def _check_writable(out: Path, option: str) -> None:
    """Try it: create (and remove) a temporary folder where the output will go."""
    here = out if out.is_dir() else out.parent
    while not here.exists():
        here = here.parent
    if not here.is_dir():
        raise MixsdError(f"{option} {out}: cannot be created: {here} is a file")
    try:
        Path(tempfile.mkdtemp(prefix=".mixsd-write-check-", dir=here)).rmdir()
    except OSError as e:
        raise MixsdError(f"{option} {out}: cannot write in {here} ({e.strerror})") from None
