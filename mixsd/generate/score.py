"""Teacher-forced scoring: the log-probability a model gives each token of a known continuation.

One function for every caller: the transformers engine (the other conditional of a lam 0/1
sequence), the target sets' per-token NLL and the Fisher's log-likelihoods. It goes through the
model's own forward, so whatever the architecture does to its logits (Cohere's logit scale,
Granite's logit scaling, Gemma's final soft-capping) is what gets scored, exactly as in decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mixsd.generate.core import token_logprobs

MAX_TOKENS = 16384  # padded input tokens per forward (activations)
MAX_LOGITS = 4096  # logit rows per forward: bounds the [rows, vocab] logits


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Left-padded ids `[n, L]`, 0/1 attention mask `[n, L]` and position ids `[n, L]` (0 at
    each row's first real token, so padding changes no row's numbers)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :] = torch.tensor(list(r))
            mask[i, width - len(r) :] = 1
    pos = (mask.cumsum(1) - 1).clamp_(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def score_tokens(
    model,
    items: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int = 0,
    max_tokens: int = MAX_TOKENS,
    max_logits: int = MAX_LOGITS,
) -> list[torch.Tensor]:
    """log p(target_t | context + target_<t) for each (context, target) pair: `[len(target)]`
    float32 tensors (raw, T=1), in the order of `items`.

    Pairs are sorted by length and batched left-padded (explicit position ids), at most
    `max_tokens` padded tokens and `max_logits` logit rows per forward; `use_cache=False`, and
    `logits_to_keep` asks only for the positions that predict a target token. Gradients flow when
    the caller has them on (the Fisher); callers that only read wrap it in `torch.no_grad()`.
    Contexts must be non-empty; an empty target scores as an empty tensor.
    """
    device = next(model.parameters()).device
    out: list[torch.Tensor] = [torch.zeros(0)] * len(items)
    if any(not c for c, t in items if t):
        raise ValueError("score_tokens: the first target token needs a non-empty context")
    order = sorted(
        (i for i, (_, t) in enumerate(items) if t),
        key=lambda i: len(items[i][0]) + len(items[i][1]),
    )
    while order:
        group, width, keep = [], 0, 0
        for i in order:
            c, t = items[i]
            w, k = max(width, len(c) + len(t) - 1), max(keep, len(t))
            if group and ((len(group) + 1) * w > max_tokens or (len(group) + 1) * k > max_logits):
                break
            group.append(i)
            width, keep = w, k
        order = order[len(group) :]
        # The last target token is never an input: it is only predicted.
        rows = [list(items[i][0]) + list(items[i][1][:-1]) for i in group]
        ids, mask, pos = left_pad(rows, pad_id, device)
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=False,
            logits_to_keep=keep,
        ).logits  # [B, keep, V]: the last `keep` positions of every row
        for b, i in enumerate(group):
            target = torch.tensor(list(items[i][1]), device=logits.device)
            out[i] = token_logprobs(logits[b, keep - len(target) :], target)
    return out
