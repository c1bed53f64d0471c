"""The mixing core: keyed RNG, token choice and the mixing step, without any model."""

import itertools
import math

import numpy as np
import pytest
import torch

from mixsd.generate.core import (
    COIN,
    TOKEN,
    Sampling,
    choose_tokens,
    keyed_uniforms,
    mix_step,
    sequence_key,
    token_logprobs,
)

N = 200_000


def test_sequence_key_is_pure_and_63_bit():
    a = sequence_key(1, "ex-1", 0, 0)
    assert a == sequence_key(1, "ex-1", 0, 0)
    others = {
        sequence_key(s, i, n, t)
        for s, i, n, t in [
            (2, "ex-1", 0, 0),
            (1, "ex-2", 0, 0),
            (1, "ex-1", 1, 0),
            (1, "ex-1", 0, 1),
        ]
    }
    assert a not in others and len(others) == 4
    assert all(0 <= k < 2**63 for k in others | {a})


def test_keyed_uniforms_are_pure_uniform_and_purpose_separated():
    key = sequence_key(0, "x", 0, 0)
    t = np.arange(N)
    u = keyed_uniforms(np.full(N, key), t, TOKEN)
    assert np.array_equal(u, keyed_uniforms(np.full(N, key), t, TOKEN))
    assert u.min() >= 0.0 and u.max() < 1.0
    # mean and variance of U(0,1) within ~6 standard errors
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / N)
    assert abs(u.var() - 1 / 12) < 0.002
    # deciles are flat (chi-square, 9 dof; 40 is far beyond the 0.9999 quantile ~33.7)
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert ((counts - N / 10) ** 2 / (N / 10)).sum() < 40
    coin = keyed_uniforms(np.full(N, key), t, COIN)
    assert abs(np.corrcoef(u, coin)[0, 1]) < 0.02
    # neighbouring positions are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02


def test_uniform_of_a_position_does_not_depend_on_the_batch_it_is_in():
    keys = [sequence_key(0, f"e{i}", 0, 0) for i in range(5)]
    batch = keyed_uniforms(keys, [3, 0, 7, 7, 1], COIN)
    alone = [keyed_uniforms([k], [p], COIN)[0] for k, p in zip(keys, [3, 0, 7, 7, 1], strict=True)]
    assert np.array_equal(batch, alone)


def test_common_random_numbers_across_lambda():
    """lam is not in the key: naive steps at lam=0.3 are a subset of those at lam=0.5."""
    u = keyed_uniforms(np.full(1000, sequence_key(7, "q", 0, 0)), np.arange(1000), COIN)
    naive_03, naive_05 = set(np.flatnonzero(u < 0.3)), set(np.flatnonzero(u < 0.5))
    assert naive_03 < naive_05
    assert abs(len(naive_05) / 1000 - 0.5) < 0.06


def test_greedy_is_argmax():
    logits = torch.randn(8, 50)
    tokens = choose_tokens(logits, torch.rand(8), Sampling(temperature=0))
    assert torch.equal(tokens, logits.argmax(-1))


def _frequencies(logits_row, sampling, n=N):
    u = torch.from_numpy(keyed_uniforms(np.full(n, 12345), np.arange(n), TOKEN))
    tokens = choose_tokens(logits_row.expand(n, -1), u, sampling)
    return torch.bincount(tokens, minlength=logits_row.numel()).double() / n


def _assert_close(freq, probs, n=N):
    # each frequency within 6 binomial standard errors (plus a floor for zero-probability tokens)
    bound = 6 * torch.sqrt(probs * (1 - probs) / n) + 1e-9
    assert torch.all((freq - probs).abs() <= bound), (freq, probs)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampling_follows_softmax_over_temperature(temperature):
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0])
    freq = _frequencies(logits, Sampling(temperature=temperature, top_k=0))
    _assert_close(freq, torch.softmax(logits.double() / temperature, -1))


def test_top_k_renormalises_over_the_k_best():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0])
    freq = _frequencies(logits, Sampling(temperature=1.0, top_k=2))
    probs = torch.zeros(5, dtype=torch.float64)
    probs[[3, 2]] = torch.softmax(torch.tensor([3.0, 2.0], dtype=torch.float64), -1)
    _assert_close(freq, probs)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    freq = _frequencies(logits, Sampling(temperature=1.0, top_k=0, top_p=0.7))
    # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the first two tokens stay
    _assert_close(freq, torch.tensor([0.5, 0.3, 0.0, 0.0], dtype=torch.float64) / 0.8)


def test_mix_step_picks_rows_by_coin_and_marginal_is_the_mixture():
    pe = torch.tensor([0.7, 0.2, 0.1, 0.0])
    pn = torch.tensor([0.1, 0.1, 0.2, 0.6])
    expert, naive = torch.log(pe + 1e-30), torch.log(pn + 1e-30)
    lam = 0.3
    keys = np.full(N, sequence_key(3, "m", 0, 0))
    coin = torch.from_numpy(keyed_uniforms(keys, np.arange(N), COIN))
    tok = torch.from_numpy(keyed_uniforms(keys, np.arange(N), TOKEN))
    tokens, source = mix_step(
        expert.expand(N, -1),
        naive.expand(N, -1),
        coin,
        tok,
        torch.full((N,), lam),
        Sampling(1.0, 0),
    )
    assert torch.equal(source, coin < lam)
    assert abs(source.double().mean().item() - lam) < 6 * np.sqrt(lam * (1 - lam) / N)
    freq = torch.bincount(tokens, minlength=4).double() / N
    _assert_close(freq, ((1 - lam) * pe + lam * pn).double())
    # token 3 has zero expert probability: it can only come from a naive step
    assert torch.all(source[tokens == 3])


def test_token_logprobs_are_raw_log_softmax():
    logits = torch.randn(4, 9)
    tokens = torch.tensor([0, 3, 8, 5])
    expected = torch.log_softmax(logits, -1)[torch.arange(4), tokens]
    assert torch.allclose(token_logprobs(logits, tokens), expected)


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_sampling_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Sampling(**kwargs)


def _reference_cdf(row: list[float], sampling: Sampling) -> tuple[list[int], list[float]]:
    """The defined rule, in plain Python: order tokens by (logit descending, id ascending) (plain
    sampling: by id), keep the top-k, the top-p prefix; (ids, their CDF) to walk."""
    ids = list(range(len(row)))
    if sampling.top_k or sampling.top_p < 1.0:
        ids.sort(key=lambda i: (-row[i], i))
    if sampling.top_k:
        ids = ids[: sampling.top_k]
    top = max(row)
    weights = [math.exp((row[i] - top) / sampling.temperature) for i in ids]
    total = sum(weights)
    probs = [w / total for w in weights]
    if sampling.top_p < 1.0:
        before = [0.0, *itertools.accumulate(probs)][:-1]
        probs = [p if b < sampling.top_p else 0.0 for p, b in zip(probs, before, strict=True)]
    return ids, list(itertools.accumulate(probs))


def _reference_choice(ids: list[int], cdf: list[float], u: float) -> int:
    """The inverse CDF of `_reference_cdf` at `u`."""
    return next((i for i, c in zip(ids, cdf, strict=True) if c > u * cdf[-1]), ids[-1])


def _midpoints(ids: list[int], cdf: list[float]) -> list[float]:
    """One u in the middle of each token's CDF interval (no float rounding can move it)."""
    out = []
    for u in np.linspace(0, 1, 2001)[:-1]:
        tok = _reference_choice(ids, cdf, u)
        if not out or tok != out[-1][0]:
            out.append((tok, u))
    return [u for _, u in out] + [0.9999]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(1.0, 4, 1.0),
        Sampling(1.0, 64, 1.0),
        Sampling(1.0, 6, 0.95),
        Sampling(1.0, 0, 0.95),
        Sampling(1.0, 0, 1.0),
    ],
)
def test_exact_ties_are_broken_by_lowest_token_id(dtype, sampling):
    """Equal logits (ids 9 and 318 at -5.956415, as two engines once split on; bf16 ties) pick
    the same token as the defined rule, alone or in a batch, whatever order a sort leaves."""
    logits = torch.full((1000,), -12.0)
    logits[[318, 9, 500, 7, 640]] = -5.956415  # five-way tie
    logits[[40, 20]] = -3.0  # a tie above it
    logits[100:160] = -9.0  # a long tie that top-k 64 cuts in the middle
    logits = logits.to(dtype)
    ids, cdf = _reference_cdf(logits.double().tolist(), sampling)
    us = _midpoints(ids, cdf)
    want = [_reference_choice(ids, cdf, u) for u in us]
    alone = [int(choose_tokens(logits[None], torch.tensor([u]), sampling)) for u in us]
    noise = torch.randn(len(us), 1000).to(dtype)
    batch = torch.cat([logits.expand(len(us), -1), noise])  # other rows beside it
    together = choose_tokens(batch, torch.tensor(us + [0.5] * len(us)), sampling)[: len(us)]
    assert alone == want and together.tolist() == want
    assert {9, 7} & set(want)  # the draws do land in the tie


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_tie_takes_the_lowest_id(dtype):
    logits = torch.zeros(3, 500, dtype=dtype)
    logits[:, [318, 9, 77]] = 2.5
    tokens = choose_tokens(logits, torch.rand(3), Sampling(temperature=0))
    assert tokens.tolist() == [9, 9, 9]
