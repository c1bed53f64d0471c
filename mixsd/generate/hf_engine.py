"""The transformers engine: batched lockstep MixSD decoding with KV caches and continuous batching.

The live batch holds S sequences in R rows: a mixed sequence (0 < lam < 1) owns two rows (expert,
naive), a single-conditional one (lam 0: expert only, lam 1: naive only) owns one. All rows share
one left-padded `DynamicCache` `[R, heads, L, head_dim]` (layers that grow in place, `hf_batch`),
a 0/1 attention mask `[R, L]` and explicit position ids, so rows of different lengths advance
together in one forward per step:

    logits [R, V] -> core.mix_step(logits[e_idx], logits[n_idx]) [S, V] -> token [S]
    -> appended to every row of its sequence; core.token_logprobs on all R rows (raw, fp32)

Finished sequences leave (their rows are selected out of the cache, and leading all-padding
columns trimmed); queued jobs join once a quarter of the slots is free: they are prefilled as
their own left-padded batch and concatenated into the cache. A single-conditional sequence gets
the other conditional's log-probs afterwards from one batched teacher-forced pass
(`mixsd.modeling.score_tokens`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

from mixsd.errors import MixsdError
from mixsd.generate.core import (
    COIN,
    TOKEN,
    Role,
    Sampling,
    keyed_uniforms,
    mix_step,
    solo_role,
    token_logprobs,
)
from mixsd.generate.hf_batch import GrowLayer, LiveBatch, Owner
from mixsd.generate.jobs import Job, Result
from mixsd.modeling import left_pad, score_tokens

_PREFILL_TOKENS = 16384  # prefill: padded tokens per forward
_REFILL = 0.25  # admit queued jobs once this fraction of the slots is free (prefill in groups)


@dataclass
class _Seq:
    job: Job
    mode: Role | None  # the one conditional of a lam 0/1 job; None: mixed
    prompt_len: (
        int  # the longer prompt (expert's when there is one): it reaches max_model_len first
    )
    tokens: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    elp: list[float] = field(default_factory=list)
    nlp: list[float] = field(default_factory=list)

    def rows(self) -> list[tuple[list[int], bool, bool]]:
        """This sequence's cache rows: (prompt + prefix ids, is expert row, is naive row)."""
        ex = list(self.job.expert_ids or []) + list(self.job.prefix)
        nv = list(self.job.naive_ids) + list(self.job.prefix)
        if self.mode is None:
            return [(ex, True, False), (nv, False, True)]
        return [(ex, True, True)] if self.mode == Role.EXPERT else [(nv, True, True)]


class HFEngine:
    """Decode `Job`s with a transformers causal LM (full-attention layers, e.g. Llama, Qwen).

    stop_ids: token ids that end a sequence (kept in the target); batch_size: live sequences (a
    mixed one costs two rows); max_new_tokens counts absolute output positions (prefix included);
    max_model_len bounds prompt + output of the longer row; other_logprobs: score the other
    conditional of lam in {0, 1} jobs afterwards (else None).
    """

    def __init__(
        self,
        model,
        sampling: Sampling,
        stop_ids: Sequence[int],
        batch_size: int = 32,
        max_new_tokens: int = 512,
        max_model_len: int = 4096,
        other_logprobs: bool = True,
        pad_id: int = 0,
    ):
        from transformers import DynamicCache

        self.model, self.sampling = model, sampling
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.max_model_len, self.other_logprobs, self.pad_id = max_model_len, other_logprobs, pad_id
        self.device = next(model.parameters()).device
        layers = DynamicCache(config=model.config).layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            raise MixsdError(
                f"{model.name_or_path}: the hf engine needs full-attention layers only "
                "(this model has sliding-window or linear-attention layers); use --engine vllm"
            )
        self._n_layers = len(layers)
        self.stats: dict[str, int] = {}  # engine counters for the set's stats (vLLM: divergences)

    def _new_cache(self):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        cache.layers = [GrowLayer() for _ in range(self._n_layers)]
        return cache

    def generate(self, jobs: Sequence[Job]) -> Iterator[Result]:
        """Decode all `jobs`; yields each `Result` as its sequence finishes (any order)."""
        queue = deque(jobs)
        live: list[_Seq] = []
        pending: list[tuple[_Seq, str]] = []  # lam 0/1 sequences awaiting the other log-probs
        state = logits = None
        refill = max(1, int(self.batch_size * _REFILL))
        with torch.inference_mode():
            while queue or live:
                if queue and (len(live) == 0 or self.batch_size - len(live) >= refill):
                    new = []
                    while queue and len(live) + len(new) < self.batch_size:
                        seq = self._open(queue.popleft())
                        if seq.prompt_len + len(seq.job.prefix) + 1 > self.max_model_len:
                            yield self._result(seq, "prompt_too_long")
                        elif len(seq.job.prefix) >= self.max_new_tokens:
                            yield self._result(seq, "length")
                        else:
                            new.append(seq)
                    if new:
                        state, logits = self._admit(state, logits, new)
                        live += new
                        state.index(live)
                if not live:
                    continue
                done = self._step(state, live, logits)
                if done:
                    for seq, reason in done:
                        if seq.mode is not None and self.other_logprobs and seq.tokens:
                            pending.append((seq, reason))
                        else:
                            yield self._result(seq, reason)
                    gone = {id(s) for s, _ in done}
                    live = [s for s in live if id(s) not in gone]
                    if live:
                        state.evict(gone)
                        state.index(live)
                    else:
                        state = logits = None
                if len(pending) >= self.batch_size:
                    yield from self._finish_pending(pending)
                    pending = []
                if live:
                    logits = self._forward(state, state.last_tokens)
            # Not only when the loop drains: the live batch can empty while the queue still holds
            # jobs that are all too long, and the loop ends without another decoding step.
            yield from self._finish_pending(pending)

    def _open(self, job: Job) -> _Seq:
        lens = [len(job.naive_ids)] + ([len(job.expert_ids)] if job.expert_ids is not None else [])
        return _Seq(job, solo_role(job.lam), max(lens))

    def _result(self, seq: _Seq, reason: str) -> Result:
        has_expert = seq.job.expert_ids is not None
        other = self.other_logprobs or seq.mode is None
        return Result(
            seq.job.tag,
            seq.tokens,
            seq.source,
            seq.elp if has_expert and (seq.mode != Role.NAIVE or other) else None,
            seq.nlp if seq.mode != Role.EXPERT or other else None,
            reason,
        )

    def _admit(self, state, logits, new: list[_Seq]):
        """Prefill the rows of `new` and append them to the live batch. Rows are sorted by length
        and prefilled in groups of similar length, so short naive prompts are not padded to the
        long expert ones."""
        rows = sorted(((ids, Owner(s, e, n)) for s in new for ids, e, n in s.rows()),
                      key=lambda r: len(r[0]))  # fmt: skip
        parts = [] if logits is None else [logits]
        while rows:
            n, first = 1, len(rows[0][0])
            while n < len(rows) and len(rows[n][0]) <= first * 1.25 + 8:
                if (n + 1) * len(rows[n][0]) > _PREFILL_TOKENS:
                    break
                n += 1
            group, rows = rows[:n], rows[n:]
            ids, mask, pos = left_pad([r[0] for r in group], self.pad_id, self.device)
            cache = self._new_cache()
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                use_cache=True, logits_to_keep=1,
            )  # fmt: skip
            parts.append(out.logits[:, -1])
            owners = [owner for _, owner in group]
            if state is None:
                state = LiveBatch(cache, mask, mask.sum(1), owners)
            else:
                state.append(cache, mask, mask.sum(1), owners)
        return state, torch.cat(parts)

    def _forward(self, state: LiveBatch, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row `[R]`; returns next-token logits `[R, V]`."""
        state.mask = F.pad(state.mask, (0, 1), value=1)
        out = self.model(
            input_ids=tokens.unsqueeze(1), attention_mask=state.mask,
            position_ids=state.pos.unsqueeze(1), past_key_values=state.cache,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        state.pos += 1
        return out.logits[:, -1]

    def _step(self, state: LiveBatch, live: list[_Seq], logits: torch.Tensor):
        """Choose, record and append one token per live sequence; returns the finished ones."""
        t = state.out_pos
        coin = torch.from_numpy(keyed_uniforms(state.keys, t, COIN))
        tok_u = torch.from_numpy(keyed_uniforms(state.keys, t, TOKEN))
        tokens, source = mix_step(
            logits[state.e_idx], logits[state.n_idx], coin, tok_u, state.lam, self.sampling
        )
        state.last_tokens = tokens[state.row_seq]
        lp = token_logprobs(logits, state.last_tokens).tolist()
        state.out_pos = t + 1
        done = []
        for j, (seq, tok, naive) in enumerate(
            zip(live, tokens.tolist(), source.tolist(), strict=True)
        ):
            seq.tokens.append(tok)
            seq.source.append(int(naive))
            if seq.mode != Role.NAIVE:
                seq.elp.append(lp[state.e_rows[j]])
            if seq.mode != Role.EXPERT:
                seq.nlp.append(lp[state.n_rows[j]])
            count = int(t[j]) + 1  # absolute output positions, prefix included
            if tok in self.stop_ids:
                done.append((seq, "stop"))
            elif count >= self.max_new_tokens or seq.prompt_len + count + 1 > self.max_model_len:
                done.append((seq, "length"))
        return done

    def _finish_pending(self, pending) -> Iterator[Result]:
        """Score the other conditional of finished single-conditional sequences, then yield them."""
        work = []
        for seq, _ in pending:
            other = seq.job.naive_ids if seq.mode == Role.EXPERT else seq.job.expert_ids
            if other is not None:
                work.append((seq, list(other) + list(seq.job.prefix)))
        scores = self._score([(ctx, seq.tokens) for seq, ctx in work])
        for (seq, _), lps in zip(work, scores, strict=True):
            (seq.nlp if seq.mode == Role.EXPERT else seq.elp).extend(lps)
        for seq, reason in pending:
            yield self._result(seq, reason)

    def _score(self, items: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Teacher-forced log p(target_t | context + target_<t) for (context, target) pairs,
        through the model's own forward (its logit transforms included): `modeling.score_tokens`."""
        return [lp.tolist() for lp in score_tokens(self.model, items, self.pad_id)]
