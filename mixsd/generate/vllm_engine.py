"""The vLLM engine: all pairs of a wave in one `LLM.generate` call, mixed by a logits processor.

A mixed job (0 < lam < 1) becomes two adjacent requests, expert then naive, with identical
settings: greedy (the processor forces the token it picked with the mixing core), `logprobs=0`
(vLLM returns each conditional's raw log-prob of the shared token), the real stop ids plus two
sentinels, and `extra_args["mixsd"]` (pair id, role, key, lam, absolute offset, sampling). A lam 0
or 1 job is one solo request; the other conditional's log-probs come from one prompt-log-prob
pass afterwards (`other_logprobs`).

The scheduler does not keep the two requests in lockstep. When the processor cannot serve a pair
it stops both with sentinels at the agreed length d; this engine then resubmits
`prompt + prefix + y[:d]` with offset d at the front of the next wave. Coins and token uniforms are
keyed on absolute positions, so the resumed target equals an uninterrupted one; `stats` counts
divergences. Everything except `open_llm` runs without vLLM, so tests drive it with a simulator.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from mixsd.errors import MixsdError
from mixsd.generate.core import COIN, Sampling, keyed_uniforms
from mixsd.generate.jobs import Job, Result
from mixsd.generate.vllm_pairs import EXPERT, NAIVE, pair_args

MIX, SOLO_EXPERT, SOLO_NAIVE = 0, 1, 2
PROCESSORS = {
    "v2": "mixsd.generate.vllm_processor:MixsdProcessorV2",
    "v1": "mixsd.generate.vllm_processor:MixsdProcessorV1",
}


def open_llm(model: str, *, runner: str = "v2", pairs: int = 128, max_model_len: int = 4096,
             tensor_parallel_size: int = 1, dtype: str = "auto",
             gpu_memory_utilization: float = 0.9, seed: int = 0):  # fmt: skip
    """A `vllm.LLM` set up so the two requests of a pair rarely drift apart.

    In-process engine core (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: requests reach the scheduler in
    submission order), `2 * pairs` sequences, a token budget that lets any pair prefill in one step
    next to a full decode batch, prefix caching (lam sweeps and resumes share prompts), priority
    scheduling (resumed pairs first), one data-parallel rank. runner "v2" (vLLM's default Model
    Runner V2, chunked prefill allowed) or "v1" (legacy runner, chunked prefill off).
    """
    if runner not in PROCESSORS:
        raise MixsdError(f"vLLM runner must be 'v2' or 'v1', got {runner!r}")
    if importlib.util.find_spec("vllm") is None:
        raise MixsdError("--engine vllm needs vLLM: pip install 'mixsd[vllm]' (on a CUDA machine)")
    import torch

    if not torch.cuda.is_available():
        raise MixsdError("--engine vllm needs a CUDA GPU and none is visible; use --engine hf")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if runner == "v2" else "0"
    try:
        from vllm import LLM
    except ImportError as e:
        raise MixsdError(
            f"vLLM is installed but does not import ({e}); reinstall mixsd[vllm]"
        ) from e
    max_num_seqs = 2 * pairs
    return LLM(
        model=str(model),
        tensor_parallel_size=tensor_parallel_size,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_seqs + 2 * max_model_len,
        enable_prefix_caching=True,
        enable_chunked_prefill=runner == "v2",
        scheduling_policy="priority",
        logprobs_mode="raw_logprobs",
        enable_batch_sharded_sampling=False,
        logits_processors=[PROCESSORS[runner]],
    )


def pick_sentinels(vocab_size: int, stop_ids) -> tuple[int, int]:
    """Two token ids (expert's, naive's) that mark a diverged pair: the highest ids that are not
    real stop ids (usually unused padding rows of the vocabulary)."""
    free = [t for t in range(vocab_size - 1, -1, -1) if t not in stop_ids][:2]
    return free[0], free[1]


@dataclass
class _Open:
    """A job being decoded: what earlier submissions agreed (beyond job.prefix)."""

    job: Job
    mode: int
    limit: int  # absolute output positions the job may reach (max_new_tokens, max_model_len)
    tokens: list[int] = field(default_factory=list)
    elp: list[float] = field(default_factory=list)
    nlp: list[float] = field(default_factory=list)
    stalls: int = 0

    @property
    def offset(self) -> int:
        return len(self.job.prefix) + len(self.tokens)

    def roles(self) -> list[int]:
        return (
            [EXPERT, NAIVE] if self.mode == MIX else [EXPERT if self.mode == SOLO_EXPERT else NAIVE]
        )

    def context(self, role: int) -> list[int]:
        prompt = self.job.expert_ids if role == EXPERT else self.job.naive_ids
        return list(prompt) + list(self.job.prefix) + self.tokens


class VLLMEngine:
    """Decode `Job`s with vLLM; same contract and results as `HFEngine` (see its docstring).

    model: a local model directory; batch_size: pairs in flight (2x requests); runner: "v2" or
    "v1" processor interface; wave_pairs: jobs per `LLM.generate` call (results stream per wave;
    default 8 * batch_size); max_stalls: divergences at the same position before giving up.
    """

    def __init__(
        self,
        model: str,
        sampling: Sampling,
        stop_ids: Sequence[int],
        batch_size: int = 128,
        max_new_tokens: int = 512,
        max_model_len: int = 4096,
        other_logprobs: bool = True,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        runner: str = "v2",
        wave_pairs: int | None = None,
        max_stalls: int = 32,
        seed: int = 0,
    ):
        self.llm = open_llm(
            model, runner=runner, pairs=batch_size, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization, seed=seed,
        )  # fmt: skip
        self.sampling, self.stop_ids = sampling, sorted({int(t) for t in stop_ids})
        self.max_new_tokens, self.max_model_len = max_new_tokens, max_model_len
        self.other_logprobs, self.max_stalls = other_logprobs, max_stalls
        self.wave_pairs = wave_pairs or 8 * batch_size
        vocab = self.llm.llm_engine.model_config.get_vocab_size()
        self.sentinels = pick_sentinels(vocab, set(self.stop_ids))
        self.stats = {"divergences": 0, "resubmissions": 0, "waves": 0}
        self._pair_ids = itertools.count()

    def generate(self, jobs: Sequence[Job]) -> Iterator[Result]:
        """Decode all `jobs`; yields each `Result` once its sequence is finished (any order).

        Mixed jobs go first and solo jobs after them, in separate waves: a solo request takes one
        slot, and odd slot counts would split later pairs across steps."""
        queue: deque[_Open] = deque()
        for job in jobs:
            seq = self._open(job)
            if seq.limit <= len(job.prefix):
                yield self._result(seq, "prompt_too_long" if self._no_room(seq) else "length")
            else:
                queue.append(seq)
        queue = deque(sorted(queue, key=lambda seq: seq.mode != MIX))  # stable
        while queue:
            mode = queue[0].mode == MIX
            wave = []
            while queue and len(wave) < self.wave_pairs and (queue[0].mode == MIX) == mode:
                wave.append(queue.popleft())
            self.stats["waves"] += 1
            done, resumed = [], []
            for seq, outs in zip(wave, self._run(wave), strict=True):
                reason = self._settle(seq, outs)
                if reason is None:
                    resumed.append(seq)
                else:
                    done.append((seq, reason))
            self.stats["resubmissions"] += len(resumed)
            queue.extendleft(reversed(resumed))  # first in the next wave
            yield from self._finish(done)

    def _open(self, job: Job) -> _Open:
        mode = MIX if 0.0 < job.lam < 1.0 else SOLO_EXPERT if job.lam == 0.0 else SOLO_NAIVE
        room = self.max_model_len - self._longest_prompt(job)
        return _Open(job, mode, min(self.max_new_tokens, room))

    def _longest_prompt(self, job: Job) -> int:
        return max(len(job.naive_ids), len(job.expert_ids or ()))

    def _no_room(self, seq: _Open) -> bool:
        return self._longest_prompt(seq.job) + len(seq.job.prefix) + 1 > self.max_model_len

    def requests(self, seq: _Open) -> list[tuple[list[int], dict]]:
        """(prompt ids, SamplingParams keyword arguments) of each request of `seq`, expert first."""
        pair, solo = next(self._pair_ids), seq.mode != MIX
        stops = self.stop_ids + ([] if solo else list(self.sentinels))
        out = []
        for role in seq.roles():
            args = pair_args(pair, role, seq.job.key, seq.job.lam, seq.offset, solo,
                             self.sampling, self.sentinels)  # fmt: skip
            params = dict(
                n=1, temperature=0.0, max_tokens=seq.limit - seq.offset, logprobs=0,
                stop_token_ids=stops, ignore_eos=True, detokenize=False,
                skip_special_tokens=False, extra_args=args,
            )  # fmt: skip
            out.append((seq.context(role), params))
        return out

    def _run(self, wave: list[_Open]) -> list[list]:
        """One `LLM.generate` call for the wave; returns each sequence's completion outputs."""
        from vllm import SamplingParams

        prompts, params, priority, sizes = [], [], [], []
        for seq in wave:
            reqs = self.requests(seq)
            sizes.append(len(reqs))
            for ids, kwargs in reqs:
                prompts.append({"prompt_token_ids": ids})
                params.append(SamplingParams(**kwargs))
                priority.append(-1 if seq.tokens else 0)
        outs = self.llm.generate(prompts, params, use_tqdm=False, priority=priority)
        it = iter(o.outputs[0] for o in outs)
        return [[next(it) for _ in range(n)] for n in sizes]

    def _settle(self, seq: _Open, outs: list) -> str | None:
        """Take what the outputs agree on into `seq`; returns the finish reason, or None to resume."""
        ids = [list(o.token_ids) for o in outs]
        if any(o.finish_reason not in ("stop", "length") for o in outs):
            raise MixsdError(f"vLLM ended job {seq.job.tag!r} with {outs[0].finish_reason!r}")
        diverged = len(ids) == 2 and ids[0] != ids[1]
        keep = min(len(ids[0]), len(ids[1])) - 1 if diverged else len(ids[0])
        if diverged and (keep < 0 or ids[0][:keep] != ids[1][:keep]):
            raise MixsdError(f"internal: vLLM outputs of job {seq.job.tag!r} disagree before d")
        for o, role in zip(outs, seq.roles(), strict=True):
            lps = [o.logprobs[t][tok].logprob for t, tok in enumerate(ids[0][:keep])]
            (seq.elp if role == EXPERT else seq.nlp).extend(lps)
        seq.tokens += ids[0][:keep]
        if diverged:
            self.stats["divergences"] += 1
            seq.stalls = seq.stalls + 1 if keep == 0 else 0
            if seq.stalls > self.max_stalls:
                raise MixsdError(
                    f"job {seq.job.tag!r} diverged {seq.stalls} times at output position "
                    f"{seq.offset}: vLLM keeps splitting its two requests across steps (a pair "
                    "must prefill in one step; is max_num_batched_tokens below 2 prompts?)"
                )
            return None
        last = ids[0][-1] if ids[0] else None
        if last in self.sentinels and outs[0].finish_reason == "stop" and seq.mode == MIX:
            return None if seq.offset < seq.limit else "length"  # a sentinel picked for real
        return "stop" if outs[0].finish_reason == "stop" else "length"

    def _finish(self, done: list[tuple[_Open, str]]) -> Iterator[Result]:
        """Score the other conditional of finished solo sequences, then yield every result."""
        from vllm import SamplingParams

        work = []
        for seq, _ in done:
            other = seq.job.naive_ids if seq.mode == SOLO_EXPERT else seq.job.expert_ids
            if seq.mode != MIX and self.other_logprobs and other is not None and seq.tokens:
                work.append((seq, list(other) + list(seq.job.prefix)))
        if work:
            params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                                    detokenize=False, skip_special_tokens=False)  # fmt: skip
            prompts = [{"prompt_token_ids": ctx + seq.tokens} for seq, ctx in work]
            outs = self.llm.generate(prompts, [params] * len(work), use_tqdm=False)
            for (seq, ctx), out in zip(work, outs, strict=True):
                lps = [out.prompt_logprobs[len(ctx) + t][tok].logprob
                       for t, tok in enumerate(seq.tokens)]  # fmt: skip
                (seq.nlp if seq.mode == SOLO_EXPERT else seq.elp).extend(lps)
        for seq, reason in done:
            yield self._result(seq, reason)

    def _result(self, seq: _Open, reason: str) -> Result:
        """The same fields, and the same None conventions, as `HFEngine`."""
        job, n = seq.job, len(seq.tokens)
        start = len(job.prefix)
        coins = keyed_uniforms(
            np.full(n, job.key, dtype=np.uint64), np.arange(start, start + n), COIN
        )
        other = self.other_logprobs or seq.mode == MIX
        has_expert = job.expert_ids is not None
        return Result(
            job.tag,
            seq.tokens,
            [int(u < job.lam) for u in coins],
            seq.elp if has_expert and (seq.mode != SOLO_NAIVE or other) else None,
            seq.nlp if seq.mode != SOLO_EXPERT or other else None,
            reason,
        )
