"""How far did fine-tuning move the weights along directions the base model's skills depend on?

Diagonal EMPIRICAL Fisher of the base, estimated PER EXAMPLE on held-out data (labels from the
data, not sampled from the model):

    F_i = (1/N) * sum_n ( d/dθ_i log p_θ0(y_n | x_n) )^2,   log p summed over the target tokens

and per checkpoint θ the Fisher-weighted drift sum_i F_i (θ_i - θ0_i)^2 (a second-order proxy for
the rise of held-out loss) beside the plain L2 drift ||θ - θ0||_2. One backward pass per example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mixsd.progress import track


def sequence_log_likelihood(model, example: tuple[list[int], list[int]]) -> torch.Tensor:
    """log p(target | prompt) of a causal LM: the sum over target tokens, a scalar with grad,
    from the one teacher-forced scorer (`mixsd.modeling.score_tokens`)."""
    from mixsd.modeling import score_tokens

    return score_tokens(model, [example])[0].sum()


def diagonal_fisher(
    model,
    examples: Sequence,
    log_likelihood: Callable = sequence_log_likelihood,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-example empirical diagonal Fisher `{param name: tensor shaped like the param}` (fp32).

    `log_likelihood(model, example)` -> scalar log p of one example. The model's weights are not
    changed; its gradients are cleared afterwards.
    """
    if not examples:
        raise ValueError("the Fisher needs at least one example")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for example in track(examples, "fisher", "ex", enabled=progress):
        model.zero_grad(set_to_none=True)
        log_likelihood(model, example).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.float() ** 2
    model.zero_grad(set_to_none=True)
    return {n: f / len(examples) for n, f in fisher.items()}


def drift(
    fisher: dict[str, torch.Tensor],
    theta0: dict[str, torch.Tensor],
    theta: dict[str, torch.Tensor],
) -> dict[str, float]:
    """`{"fisher": sum_i F_i (θ_i - θ0_i)^2, "l2": ||θ - θ0||_2}` over the parameters of `fisher`.

    Every Fisher parameter must be in both state dicts with the same shape (else ValueError naming
    it); the sums are accumulated in float64.
    """
    weighted = squared = 0.0
    for name, f in fisher.items():
        if name not in theta or name not in theta0:
            raise ValueError(f"parameter '{name}' missing from a checkpoint")
        a, b = theta0[name], theta[name]
        if a.shape != b.shape:
            raise ValueError(
                f"parameter '{name}': shape {tuple(b.shape)}, base has {tuple(a.shape)}"
            )
        d = b.detach().to("cpu", torch.float64) - a.detach().to("cpu", torch.float64)
        weighted += float((f.to("cpu", torch.float64) * d * d).sum())
        squared += float((d * d).sum())
    return {"fisher": weighted, "l2": squared**0.5}
