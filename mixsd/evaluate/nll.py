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
    """NLL in nats of each target token given its prompt and the target tokens before it.

    One left-padded forward for the batch (explicit position ids, so padding changes nothing);
    only the last `max(len(target)) + 1` positions get logits. Returns `[len(target_b)]` float32
    arrays, one per row. Targets must be non-empty.
    """
    import torch

    device = next(model.parameters()).device
    seqs = [list(p) + list(t) for p, t in zip(prompts, targets, strict=True)]
    width = max(map(len, seqs))
    keep = max(map(len, targets)) + 1
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, width - len(s) :] = torch.tensor(s)
        mask[b, width - len(s) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,
        ).logits  # [B, keep, V]: predictions for the last `keep` positions
    out = []
    for b, t in enumerate(targets):
        n = len(t)
        rows = logits[b, keep - 1 - n : keep - 1].float()  # [n, V], each predicts target[i]
        logp = torch.log_softmax(rows, dim=-1)
        picked = logp.gather(-1, torch.tensor(t, device=logp.device)[:, None])[:, 0]
        out.append((-picked).cpu().numpy().astype(np.float32))
    return out


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
    from tqdm import tqdm

    from mixsd.targets.reader import iter_rows

    rows = tqdm(iter_rows(root, columns=COLUMNS), desc=f"nll {Path(root).name}", unit="row")
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
