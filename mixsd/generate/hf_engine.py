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
from contextlib import contextmanager

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
    token_logprobs,
)
from mixsd.generate.hf_batch import GrowLayer, LiveBatch, Owner
from mixsd.generate.jobs import Job, Result
from mixsd.generate.sequence import Decoding
from mixsd.modeling import PAD_ID, left_pad, score_tokens

GQA_SDPA = "gqa_sdpa"  # the attention function `HFEngine` decodes with on CPU (`gqa_attention`)
_PREFILL_TOKENS = 16384  # prefill: padded tokens per forward
_REFILL = 0.25  # admit queued jobs once this fraction of the slots is free (prefill in groups)


def _rows(seq: Decoding) -> list[tuple[list[int], bool, bool]]:
    """A sequence's cache rows: (prompt ids, is expert row, is naive row); the one row of a
    lam 0/1 sequence is both."""
    solo = seq.solo is not None
    return [
        (seq.context(r), r == Role.EXPERT or solo, r == Role.NAIVE or solo) for r in seq.roles()
    ]


def _gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' sdpa attention without its copy of the KV heads: query `[R, heads, q, d]`,
    key/value `[R, kv_heads, L, d]`, attention_mask bool `[R, 1, q, L]` or None (no padding and
    causal); returns `[R, q, heads, d]`.

    transformers hands grouped-query attention to SDPA's `enable_gqa` only without a mask, and
    the engine always has one (left padding), so it repeats every layer's whole cache
    (`repeat_kv`) at every step: on SmolLM2 (9 heads, 3 KV heads) a tenth of a CPU decoding step.
    SDPA's CPU kernel reads the shared heads in place and gives the same numbers."""
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=attention_mask is None and query.shape[2] > 1,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


def _register_gqa_sdpa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_SDPA, _gqa_sdpa)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)


@contextmanager
def gqa_attention(model):
    """Run `model` with `_gqa_sdpa` while inside: on CPU, where the model uses transformers'
    sdpa (the default); elsewhere unchanged (CUDA's fused kernels refuse a mask with GQA, so
    transformers' repeat is the fast path there)."""
    if model.device.type != "cpu" or model.config._attn_implementation != "sdpa":
        yield
        return
    _register_gqa_sdpa()
    model.set_attn_implementation(GQA_SDPA)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")


class HFEngine:
    """Decode `Job`s with a transformers causal LM (full-attention layers, e.g. Llama, Qwen).

    stop_ids: token ids that end a sequence (kept in the target); batch_size: live sequences (a
    mixed one costs two rows); max_new_tokens: output tokens at most;
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
        pad_id: int = PAD_ID,
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
        live: list[Decoding] = []
        pending: list[tuple[Decoding, str]] = []  # lam 0/1 sequences awaiting the other log-probs
        state = logits = None
        refill = max(1, int(self.batch_size * _REFILL))
        with torch.inference_mode(), gqa_attention(self.model):
            while queue or live:
                if queue and (len(live) == 0 or self.batch_size - len(live) >= refill):
                    new = []
                    while queue and len(live) + len(new) < self.batch_size:
                        job = queue.popleft()
                        seq = Decoding.open(job, self.max_new_tokens, self.max_model_len)
                        refusal = seq.refusal(self.max_model_len)
                        if refusal:
                            yield seq.result(refusal, self.other_logprobs)
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
                        if seq.wants_other(self.other_logprobs):
                            pending.append((seq, reason))
                        else:
                            yield seq.result(reason, self.other_logprobs)
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

    def _admit(self, state, logits, new: list[Decoding]):
        """Prefill the rows of `new` and append them to the live batch. Rows are sorted by length
        and prefilled in groups of similar length, so short naive prompts are not padded to the
        long expert ones."""
        rows = [(ids, Owner(s, e, n)) for s in new for ids, e, n in _rows(s)]
        rows.sort(key=lambda r: len(r[0]))
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
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
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
            input_ids=tokens.unsqueeze(1),
            attention_mask=state.mask,
            position_ids=state.pos.unsqueeze(1),
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        state.pos += 1
        return out.logits[:, -1]

    def _step(self, state: LiveBatch, live: list[Decoding], logits: torch.Tensor):
        """Choose, record and append one token per live sequence; returns the finished ones."""
        t = state.out_pos
        coin = torch.from_numpy(keyed_uniforms(state.keys, t, COIN))
        tok_u = torch.from_numpy(keyed_uniforms(state.keys, t, TOKEN))
        tokens, _ = mix_step(  # the source comes back with the result: `Decoding.result`
            logits[state.e_idx], logits[state.n_idx], coin, tok_u, state.lam, self.sampling
        )
        state.last_tokens = tokens[state.row_seq]
        lp = token_logprobs(logits, state.last_tokens).tolist()
        state.out_pos = t + 1
        done = []
        for j, (seq, tok) in enumerate(zip(live, tokens.tolist(), strict=True)):
            seq.tokens.append(tok)
            if seq.solo != Role.NAIVE:
                seq.expert_logprob.append(lp[state.e_rows[j]])
            if seq.solo != Role.EXPERT:
                seq.naive_logprob.append(lp[state.n_rows[j]])
            if tok in self.stop_ids:
                done.append((seq, "stop"))
            elif len(seq.tokens) >= seq.limit:
                done.append((seq, "length"))
        return done

    def _finish_pending(self, pending) -> Iterator[Result]:
        """Score the other conditional of finished single-conditional sequences, then yield them."""
        work = [(seq, other) for seq, _ in pending if (other := seq.other_prompt()) is not None]
        scores = self._score([(other, seq.tokens) for seq, other in work])
        for (seq, _), lps in zip(work, scores, strict=True):
            seq.add_other(lps)
        for seq, reason in pending:
            yield seq.result(reason, self.other_logprobs)

    def _score(self, items: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Teacher-forced log p(target_t | context + target_<t) for (context, target) pairs,
        through the model's own forward (its logit transforms included): `modeling.score_tokens`."""
        return [lp.tolist() for lp in score_tokens(self.model, items, self.pad_id)]
