"""Synthetic target rows and provenance for the target-set tests."""

from __future__ import annotations

import numpy as np

PROVENANCE = {
    "kind": "mixsd",
    "model": {"name": "tiny", "revision": None, "weights_sha256": "sha256:" + "a" * 64},
    "tokenizer": "sha256:" + "b" * 64,
    "templates": {"fact": {"prefix": "P", "transition": "T"}},
    "sampling": {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 16},
    "seed": 0,
    "lams": [0.3, 1.0],
    "engine": {"name": "hf", "version": "0.1.0"},
    "input": "sha256:" + "c" * 64,
}


def make_rows(n: int, lam: float | None = 0.3, start: int = 0, seed: int = 0) -> list[dict]:
    """`n` valid rows ex<start>..: varied lengths, some null log-probs, all finish reasons."""
    rng = np.random.default_rng(seed)
    kind = "sft" if lam is None else "mixsd"
    rows = []
    for i in range(start, start + n):
        t = int(rng.integers(0, 12)) if i % 5 else 0
        ids = [int(x) for x in rng.integers(0, 500, t)]
        logprob = [float(x) for x in -rng.integers(0, 64, t) / 8.0]  # exact in float32
        rows.append(
            {
                "id": f"ex{i}",
                "sample": i % 2,
                "attempt": i % 3,
                "lam": lam,
                "kind": kind,
                "prompt_ids": [int(x) for x in rng.integers(0, 500, 7)],
                "expert_prompt_ids": [int(x) for x in rng.integers(0, 500, 11)],
                "target_ids": ids,
                "target_text": f"text ü {i}",
                "source": None if kind == "sft" else [int(x) for x in rng.integers(0, 2, t)],
                "expert_logprob": logprob if i % 2 else None,
                "naive_logprob": logprob if i % 4 == 1 else None,
                "finish_reason": ("stop", "length", "prompt_too_long")[i % 3],
                "correct": (True, False, None)[i % 3] if kind == "mixsd" else True,
                "reference": f"ref {i}",
                "answer": None if i % 7 == 0 else str(i),
            }
        )
    return rows
