"""The engine API: what a runner hands an engine (`Job`) and what comes back (`Result`).

Every engine (transformers, vLLM) takes `Sequence[Job]` and streams `Result`s as sequences finish,
in any order; `tag` is the caller's and comes back untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINISH_REASONS = ("stop", "length", "prompt_too_long")


@dataclass(frozen=True)
class Job:
    """One sequence to decode.

    key: `core.sequence_key(...)`, the only source of randomness; lam: P(naive) per step;
    naive_ids / expert_ids: the two prompts (expert_ids None = closed-book, only valid at lam=1);
    prefix: tokens already agreed at output positions 0..len(prefix)-1 (a resumed decode): the engine
    continues at absolute position len(prefix) with the same keys, so resuming equals never stopping.
    """

    key: int
    lam: float
    naive_ids: list[int]
    expert_ids: list[int] | None
    tag: Any
    prefix: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.expert_ids is None and self.lam < 1.0:
            raise ValueError(f"lam={self.lam} needs expert_ids (only lam=1 decodes without them)")


@dataclass
class Result:
    """A finished sequence. Lists cover only the tokens this job decoded (output positions
    len(prefix) onward; the caller owns the prefix's part). target_ids include the stop token when
    finish_reason == 'stop'; source is 1 where the naive conditional picked the token; the
    log-probs are raw (T=1) log p(token | context) of each conditional, or None when not computed
    (other_logprobs off on a lam in {0, 1} job, or no expert prompt)."""

    tag: Any
    target_ids: list[int]
    source: list[int]
    expert_logprob: list[float] | None
    naive_logprob: list[float] | None
    finish_reason: str
