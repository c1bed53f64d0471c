"""The engine API: what a runner hands an engine (`Job`) and what comes back (`Result`).

Every engine (transformers, vLLM) takes `Sequence[Job]` and streams `Result`s as sequences finish,
in any order; `tag` is the caller's and comes back untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """One sequence to decode.

    key: `core.sequence_key(...)`, the only source of randomness; lam: P(naive) per step;
    naive_ids / expert_ids: the two prompts (expert_ids None = closed-book, only valid at lam=1).
    """

    key: int
    lam: float
    naive_ids: list[int]
    expert_ids: list[int] | None
    tag: Any

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.expert_ids is None and self.lam < 1.0:
            raise ValueError(f"lam={self.lam} needs expert_ids (only lam=1 decodes without them)")


@dataclass
class Result:
    """A finished sequence. target_ids include the stop token when finish_reason == 'stop'
    (one of `targets.schema.FINISH_REASONS`); source is 1 where the naive conditional picked the token; the
    log-probs are raw (T=1) log p(token | context) of each conditional, or None when not computed
    (other_logprobs off on a lam in {0, 1} job, or no expert prompt)."""

    tag: Any
    target_ids: list[int]
    source: list[int]
    expert_logprob: list[float] | None
    naive_logprob: list[float] | None
    finish_reason: str
