"""The transformers engine against independent, unbatched recomputations on the tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from mixsd.generate.core import COIN, TOKEN, Sampling, choose_tokens, keyed_uniforms, sequence_key
from mixsd.generate.hf_engine import HFEngine
from mixsd.generate.jobs import Job

SAMPLING = Sampling(temperature=0.6, top_k=64)


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    """Six (naive_ids, expert_ids) pairs of different lengths."""
    tok = tiny_tokenizer
    out = []
    for i in range(6):
        q = "What is the capital of Zorvia? " * (1 + i % 3)
        out.append((tok(q)["input_ids"], tok(q + " The answer is 42. " * (1 + i))["input_ids"]))
    return out


def make_jobs(prompts, lams, seed=0, sample=0):
    return [
        Job(sequence_key(seed, f"ex{i}", sample, 0), lam, naive, expert, (i, lam))
        for i, (naive, expert) in enumerate(prompts)
        for lam in lams
    ]


def run(model, jobs, sampling=SAMPLING, **kw):
    kw = {"stop_ids": [2], "batch_size": 64, "max_new_tokens": 12, "max_model_len": 512} | kw
    return {r.tag: r for r in HFEngine(model, sampling, **kw).generate(jobs)}


def next_logits(model, ids):
    """Unbatched, uncached last-position logits `[1, V]`."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[:, -1].float()


def teacher_forced(model, context, target):
    """log p(target_t | context + target_<t) and the logits `[T, V]`, one unpadded forward."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([context + target])).logits[0].float()
    logits = logits[len(context) - 1 : len(context) + len(target) - 1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(target)[:, None])[:, 0], logits


def reference(model, job, sampling, conditional, max_new=12, stop=2):
    """Pure sampling from one conditional ('expert' or 'naive') with the job's keys."""
    ctx = job.expert_ids if conditional == "expert" else job.naive_ids
    out = []
    for t in range(max_new):
        u = torch.from_numpy(keyed_uniforms([job.key], [t], TOKEN))
        out.append(int(choose_tokens(next_logits(model, ctx + out), u, sampling)[0]))
        if out[-1] == stop:
            break
    return out


@pytest.fixture
def small_room(monkeypatch):
    """Cache buffers with 1 spare position, so decoding regrows them many times."""
    from mixsd.generate import hf_batch

    monkeypatch.setattr(hf_batch, "_ROOM", 1)


def test_logprobs_equal_teacher_forced_recomputation(tiny_model, prompts, small_room):
    results = run(tiny_model, make_jobs(prompts, [0.0, 0.5, 1.0]))
    for (i, lam), r in results.items():
        naive, expert = prompts[i]
        assert len(r.target_ids) == len(r.source) == len(r.expert_logprob) == len(r.naive_logprob)
        for ctx, recorded in ((expert, r.expert_logprob), (naive, r.naive_logprob)):
            lp, _ = teacher_forced(tiny_model, ctx, r.target_ids)
            assert torch.allclose(torch.tensor(recorded), lp, atol=1e-4), (i, lam)


def test_greedy_token_is_argmax_of_its_source(tiny_model, prompts):
    results = run(tiny_model, make_jobs(prompts, [0.5]), Sampling(temperature=0))
    for (i, _), r in results.items():
        naive, expert = prompts[i]
        _, le = teacher_forced(tiny_model, expert, r.target_ids)
        _, ln = teacher_forced(tiny_model, naive, r.target_ids)
        picked = torch.where(torch.tensor(r.source, dtype=torch.bool)[:, None], ln, le)
        assert picked.argmax(-1).tolist() == r.target_ids
        assert 0 < sum(r.source) < len(r.source)  # both conditionals were used


def test_lambda_0_and_1_are_pure_expert_and_naive_sampling(tiny_model, prompts):
    jobs = make_jobs(prompts[:3], [0.0, 1.0])
    results = run(tiny_model, jobs)
    for job in jobs:
        r = results[job.tag]
        want = reference(tiny_model, job, SAMPLING, "expert" if job.lam == 0 else "naive")
        assert r.target_ids == want
        assert r.source == [int(job.lam)] * len(want)


def test_mixed_equals_unbatched_reference_loop(tiny_model, prompts):
    job = make_jobs(prompts[4:5], [0.5])[0]
    out, src = [], []
    for t in range(12):
        coin = keyed_uniforms([job.key], [t], COIN)[0]
        ctx = job.naive_ids if coin < job.lam else job.expert_ids
        u = torch.from_numpy(keyed_uniforms([job.key], [t], TOKEN))
        out.append(int(choose_tokens(next_logits(tiny_model, ctx + out), u, SAMPLING)[0]))
        src.append(int(coin < job.lam))
    r = run(tiny_model, [job], stop_ids=[])[job.tag]
    assert (r.target_ids, r.source) == (out, src)


def test_continuous_batching_equals_one_big_batch(tiny_model, prompts, small_room):
    jobs = make_jobs(prompts, [0.0, 0.3, 1.0])
    # stop on a frequent token so sequences finish at different steps and slots get reused
    big = run(tiny_model, jobs, stop_ids=[2, 17, 100])
    for batch_size in (2, 5):
        small = run(tiny_model, jobs, stop_ids=[2, 17, 100], batch_size=batch_size)
        assert small.keys() == big.keys()
        for tag, r in big.items():
            s = small[tag]
            assert (s.target_ids, s.source, s.finish_reason) == (
                r.target_ids,
                r.source,
                r.finish_reason,
            )
            assert torch.allclose(
                torch.tensor(s.expert_logprob), torch.tensor(r.expert_logprob), atol=1e-5
            )
    assert {r.finish_reason for r in big.values()} == {"stop", "length"}


def test_limits_stop_and_prompt_too_long(tiny_model, prompts):
    naive, expert = prompts[5]
    jobs = [Job(1, 0.5, naive, expert, "long"), Job(2, 1.0, naive[:5], None, "closed-book")]
    results = run(tiny_model, jobs, max_model_len=len(expert) + 3, max_new_tokens=50)
    assert results["long"].finish_reason == "length" and len(results["long"].target_ids) == 3
    closed = results["closed-book"]
    assert closed.expert_logprob is None and len(closed.naive_logprob) == len(closed.target_ids)
    too_long = run(tiny_model, jobs[:1], max_model_len=len(expert))["long"]
    assert (too_long.finish_reason, too_long.target_ids) == ("prompt_too_long", [])
    first = run(tiny_model, jobs[1:], stop_ids=[])["closed-book"].target_ids[0]
    stopped = run(tiny_model, jobs[1:], stop_ids=[first])["closed-book"]
    assert (stopped.target_ids, stopped.finish_reason) == ([first], "stop")
    off = run(tiny_model, make_jobs(prompts[:1], [0.0]), other_logprobs=False)[(0, 0.0)]
    assert off.naive_logprob is None and len(off.expert_logprob) == len(off.target_ids)


def test_no_result_lost_when_the_batch_empties_before_too_long_jobs(tiny_model, tiny_tokenizer):
    """Issue 13's shape: 8 short prompts then 6 too long, lam 0 and 0.5, batch 16. The lam=0
    results waiting for their naive scores must come out although the queue left after the live
    batch empties holds only too-long jobs (they used to be dropped: 20 of 28 results)."""
    short = [tiny_tokenizer(f"Question {i}?")["input_ids"] for i in range(8)]
    long = [tiny_tokenizer("word " * 400)["input_ids"]] * 6
    jobs = [
        Job(sequence_key(0, f"ex{i}", 0, 0), lam, naive, naive + [5, 6], (i, lam))
        for i, naive in enumerate(short + long)
        for lam in (0.0, 0.5)
    ]
    kw = {"stop_ids": [], "batch_size": 16, "max_new_tokens": 6, "max_model_len": 128}
    results = list(HFEngine(tiny_model, SAMPLING, **kw).generate(jobs))
    assert sorted(r.tag for r in results) == sorted(j.tag for j in jobs)
    reasons = {r.tag: r.finish_reason for r in results}
    assert [reasons[(i, 0.0)] for i in range(14)] == ["length"] * 8 + ["prompt_too_long"] * 6
    for r in results:
        if r.finish_reason == "length":
            assert len(r.target_ids) == len(r.expert_logprob) == len(r.naive_logprob) == 6


def test_first_token_frequencies_follow_the_mixture(tiny_model, tiny_tokenizer):
    """Over 1500 keys, first tokens ~ (1-lam) q_expert + lam q_naive (chi-square), naive ~ lam."""
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # sharper logits, so the two conditionals clearly differ
        model.model.norm.weight.fill_(6.0)
    naive = tiny_tokenizer("Who founded the Mirel guild?")["input_ids"]
    expert = tiny_tokenizer("Input: 12345 Output: 54321.")["input_ids"]
    lam, n, sampling = 0.3, 1500, Sampling(temperature=1.0, top_k=0)
    jobs = [Job(sequence_key(7, "x", s, 0), lam, naive, expert, s) for s in range(n)]
    results = run(model, jobs, sampling, batch_size=n, max_new_tokens=1, stop_ids=[])
    first = torch.tensor([r.target_ids[0] for r in results.values()])
    naive_first = sum(r.source[0] for r in results.values())
    assert abs(naive_first - lam * n) < 4 * (n * lam * (1 - lam)) ** 0.5
    qe = torch.softmax(next_logits(model, expert).double()[0], -1)
    qn = torch.softmax(next_logits(model, naive).double()[0], -1)
    assert (qe - qn).abs().sum() > 0.5
    counts = torch.bincount(first, minlength=qe.numel()).double()

    def chi2(p):
        expected = p * n
        big = expected >= 5
        e = torch.cat([expected[big], expected[~big].sum().reshape(1)])
        o = torch.cat([counts[big], counts[~big].sum().reshape(1)])
        return float(((o - e) ** 2 / e).sum()), int(big.sum())

    stat, dof = chi2((1 - lam) * qe + lam * qn)
    assert stat < dof + 6 * (2 * dof) ** 0.5
    wrong, dof = chi2(qe)  # the test can tell the mixture from the expert alone
    assert wrong > dof + 6 * (2 * dof) ** 0.5


def test_common_random_numbers_across_lambda(tiny_model, prompts):
    results = run(tiny_model, make_jobs(prompts, [0.3, 0.5]), stop_ids=[])
    assert sum(r.source[0] for (_, lam), r in results.items() if lam == 0.5) > 0
    for i in range(len(prompts)):
        low, high = results[(i, 0.3)].source, results[(i, 0.5)].source
        assert all(
            a <= b for a, b in zip(low, high, strict=False)
        )  # naive steps at 0.3 are naive at 0.5


def test_gqa_attention_changes_no_number(prompts, monkeypatch):
    """On a grouped-query model (4 heads, 2 KV heads) the engine's `_gqa_sdpa` gives the very
    tokens and log-probs of transformers' own sdpa (which repeats the KV heads)."""
    import contextlib

    from transformers import LlamaConfig, LlamaForCausalLM

    from mixsd.generate import hf_engine

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa",
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    jobs = make_jobs(prompts, [0.0, 0.5, 1.0])
    seen = []
    model.register_forward_hook(lambda m, a, o: seen.append(m.config._attn_implementation))
    gqa = run(model, jobs)
    assert set(seen) == {hf_engine.GQA_SDPA} and model.config._attn_implementation == "sdpa"
    monkeypatch.setattr(hf_engine, "gqa_attention", lambda model: contextlib.nullcontext())
    plain = run(model, jobs)
    assert len(plain) == 18 and all(len(r.target_ids) > 0 for r in plain.values())
    for tag, r in plain.items():
        assert (gqa[tag].target_ids, gqa[tag].expert_logprob, gqa[tag].naive_logprob) == (
            r.target_ids, r.expert_logprob, r.naive_logprob,
        )  # fmt: skip
