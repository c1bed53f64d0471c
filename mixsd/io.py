"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Every writer of a small file that something later parses goes through here: input sets
(`data.io`), target-set manifests (`targets.manifest`), the trainer's `config.yaml`, `latest`
pointer and metrics (`train.checkpoint`), evaluation's predictions and report (`evaluate`).
The content goes to a hidden temporary name beside the file (`.NAME.tmp-PID`, so two processes
never share one), is fsync'd, renamed over the file, and the rename is made durable by fsyncing
the folder; a failure part-way removes the temporary file and leaves the old one as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """An open file whose content replaces `path` when the block ends without an exception
    (text: UTF-8, "\\n" line ends). The parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace `path` with `data` (UTF-8 text or bytes) atomically (see `atomic_file`)."""
    with atomic_file(path, binary=isinstance(data, bytes)) as f:
        f.write(data)


def fsync_dir(path: str | Path) -> None:
    """Make a rename durable: fsync the folder that holds the new name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
