"""Diagonal empirical Fisher and weight drift, against hand computations on a 2-parameter model."""

from __future__ import annotations

import math

import pytest
import torch

from mixsd.evaluate.fisher import diagonal_fisher, drift, sequence_log_likelihood
from mixsd.evaluate.nll import token_nll


class Logistic(torch.nn.Module):
    """p(y=1 | x) = sigmoid(w . x): two parameters."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float32))


def _loglik(model, example):
    x, y = example
    z = model.w @ torch.tensor(x, dtype=torch.float32)
    return y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z)


def test_fisher_of_logistic_model_by_hand():
    # At w = 0, sigmoid = 1/2 everywhere, so d/dw log p = (y - 1/2) x = ±x/2 and
    # F = mean(x^2) / 4 = ((1 + 9) / 2, (4 + 1) / 2) / 4 = (1.25, 0.625).
    model = Logistic([0.0, 0.0])
    f = diagonal_fisher(model, [((1.0, 2.0), 1.0), ((3.0, -1.0), 0.0)], _loglik, progress=False)
    assert torch.allclose(f["w"], torch.tensor([1.25, 0.625]))
    assert model.w.grad is None and model.w.tolist() == [0.0, 0.0]


def test_fisher_at_nonzero_weights_by_hand():
    # w = (1, 0), x = (2, 1), y = 1: sigmoid(2) = s, gradient (1 - s) * (2, 1).
    model = Logistic([1.0, 0.0])
    s = 1 / (1 + math.exp(-2))
    f = diagonal_fisher(model, [((2.0, 1.0), 1.0)], _loglik, progress=False)
    assert f["w"].tolist() == pytest.approx([(1 - s) ** 2 * 4, (1 - s) ** 2], rel=1e-6)


def test_drift_by_hand():
    fisher = {"w": torch.tensor([1.25, 0.625])}
    theta0 = {"w": torch.tensor([0.0, 0.0])}
    theta = {"w": torch.tensor([1.0, -2.0])}
    d = drift(fisher, theta0, theta)
    assert d["fisher"] == pytest.approx(1.25 * 1 + 0.625 * 4)  # 3.75
    assert d["l2"] == pytest.approx(math.sqrt(5))
    assert drift(fisher, theta0, theta0) == {"fisher": 0.0, "l2": 0.0}
    with pytest.raises(ValueError, match="parameter 'w': shape"):
        drift(fisher, theta0, {"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="'w' missing"):
        drift(fisher, theta0, {})


def test_sequence_log_likelihood_matches_token_nll(tiny_model):
    prompt, target = [5, 6, 7, 8], [9, 10, 11]
    ll = sequence_log_likelihood(tiny_model, (prompt, target))
    nll = token_nll(tiny_model, [prompt], [target])[0]
    assert ll.item() == pytest.approx(-float(nll.sum()), abs=1e-4)
    tiny_model.zero_grad(set_to_none=True)
