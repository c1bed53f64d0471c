"""Per-token NLL of targets under a model equals an independent step-by-step computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsd.evaluate.nll import ecdf, rows_nll, summarize, token_nll


def _manual_nll(model, prompt, target):
    """One unbatched forward per target token, log_softmax of the last position's logits."""
    out = []
    for t in range(len(target)):
        ids = torch.tensor([prompt + target[:t]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].double()
        out.append(-torch.log_softmax(logits, -1)[target[t]].item())
    return np.array(out)


def _examples(vocab):
    g = torch.Generator().manual_seed(0)
    lengths = [(5, 3), (9, 1), (2, 7), (12, 4)]
    return [
        (
            torch.randint(3, vocab, (p,), generator=g).tolist(),
            torch.randint(3, vocab, (t,), generator=g).tolist(),
        )
        for p, t in lengths
    ]


def test_token_nll_equals_manual_loop(tiny_model):
    examples = _examples(tiny_model.config.vocab_size)
    got = token_nll(tiny_model, [p for p, _ in examples], [t for _, t in examples])
    for (prompt, target), values in zip(examples, got, strict=True):
        assert values.dtype == np.float32 and values.shape == (len(target),)
        np.testing.assert_allclose(values, _manual_nll(tiny_model, prompt, target), atol=1e-4)


def test_rows_nll_groups_by_label_skips_empty_and_limits(tiny_model):
    examples = _examples(tiny_model.config.vocab_size)
    rows = [
        {"kind": "mixsd", "lam": 0.5, "prompt_ids": examples[3][0], "target_ids": examples[3][1]},
        {"kind": "sft", "lam": None, "prompt_ids": examples[0][0], "target_ids": examples[0][1]},
        {"kind": "mixsd", "lam": 0.3, "prompt_ids": examples[1][0], "target_ids": examples[1][1]},
        {"kind": "mixsd", "lam": 0.3, "prompt_ids": examples[2][0], "target_ids": examples[2][1]},
        {"kind": "mixsd", "lam": 0.3, "prompt_ids": examples[3][0], "target_ids": []},  # too long
    ]
    got = rows_nll(tiny_model, rows, batch_size=2, buffer=1)
    assert list(got) == ["sft", "λ=0.3", "λ=0.5"]  # sft first, then by λ (not as text)
    ref = {i: _manual_nll(tiny_model, *examples[i]) for i in range(4)}
    np.testing.assert_allclose(got["sft"], ref[0], atol=1e-4)
    np.testing.assert_allclose(
        np.sort(got["λ=0.3"]), np.sort(np.concatenate([ref[1], ref[2]])), atol=1e-4
    )
    np.testing.assert_allclose(got["λ=0.5"], ref[3], atol=1e-4)
    limited = rows_nll(tiny_model, rows, batch_size=4, limit=1)
    assert limited["λ=0.3"].size == len(examples[1][1])  # the first λ=0.3 row only


def test_summary_and_ecdf():
    v = np.array([3.0, 1.0, 2.0, 4.0], dtype=np.float32)
    assert summarize(v) == {"tokens": 4, "mean": 2.5, "median": 2.5, "p90": pytest.approx(3.7)}
    x, y = ecdf(v)
    assert x.tolist() == [1, 2, 3, 4] and y.tolist() == [0.25, 0.5, 0.75, 1.0]
    x, y = ecdf(np.arange(10_000, dtype=np.float32), points=100)
    assert x.size == 100 and y[-1] == 1.0 and np.all(np.diff(x) > 0)
