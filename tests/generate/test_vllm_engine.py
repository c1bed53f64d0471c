"""The vLLM engine's own logic: request building, settling pair outputs, resubmission, errors.
`vllm.LLM` is replaced by fakes (the simulator, or canned outputs)."""

import importlib.util
import os
from types import SimpleNamespace

import pytest
from vllm_sim import Knobs, SimLLM, fake_open_llm

import mixsd.generate.vllm_engine as vllm_engine
from mixsd.errors import MixsdError
from mixsd.generate.core import Sampling
from mixsd.generate.jobs import Job
from mixsd.generate.sequence import Decoding
from mixsd.generate.vllm_engine import (
    CPU_HEAD_SIZES,
    PROCESSORS,
    EnginePlan,
    VLLMEngine,
    pick_sentinels,
    plan_engine,
)
from mixsd.generate.vllm_pairs import Member

SAMPLING = Sampling(0.7, 20, 0.9)
STOPS = [2, 9]


def engine_with(monkeypatch, llm, **kw) -> VLLMEngine:
    monkeypatch.setattr(vllm_engine, "open_llm", fake_open_llm(llm))
    return VLLMEngine("model-dir", SAMPLING, STOPS, batch_size=4, max_new_tokens=12, **kw)


def canned(vocab=100):
    return SimpleNamespace(
        llm_engine=SimpleNamespace(model_config=SimpleNamespace(get_vocab_size=lambda: vocab))
    )


def completion(ids, reason="length"):
    stop = ids[-1] if reason == "stop" else None
    lps = [{t: SimpleNamespace(logprob=-0.5)} for t in ids]
    return SimpleNamespace(token_ids=ids, logprobs=lps, finish_reason=reason, stop_reason=stop)


JOBS = [
    Job(11, 0.5, [1, 3, 4], [5, 6, 1, 3, 4], "mix"),
    Job(12, 0.0, [1, 3], [5, 1, 3], "expert-only"),
    Job(13, 1.0, [1, 4], None, "closed-book"),
]


def test_requests_carry_pair_arguments_adjacently(monkeypatch, tiny_model):
    engine = engine_with(monkeypatch, SimLLM(tiny_model, Knobs(budget=500, max_num_seqs=16)))
    results = {r.tag: r for r in engine.generate(JOBS)}
    assert set(results) == {"mix", "expert-only", "closed-book"}
    prompts, params, priority = zip(*engine.llm.requests, strict=True)  # in submission order
    assert list(prompts) == [
        [5, 6, 1, 3, 4],
        [1, 3, 4],
        [5, 1, 3],
        [1, 4],
        [1, 3] + results["expert-only"].target_ids,
    ]
    assert priority == (0,) * 5
    s_e, s_n = engine.sentinels
    assert (s_e, s_n) == (2, 9)  # the real stop ids (STOPS): a divergence adds no stop token
    for role, p in enumerate(params[:2]):  # the mixed pair, expert first
        assert (p.n, p.temperature, p.logprobs, p.max_tokens) == (1, 0.0, 0, 12)
        assert p.stop_token_ids == [2, 9] and p.ignore_eos and not p.detokenize
        assert p.extra_args == {
            "mixsd": {
                "pair": params[0].extra_args["mixsd"]["pair"],
                "role": role,
                "key": 11,
                "lam": 0.5,
                "offset": 0,
                "solo": False,
                "temperature": 0.7,
                "top_k": 20,
                "top_p": 0.9,
                "sentinels": [s_e, s_n],
            }
        }
    solo = params[2:4]  # one request per single-conditional job
    assert [p.extra_args["mixsd"]["role"] for p in solo] == [0, 1]
    assert all(p.extra_args["mixsd"]["solo"] and p.stop_token_ids == STOPS for p in solo)
    scoring = params[4]  # the naive log-probs of the expert-only job
    assert scoring.prompt_logprobs == 0 and scoring.extra_args is None
    assert results["closed-book"].expert_logprob is None
    assert len(results["expert-only"].naive_logprob) == len(results["expert-only"].target_ids)


def test_resubmissions_start_from_the_agreed_prefix(monkeypatch, tiny_model):
    knobs = Knobs(seed=7, budget=120, p_skip=0.3, p_preempt=0.1)
    engine = engine_with(monkeypatch, SimLLM(tiny_model, knobs))
    jobs = [Job(100 + i, 0.5, [1, 3, 4 + i], [5, 6, 1, 3, 4 + i], i) for i in range(6)]
    results = {r.tag: r for r in engine.generate(jobs)}
    assert engine.stats["divergences"] > 0
    assert engine.stats["resubmissions"] == engine.stats["divergences"]
    seen = 0
    for prompt, p, pr in engine.llm.requests:
        args = p.extra_args["mixsd"]
        if args["offset"]:
            seen += 1
            job = jobs[args["key"] - 100]
            base = job.expert_ids if args["role"] == 0 else job.naive_ids
            agreed = results[job.tag].target_ids[: args["offset"]]
            assert prompt == base + agreed and pr == -1
            assert p.max_tokens == 12 - args["offset"]
    assert seen > 0


def test_an_abandoned_generate_leaves_the_engine_clean(monkeypatch, tiny_model):
    engine = engine_with(monkeypatch, SimLLM(tiny_model, Knobs(budget=500, max_num_seqs=16)))
    jobs = [Job(100 + i, 0.5, [1, 3, 4 + i], [5, 6, 1, 3, 4 + i], i) for i in range(6)]
    full = {r.tag: r.target_ids for r in engine.generate(jobs)}
    run = engine.generate(jobs)
    next(run)
    run.close()  # the caller stopped early (an error downstream): its requests are aborted
    assert not engine.llm.llm_engine.has_unfinished_requests()
    assert {r.tag: r.target_ids for r in engine.generate(jobs)} == full


def test_settling_divergences_sentinel_tokens_and_stalls(monkeypatch):
    monkeypatch.setattr(vllm_engine, "open_llm", fake_open_llm(canned()))
    engine = VLLMEngine("model-dir", SAMPLING, [2], batch_size=4, max_new_tokens=12, max_stalls=2)
    s_e, s_n = engine.sentinels
    assert (s_e, s_n) == (2, 99)  # the one stop id, then the highest other id
    seq = Decoding.open(Job(1, 0.5, [1], [2], "t"), engine.max_new_tokens, engine.max_model_len)
    assert (
        engine._settle(seq, [completion([4, 5, s_e], "stop"), completion([4, s_n], "stop")]) is None
    )
    assert seq.tokens == [4] and engine.stats["divergences"] == 1
    # a made-up sentinel the mixing really picked: both requests stopped on it; keep it, go on
    assert engine._settle(seq, [completion([6, s_n], "stop")] * 2) is None
    assert seq.tokens == [4, 6, s_n] and seq.expert_logprob == seq.naive_logprob == [-0.5] * 3
    # a real stop id that is a sentinel too, picked by the mixing on both: a plain stop
    assert engine._settle(seq, [completion([s_e], "stop")] * 2) == "stop"
    assert seq.tokens == [4, 6, s_n, s_e] and engine.stats["divergences"] == 1
    stuck = Decoding.open(Job(2, 0.5, [1], [2], "stuck"), 12, engine.max_model_len)
    with pytest.raises(MixsdError, match="diverged 3 times"):
        for _ in range(3):
            engine._settle(stuck, [completion([s_e], "stop"), completion([3, s_n], "stop")])


def test_sentinels_are_the_stop_ids_then_the_highest_others():
    assert pick_sentinels(10, {9, 7}) == (7, 9)
    assert pick_sentinels(10, {3}) == (3, 9)
    assert pick_sentinels(10, set()) == (9, 8)


def test_missing_vllm_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a)
    )
    with pytest.raises(MixsdError, match=r"pip install 'mixsd\[vllm\]'"):
        VLLMEngine("model-dir", SAMPLING, STOPS)


LLAMA = {"hidden_size": 128, "num_attention_heads": 2, "max_position_embeddings": 2048}


def test_cpu_plan_v1_runner_eager_and_clamped_length(caplog):
    plan = plan_engine(LLAMA, "cpu", max_model_len=4096)
    # a full batch of usual prompts prefills in one step: 128 pairs x 2 x 2048, capped
    assert plan == EnginePlan(
        "cpu", "v1", 2048, True, 128, prefill_tokens=16384, cpu_kv_cache_gib=4, block_size=32
    )
    assert (plan.max_num_seqs, plan.max_num_batched_tokens) == (256, 256 + 16384)
    assert plan.environ() == {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_USE_V2_MODEL_RUNNER": "0",
        "VLLM_CPU_KVCACHE_SPACE": "4",
    }
    assert "Model Runner V2 needs Triton; using the V1 runner" in caplog.text
    assert "max_model_len 4096 > the model's max_position_embeddings 2048" in caplog.text
    small = plan_engine(
        LLAMA,
        "cpu",
        device="cpu",
        runner="v1",
        max_model_len=512,
        eager=False,
        pairs=4,
        cpu_kv_cache_gib=2,
    )
    assert small == EnginePlan("cpu", "v1", 512, False, 4, 4 * 2 * 512, 2, 32)
    cuda = plan_engine(LLAMA, "cuda", device="cuda:0")
    assert cuda == EnginePlan("cuda", "v2", 2048, False, 128, 16384, 4, None)
    huge = plan_engine({**LLAMA, "max_position_embeddings": 32768}, "cuda", max_model_len=32768)
    assert huge.prefill_tokens == 2 * 32768  # at least one pair of the longest prompts
    assert cuda.environ() == {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_USE_V2_MODEL_RUNNER": "1",
    }


def test_the_environment_is_set_while_vllm_starts_and_restored_after(monkeypatch):
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "mine")
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    env = {"VLLM_USE_V2_MODEL_RUNNER": "0", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    with vllm_engine.scoped_environ(env):
        assert {k: os.environ[k] for k in env} == env
    assert os.environ["VLLM_USE_V2_MODEL_RUNNER"] == "mine"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ


@pytest.mark.parametrize(
    "config, platform, kw, message",
    [
        ({"hidden_size": 64, "num_attention_heads": 4}, "cpu", {}, "head size is 16, and vLLM's "
         "CPU attention supports only 32, 64, 80"),
        ({"head_dim": 48, "hidden_size": 64, "num_attention_heads": 4}, "cpu", {}, "is 48"),
        (LLAMA, "cpu", {"runner": "v2"}, "Model Runner V2 needs Triton"),
        (LLAMA, "cpu", {"runner": "v3"}, "runner must be 'auto', 'v2' or 'v1'"),
        (LLAMA, "cpu", {"device": "cuda"}, "cuda requested, but this vLLM build runs on cpu"),
        (LLAMA, "cuda", {"device": "cpu"}, "cpu requested, but this vLLM build runs on cuda"),
    ],
)  # fmt: skip
def test_what_vllm_would_refuse_is_one_line_before_start_up(config, platform, kw, message):
    with pytest.raises(MixsdError, match=message):
        plan_engine(config, platform, **kw)


def test_cpu_head_sizes_are_vllms():
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    assert list(CPU_HEAD_SIZES) == CPUAttentionBackend.get_supported_head_sizes()


def test_vllm_loads_the_registered_processors_and_validates_arguments():
    """What `LLM(logits_processors=[...])` does with our class names, in vLLM's own loaders."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.sample.logits_processor import _load_logitsprocs_by_fqcns
    from vllm.v1.worker.gpu.sample.logits_processor import loader

    from mixsd.generate.vllm_processor import MixsdProcessorV1, MixsdProcessorV2

    assert loader._load_v2_logitsprocs_by_fqcns([PROCESSORS["v2"]]) == [MixsdProcessorV2]
    assert _load_logitsprocs_by_fqcns([PROCESSORS["v1"]]) == [MixsdProcessorV1]
    with pytest.raises(ValueError, match="not a subclass"):
        loader._load_v2_logitsprocs_by_fqcns([PROCESSORS["v1"]])
    validate = loader.build_custom_logits_processors_params_validator([PROCESSORS["v2"]])
    ours = Member(1, 0, 7, 0.5, 3, False, SAMPLING, (99, 98)).extra_args()
    validate(SamplingParams(extra_args=ours))
    validate(SamplingParams.for_sampler_warmup())
    with pytest.raises(VLLMValidationError, match="role"):
        validate(SamplingParams(extra_args={"mixsd": {"pair": 1}}))
