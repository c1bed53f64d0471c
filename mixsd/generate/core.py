"""The mixing core: pure functions that every engine calls, so engines agree token for token.

Randomness is keyed, not stateful. Every uniform is a pure function of
(seed, example id, sample, attempt, absolute output position, purpose):

    key = sequence_key(seed, example_id, sample, attempt)        # once per sequence, 63 bits
    u   = keyed_uniforms(keys, positions, purpose)               # per step, vectorised

so resuming, sharding, reordering rows, or running a different engine cannot change a target.
lambda is *not* part of the key: one sweep shares its coins across lambda (common random numbers),
and the steps that pick the naive conditional at lambda=0.3 are a subset of those at lambda=0.5.

One decoding step of a batch of pairs (`mix_step`):

    coin u_c < lambda  -> naive row, else expert row        (per sequence)
    token = choose_tokens(picked logits, u_t, sampling)      (greedy at T=0, else inverse CDF)

and the caller appends the token to both the expert and the naive context.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

COIN = 0  # purpose: which conditional this step samples from
TOKEN = 1  # purpose: which token the picked conditional emits


class Role(enum.IntEnum):
    """Which conditional: the expert (knowledge in its context) or the naive one. NAIVE is 1, as
    in target sets' `source` column (1 = the naive conditional picked the token)."""

    EXPERT = 0
    NAIVE = 1


def naive_picked(coin_u, lam):
    """The coin rule: the naive conditional samples a step iff its COIN uniform is below lam.

    coin_u, lam: arrays, tensors or floats that broadcast (`[n]` and `[n]` or scalar); returns
    their bool comparison. Every engine calls this, so all agree on every step's conditional."""
    return coin_u < lam


def solo_role(lam: float) -> Role | None:
    """The one conditional a lam 0 (expert) or lam 1 (naive) job decodes; None for a mixed job."""
    return Role.EXPERT if lam == 0.0 else Role.NAIVE if lam == 1.0 else None


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Sampling:
    """Token-choice settings shared by every step of a run.

    temperature 0 means greedy (argmax). top_k 0 disables top-k; top_p 1.0 disables nucleus.
    """

    temperature: float = 0.6
    top_k: int = 64
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def sequence_key(seed: int, example_id: str, sample: int, attempt: int) -> int:
    """A 63-bit key for one decoded sequence (fits vLLM's signed 64-bit `extra_args`)."""
    text = f"mixsd-v1\x1f{seed}\x1f{example_id}\x1f{sample}\x1f{attempt}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic is numpy's uint64 behaviour)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def keyed_uniforms(keys, positions, purpose: int) -> np.ndarray:
    """Uniforms in [0, 1) for each (key, absolute position), float64 `[n]`.

    keys: `[n]` sequence keys (ints < 2**63); positions: `[n]` or scalar output index t (0-based).
    The same (key, position, purpose) always gives the same number, on every machine.
    """
    k = np.asarray(keys, dtype=np.uint64)
    t = np.asarray(positions, dtype=np.uint64)
    counter = t * np.uint64(2) + np.uint64(purpose) + np.uint64(1)
    with np.errstate(over="ignore"):
        x = _splitmix64(_splitmix64(k) + counter * _GOLDEN)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def choose_tokens(logits: torch.Tensor, u: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Pick one token per row from raw logits `[batch, vocab]` with uniforms `u` `[batch]`.

    T=0: argmax. Otherwise softmax(logits / T) restricted to the top-k, then to the smallest prefix
    of the (sorted) top tokens whose mass reaches top_p, and inverse-CDF sampling with `u`. The math
    runs in float64 so that engines feeding the same logits pick the same token. Returns `[batch]`
    int64 token ids.

    Ties (exactly equal logits: common in bf16) are broken by token id, lowest first, everywhere:
    argmax takes the lowest id, top-k keeps the lowest ids at its boundary, and the sorted order
    the top-p prefix and the inverse CDF walk is (logit descending, id ascending); plain sampling
    walks ids ascending. A sort's own order among equal values (it differs between devices, batch
    shapes and libraries) never decides a token, so every engine and batch picks the same one.
    """
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)  # the first (lowest-id) maximum, as torch documents
    # select in the logits' own dtype (x / T is monotonic: the same tokens in the same order),
    # then scale only the survivors in float64: a [batch, vocab] float64 copy costs more than all
    # the rest at a real vocabulary
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        values, ids = ranked_top_k(logits, sampling.top_k)
    elif sampling.top_p < 1.0:  # stable: equal logits keep their (ascending) id order
        values, ids = logits.sort(dim=-1, descending=True, stable=True)
    else:  # plain sampling needs no sort: inverse CDF works in any fixed order
        values, ids = logits, None
    probs = torch.softmax(values.double() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        # keep token j while the mass strictly before it is < top_p (the first token always stays)
        before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(before >= sampling.top_p, 0.0)
    cdf = probs.cumsum(dim=-1)
    target = (u.to(cdf) * cdf[:, -1]).unsqueeze(-1)
    pick = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
    # a zero-probability slot can never be hit: searchsorted(right=True) skips flat cdf stretches
    picked = pick.squeeze(-1)
    return picked if ids is None else ids.gather(-1, pick).squeeze(-1)


def ranked_top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` best tokens of each row of `logits` `[batch, vocab]` as (values, ids) `[batch, k]`,
    ordered by logit descending then id ascending; at the boundary, equal logits keep the lowest
    ids. (`topk` alone leaves both choices to its implementation.)"""
    kth = logits.topk(k, dim=-1).values[:, -1:]
    above = logits > kth
    tied = logits == kth
    need = k - above.sum(dim=-1, keepdim=True)
    keep = above | (tied & (tied.cumsum(dim=-1) <= need))
    ids = keep.nonzero()[:, 1].view(-1, k)  # row-major: each row's ids, ascending
    values, order = logits.gather(-1, ids).sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order)


def mix_step(
    expert_logits: torch.Tensor,
    naive_logits: torch.Tensor,
    coin_u: torch.Tensor,
    token_u: torch.Tensor,
    lam: torch.Tensor,
    sampling: Sampling,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One MixSD step for a batch of pairs.

    expert_logits, naive_logits: `[batch, vocab]` raw logits of the two conditionals at the same
    mixed prefix; coin_u, token_u: `[batch]` keyed uniforms (purposes COIN and TOKEN); lam: `[batch]`
    P(naive) per row. Returns (tokens `[batch]` int64, source `[batch]` bool, True = naive picked).
    """
    source = naive_picked(coin_u.to(lam), lam)
    picked = torch.where(source.to(expert_logits.device).unsqueeze(-1), naive_logits, expert_logits)
    return choose_tokens(picked, token_u.to(picked.device), sampling), source


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under the raw (T=1, unfiltered) distribution: logits `[batch, vocab]`,
    tokens `[batch]` -> `[batch]` float32. This is what target sets record for each conditional."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
