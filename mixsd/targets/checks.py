"""Row checks on a RecordBatch, vectorised: the writer refuses such rows, validate reports them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixsd.targets.schema import FINISH_REASONS, KINDS, REQUIRED


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def batch_problems(batch: pa.RecordBatch, offset: int = 0) -> list[str]:
    """One line per kind of problem in `batch` (rows `offset`...): the first bad row and how many.

    Checks: required columns non-null; kind and finish_reason from their vocabularies; λ null
    exactly for 'sft' rows and in [0, 1] otherwise; 'mixsd' rows carry `source`; `source` and the
    log-prob lists (when present) have one entry per target token; `source` holds only 0 and 1.
    """
    problems: list[str] = []
    ids = batch.column("id")

    def report(mask: np.ndarray, what: Callable[[int], str]) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
            problems.append(f"row {offset + i} (id {ids[i].as_py()!r}): {what(i)}{more}")

    for name in REQUIRED:
        report(_np(batch.column(name).is_null()), lambda i, n=name: f"{n} is null")
    kind, finish, lam = batch.column("kind"), batch.column("finish_reason"), batch.column("lam")
    report(
        _np(pc.invert(pc.is_in(kind, pa.array(KINDS)))) & ~_np(kind.is_null()),
        lambda i: f"kind {kind[i].as_py()!r} is not one of {', '.join(KINDS)}",
    )
    report(
        _np(pc.invert(pc.is_in(finish, pa.array(FINISH_REASONS)))) & ~_np(finish.is_null()),
        lambda i: f"finish_reason {finish[i].as_py()!r} is not one of {', '.join(FINISH_REASONS)}",
    )
    for name in ("sample", "attempt"):
        col = batch.column(name)
        report(_np(pc.fill_null(pc.less(col, 0), False)), lambda i, n=name: f"{n} is negative")
    sft = _np(pc.fill_null(pc.equal(kind, "sft"), False))
    lam_null = _np(lam.is_null())
    lam_v = _np(lam.fill_null(0.5))
    report(sft & ~lam_null, lambda i: f"lam {lam[i].as_py()} on an 'sft' row (expected null)")
    report(~sft & lam_null, lambda i: "lam is null on a 'mixsd' row (expected a value in [0, 1])")
    report(~((lam_v >= 0) & (lam_v <= 1)), lambda i: f"lam {lam[i].as_py()} is outside [0, 1]")

    n_target = _np(pc.list_value_length(batch.column("target_ids")).fill_null(0))
    source = batch.column("source")
    report(~sft & _np(source.is_null()), lambda i: "source is null on a 'mixsd' row")
    for name in ("source", "expert_logprob", "naive_logprob"):
        n = _np(pc.list_value_length(batch.column(name)).fill_null(-1))
        report(
            (n >= 0) & (n != n_target),
            lambda i, n=n, name=name: f"len({name})={n[i]} but len(target_ids)={n_target[i]}",
        )
    values = _np(pc.list_flatten(source))
    if values.size and values.max() > 1:
        rows = _np(pc.list_parent_indices(source))[values > 1]
        mask = np.zeros(len(batch), dtype=bool)
        mask[rows] = True
        report(mask, lambda i: "source holds a value other than 0 (expert) or 1 (naive)")
    return problems
