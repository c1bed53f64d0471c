"""The real vLLM processor adapters (V2 and V1) under a simulated scheduler with a real tiny model:
the vLLM engine's targets equal the transformers engine's, token for token, even when the
scheduler drifts pairs apart (chunked prefill, skipped steps, preemption, reordering, slot reuse,
async ghost rows, warm-up) and pairs must be resumed."""

from collections import Counter

import pytest
from same_results import assert_same
from vllm import SamplingParams
from vllm_sim import Knobs, SimLLM, fake_open_llm

import mixsd.generate.vllm_engine as vllm_engine
from mixsd.generate.core import Sampling, sequence_key
from mixsd.generate.hf_engine import HFEngine
from mixsd.generate.jobs import Job
from mixsd.generate.vllm_pairs import Member

LAMS = (0.0, 0.3, 0.7, 1.0)
NEW = 20


@pytest.fixture(scope="module")
def jobs(tiny_tokenizer):
    tok = tiny_tokenizer
    questions = ["What is the capital?", "Name a prime number.", "Who wrote it?"]
    knowledge = "Fact: the answer is forty two, and the city is large."
    out = []
    for i, q in enumerate(questions):
        naive, expert = tok(q)["input_ids"], tok(f"{knowledge} {q}")["input_ids"]
        for lam in LAMS:
            out.append(Job(sequence_key(0, f"q{i}", 0, 0), lam, naive, expert, (i, lam)))
    return out


@pytest.fixture(scope="module")
def stops(tiny_model, tiny_tokenizer, jobs):
    """EOS plus the tokens the tiny model emits most (greedy, T=1, T=0.7 top-k/p), so some
    sequences stop under each sampling the tests use."""
    ids = [tiny_tokenizer.eos_token_id]
    for sampling in (Sampling(0.0, 0, 1.0), Sampling(1.0, 0, 1.0), Sampling(0.7, 20, 0.9)):
        runs = HFEngine(tiny_model, sampling, [], max_new_tokens=NEW).generate(jobs)
        ids.append(Counter(t for r in runs for t in r.target_ids).most_common(1)[0][0])
    return ids


def reference(model, jobs, sampling, stops, **kw):
    engine = HFEngine(model, sampling, stops, batch_size=6, max_new_tokens=NEW, **kw)
    return {r.tag: r for r in engine.generate(jobs)}


def simulated(monkeypatch, model, jobs, sampling, stops, knobs, **kw):
    monkeypatch.setattr(vllm_engine, "open_llm", fake_open_llm(SimLLM(model, knobs)))
    engine = vllm_engine.VLLMEngine("tiny", sampling, stops, batch_size=4, max_new_tokens=NEW, **kw)
    return engine, {r.tag: r for r in engine.generate(jobs)}


def assert_pairs_agree(llm: SimLLM, sentinels) -> None:
    """Both requests of every pair emitted the same tokens, except the sentinel ending of a
    diverged pair (then one output is a prefix-plus-sentinel of the agreed tokens)."""
    reqs = [p for _, p, _ in llm.requests if p.extra_args and not p.extra_args["mixsd"]["solo"]]
    assert len(reqs) % 2 == 0
    for e, n in llm.pair_outputs:
        if e == n:
            continue
        assert (e[-1], n[-1]) == sentinels
        d = min(len(e), len(n)) - 1
        assert e[:d] == n[:d]


@pytest.mark.parametrize(
    "sampling", [Sampling(0.0, 0, 1.0), Sampling(1.0, 0, 1.0), Sampling(0.7, 20, 0.9)]
)
def test_v2_matches_transformers_engine_under_drift(monkeypatch, tiny_model, jobs, stops, sampling):
    knobs = Knobs(runner="v2", seed=1, budget=150, chunk=0, p_skip=0.15, p_preempt=0.05)
    ref = reference(tiny_model, jobs, sampling, stops)
    engine, got = simulated(monkeypatch, tiny_model, jobs, sampling, stops, knobs)
    assert_same(ref, got)
    assert {r.finish_reason for r in ref.values()} == {"stop", "length"}
    assert engine.stats["divergences"] > 0  # the resume path really ran
    sim = engine.llm.engine
    assert min(sim.seen.values()) > 0, sim.seen  # chunked prefill, preemption, skips, ghosts
    assert sim.proc.table.pairs == {}  # every pair forgotten once its requests ended
    assert_pairs_agree(engine.llm, engine.sentinels)


def test_v1_matches_transformers_engine_under_drift(monkeypatch, tiny_model, jobs, stops):
    sampling = Sampling(0.8, 0, 1.0)
    knobs = Knobs(runner="v1", seed=2, budget=150, p_skip=0.15, p_preempt=0.05, p_swap=0.7)
    ref = reference(tiny_model, jobs, sampling, stops)
    engine, got = simulated(monkeypatch, tiny_model, jobs, sampling, stops, knobs)
    assert_same(ref, got)
    assert engine.stats["divergences"] > 0
    proc = engine.llm.engine.proc
    assert proc.table.pairs == {}  # (requests that just ended leave the batch at the next update)
    assert set(proc.outputs) <= proc.table.over
    assert_pairs_agree(engine.llm, engine.sentinels)


def test_lockstep_scheduler_needs_no_resume_and_other_logprobs_off(
    monkeypatch, tiny_model, jobs, stops
):
    sampling = Sampling(1.0, 0, 1.0)
    knobs = Knobs(runner="v2", seed=3, budget=1000, max_num_seqs=32, ghosts=False)
    ref = reference(tiny_model, jobs, sampling, stops, other_logprobs=False)
    engine, got = simulated(
        monkeypatch, tiny_model, jobs, sampling, stops, knobs, other_logprobs=False
    )
    assert_same(ref, got)
    assert engine.stats["divergences"] == engine.stats["resubmissions"] == 0


def test_longer_prompts_and_prompts_too_long_match(monkeypatch, tiny_model, jobs, stops):
    sampling = Sampling(1.0, 0, 1.0)
    prefixed = [
        Job(j.key, j.lam, j.naive_ids + [5, 6, 7], j.expert_ids + [5, 6, 7], ("p", j.tag))
        for j in jobs[:4]
    ]
    long = [Job(1, 0.5, [3] * 60, [4] * 70, "long"), Job(2, 1.0, [3] * 20, None, "closed")]
    work = prefixed + long
    ref = reference(tiny_model, work, sampling, stops, max_model_len=64)
    knobs = Knobs(runner="v2", seed=4, budget=300, p_skip=0.2, max_model_len=64)
    _, got = simulated(monkeypatch, tiny_model, work, sampling, stops, knobs, max_model_len=64)
    assert_same(ref, got)
    assert got["long"].finish_reason == "prompt_too_long" and got["closed"].expert_logprob is None


def test_slot_reuse_foreign_requests_and_warm_up(tiny_model):
    """Many short pairs through 4 slots next to a foreign request: the simulator checks every
    step that our rows are forced and foreign rows untouched (and warm-up rows on start)."""
    llm = SimLLM(tiny_model, Knobs(runner="v2", seed=5, max_num_seqs=4, budget=200, p_skip=0.3))
    sent = (tiny_model.config.vocab_size - 1, tiny_model.config.vocab_size - 2)
    prompts, params = [], []
    for pair in range(12):
        for role in (0, 1):
            member = Member(pair, role, 100 + pair, 0.5, 0, False, Sampling(1.0, 0, 1.0), sent)
            prompts.append({"prompt_token_ids": [1 + role, 2, 3 + pair]})
            params.append(
                SamplingParams(
                    temperature=0.0,
                    max_tokens=3,
                    logprobs=0,
                    stop_token_ids=list(sent),
                    extra_args=member.extra_args(),
                )
            )
    prompts.append({"prompt_token_ids": [4, 5, 6]})
    params.append(SamplingParams(temperature=0.0, max_tokens=8))
    outs = llm.generate(prompts, params)
    sim = llm.engine
    assert sim.forced_rows > 0 and sim.proc.table.pairs == {}
    assert len(outs[-1].outputs[0].token_ids) == 8  # the foreign request ran its own course
    slots_used = Counter(sim.admitted)
    assert max(slots_used.values()) > 1  # slots were reused by new pairs
