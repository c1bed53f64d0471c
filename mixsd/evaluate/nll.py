"""Per-token NLL of target sets under the base model: how surprising is each target to the model
that will be trained on it? (MixSD's claim: its targets sit far lower than SFT references.)

Teacher-forced from the STORED `prompt_ids` + `target_ids` (token ids are the truth: nothing is
re-tokenised), streaming the set in batches; the per-token values are kept as float32 for exact
medians and CDFs (4 bytes per target token).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

COLUMNS = ["lam", "kind", "prompt_ids", "target_ids"]


def token_nll(model, prompts: list[list[int]], targets: list[list[int]]) -> list[np.ndarray]:
    """NLL in nats of each target token given its prompt and the target tokens before it:
    `[len(target_b)]` float32 arrays, one per row, from the one teacher-forced scorer
    (`mixsd.modeling.score_tokens`: the model's own forward, batched, logits only where a
    target token is predicted)."""
    import torch

    from mixsd.modeling import score_tokens

    with torch.no_grad():
        logps = score_tokens(model, list(zip(prompts, targets, strict=True)))
    return [(-lp).cpu().numpy().astype(np.float32) for lp in logps]


def label_of(row: dict) -> str:
    """`sft` for reference targets, `λ=<lam>` for MixSD targets."""
    return "sft" if row["kind"] == "sft" else f"λ={row['lam']:g}"


def rows_nll(
    model, rows: Iterable[dict], batch_size: int, limit: int = 0, buffer: int = 16
) -> dict[str, np.ndarray]:
    """Per-token NLL of every row's target, concatenated per label (`label_of`: sft first, then
    by λ), streaming.

    Rows arrive in any order; `batch_size * buffer` of them are held at a time and sorted by length
    so batches waste little on padding. Rows with no target (`prompt_too_long`) are skipped;
    `limit` > 0 keeps the first `limit` rows of each label.
    """
    values: dict[str, list[np.ndarray]] = {}
    counts: dict[str, int] = {}
    pending: list[tuple[str, list[int], list[int]]] = []

    def flush() -> None:
        pending.sort(key=lambda r: len(r[1]) + len(r[2]))
        for i in range(0, len(pending), batch_size):
            chunk = pending[i : i + batch_size]
            nlls = token_nll(model, [c[1] for c in chunk], [c[2] for c in chunk])
            for (label, _, _), v in zip(chunk, nlls, strict=True):
                values.setdefault(label, []).append(v)
        pending.clear()

    for row in rows:
        if not row["target_ids"]:
            continue
        label = label_of(row)
        if limit and counts.get(label, 0) >= limit:
            continue
        counts[label] = counts.get(label, 0) + 1
        pending.append((label, row["prompt_ids"], row["target_ids"]))
        if len(pending) >= batch_size * buffer:
            flush()
    flush()
    order = sorted(values, key=lambda label: (0, 0.0) if label == "sft" else (1, float(label[2:])))
    return {label: np.concatenate(values[label]) for label in order}


def target_set_nll(
    model, root: str | Path, batch_size: int, limit: int = 0
) -> dict[str, np.ndarray]:
    """`rows_nll` over a target set read in streaming batches."""
    from mixsd.progress import track
    from mixsd.targets.reader import iter_rows

    rows = track(iter_rows(root, columns=COLUMNS), f"nll {Path(root).name}", "row")
    return rows_nll(model, rows, batch_size, limit)


def summarize(values: np.ndarray) -> dict:
    """Token count, mean, median and 90th percentile of per-token NLLs (nats)."""
    return {
        "tokens": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p90": float(np.quantile(values, 0.9)),
    }


def ecdf(values: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF `(x, F(x))`, thinned to at most `points` steps for plotting."""
    x = np.sort(values)
    y = np.arange(1, x.size + 1) / x.size
    if x.size > points:
        idx = np.linspace(0, x.size - 1, points).round().astype(int)
        x, y = x[idx], y[idx]
    return x, y
