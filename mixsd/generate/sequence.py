"""One sequence being decoded, as both engines keep it, and the rules that turn it into a `Result`.

Both engines (transformers, vLLM) open a `Decoding` per `Job`, append the agreed tokens and each
conditional's raw log-probs as they come, score the other conditional of a lam 0/1 sequence
afterwards (`wants_other`, `other_prompt`), and end with `result`: so the output limit, the "other prompt" a
scoring pass reads and the None conventions of `Result` are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixsd.generate.core import COIN, Role, keyed_uniforms, naive_picked, solo_role
from mixsd.generate.jobs import Job, Result


@dataclass
class Decoding:
    """A job being decoded: the tokens agreed so far (output positions 0..) and, per conditional,
    their raw log-probs.

    solo: the one conditional a lam 0/1 job decodes (None: mixed, both); limit: the output
    positions the job may reach, `max_new_tokens` or what `max_model_len` leaves after the longer
    prompt (that row reaches the model's length first); stalls: the vLLM engine's divergences in
    a row at the same position.
    """

    job: Job
    solo: Role | None
    limit: int
    tokens: list[int] = field(default_factory=list)
    expert_logprob: list[float] = field(default_factory=list)
    naive_logprob: list[float] = field(default_factory=list)
    stalls: int = 0

    @classmethod
    def open(cls, job: Job, max_new_tokens: int, max_model_len: int) -> Decoding:
        return cls(job, solo_role(job.lam), min(max_new_tokens, max_model_len - longest(job)))

    def refusal(self, max_model_len: int) -> str | None:
        """Why the job cannot decode a single token ('prompt_too_long', 'length'), or None."""
        if longest(self.job) + 1 > max_model_len:
            return "prompt_too_long"
        return "length" if self.limit <= 0 else None

    def roles(self) -> list[Role]:
        """The conditionals decoded (expert first): both, or the solo one."""
        return list(Role) if self.solo is None else [self.solo]

    def prompt(self, role: Role) -> list[int] | None:
        return self.job.expert_ids if role == Role.EXPERT else self.job.naive_ids

    def context(self, role: Role) -> list[int]:
        """The prompt of `role` followed by the agreed tokens: where decoding continues."""
        return list(self.prompt(role)) + self.tokens

    def logprobs(self, role: Role) -> list[float]:
        return self.expert_logprob if role == Role.EXPERT else self.naive_logprob

    def wants_other(self, other_logprobs: bool) -> bool:
        """Does this sequence still owe the other conditional's log-probs: a lam 0/1 job with
        tokens and `other_logprobs` on (scored only where `other_prompt` has a prompt)."""
        return self.solo is not None and other_logprobs and bool(self.tokens)

    def other_prompt(self) -> list[int] | None:
        """The prompt of the conditional a lam 0/1 job did not decode, for its teacher-forced
        pass over `tokens`; None when there is none (a closed-book job has no expert prompt)."""
        other = self.prompt(Role.NAIVE if self.solo == Role.EXPERT else Role.EXPERT)
        return None if other is None else list(other)

    def add_other(self, logprobs: list[float]) -> None:
        """The other conditional's log-probs of `tokens`, from its scoring pass."""
        self.logprobs(Role.NAIVE if self.solo == Role.EXPERT else Role.EXPERT).extend(logprobs)

    def result(self, reason: str, other_logprobs: bool) -> Result:
        """The finished sequence. `source` is recomputed from the keyed coins (the rule every
        engine decodes with), so it needs no per-step bookkeeping; a conditional's log-probs are
        None when not computed: no expert prompt, or the other conditional of a lam 0/1 job with
        `other_logprobs` off."""
        job, n = self.job, len(self.tokens)
        coins = keyed_uniforms(np.full(n, job.key, dtype=np.uint64), np.arange(n), COIN)
        other = other_logprobs or self.solo is None
        return Result(
            job.tag,
            self.tokens,
            naive_picked(coins, job.lam).astype(int).tolist(),
            self.expert_logprob
            if job.expert_ids is not None and (self.solo != Role.NAIVE or other)
            else None,
            self.naive_logprob if self.solo != Role.EXPERT or other else None,
            reason,
        )


def longest(job: Job) -> int:
    """The longer of the job's prompts (the expert's when there is one)."""
    return max(len(job.naive_ids), len(job.expert_ids or ()))
