"""Forgetting with no gold: how far a checkpoint's next-token distributions moved from the base's,
along the base's own greedy answers to held-out prompts.

For each prompt the base answers once (greedy, T=0); then, teacher-forced over prompt + answer,
at every answer position t both models give a next-token distribution given prompt +
answer[:t]. Reported per checkpoint: the mean per-token KL(base || model) and the mean per-token
change of the answer's log-likelihood (model minus base). Forgetting shows as this distribution
shift before it shows as wrong answers, and it needs no gold answer, so any chat prompt serves.

Teacher forcing runs on packed batches (`mixsd.train.packing`: no padding, logits only at the
answer positions). The base's distributions are computed once and kept coarsened (`BaseView`: its
top 1024 tokens + one bucket for the rest, 12 KB per answer token; the full fp32 distributions of
250 prompts x ~32 tokens x 49k vocabulary would be ~1.5 GB), so a checkpoint costs one forward.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mixsd.errors import MixsdError
from mixsd.train.data import Example
from mixsd.train.packing import Packed, pack, packed_logits

TOP_K = 1024  # base tokens kept per answer position (see `BaseView`)
CHAT_PROMPTS = Path(__file__).parent / "data" / "chat_prompts.jsonl"


def load_chat_prompts(path: str | Path = CHAT_PROMPTS) -> list[str]:
    """The general chat prompts (`{"id", "prompt"}` per line), in file order."""
    prompts = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        row = json.loads(line)
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise MixsdError(f"{path}:{n}: expected a non-empty string 'prompt'")
        prompts.append(row["prompt"])
    return prompts


def token_kl(base_logits: torch.Tensor, model_logits: torch.Tensor) -> torch.Tensor:
    """KL(base || model) in nats at each of n positions, from logits [n, vocab] -> [n] float32:
    sum_v p_base(v) (log p_base(v) - log p_model(v)), log-softmax in fp32. The exact reference;
    the probe itself uses `coarse_kl` against a compact view of the base."""
    base = torch.log_softmax(base_logits.float(), -1)
    model = torch.log_softmax(model_logits.float(), -1)
    return (base.exp() * (base - model)).sum(-1)


def answer_batches(
    prompts_ids: list[list[int]], answers_ids: list[list[int]], batch_size: int
) -> Iterator[tuple[list[int], Packed]]:
    """Packed teacher-forced batches of (prompt, answer) pairs, `batch_size` pairs each, sorted by
    length so rows fill well: `(pair indices, Packed)`, the pack's targets being the answers.
    Pairs with an empty answer are left out."""
    order = sorted(
        (i for i, a in enumerate(answers_ids) if a),
        key=lambda i: len(prompts_ids[i]) + len(answers_ids[i]),
    )
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        examples = [
            Example(
                ids=np.asarray(prompts_ids[i] + answers_ids[i], dtype=np.int64),
                n_prompt=len(prompts_ids[i]),
                id=str(i),
                answer=None,
            )
            for i in chunk
        ]
        yield chunk, pack(examples)


def answer_logits(model, batch: Packed) -> torch.Tensor:
    """fp32 logits [K, vocab] of `model` at the K answer positions of the packed `batch`, in
    example order (pair 0's answer positions first), on the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = packed_logits(model, batch, device)
    return logits[batch.example_order().to(device)]


def base_answers(
    model, tokenizer, prompts_ids: list[list[int]], max_new_tokens: int, batch_size: int
) -> list[list[int]]:
    """The base's greedy answer ids to each prompt (`mixsd.generate.greedy.greedy_answer_ids`;
    an answer that stopped keeps its stop token: ending is part of the distribution)."""
    from mixsd.generate.greedy import greedy_answer_ids

    return greedy_answer_ids(model, tokenizer, prompts_ids, max_new_tokens, batch_size, "kl base")


@dataclass
class _Batch:
    """The base's view of one packed batch of K answer positions (example order)."""

    pairs: list[int]  # indices of the batch's (prompt, answer) pairs
    packed: Packed
    top_ids: torch.Tensor  # [K, k] the base's k most likely next tokens
    top_logp: torch.Tensor  # [K, k] their log-probs
    rest_logp: torch.Tensor  # [K] log of the base's mass on every other token
    answer_logp: torch.Tensor  # [K] log-prob of the answer token


@dataclass
class BaseView:
    """The base's next-token distributions along its answers, coarsened to its `top_k` most likely
    tokens plus one bucket for the rest: 12 bytes x top_k per answer token (12 KB at top_k 1024)
    instead of 4 x 49k (~200 KB) for the full fp32 distribution."""

    answers_ids: list[list[int]]
    batches: list[_Batch]


def coarsen(logp: torch.Tensor, top_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [K, vocab] on the partition {each of `top_ids` [K, k]} + {every other token}:
    `(top [K, k], rest [K])`, the rest's log mass summed without cancellation (logsumexp over
    the other tokens, not log(1 - sum))."""
    rest = logp.scatter(1, top_ids, float("-inf")).logsumexp(-1)
    return logp.gather(1, top_ids), rest


def coarse_kl(
    base_top: torch.Tensor,
    base_rest: torch.Tensor,
    model_top: torch.Tensor,
    model_rest: torch.Tensor,
) -> torch.Tensor:
    """KL(base || model) [K] between two distributions coarsened to the same partition (`coarsen`):
    the KL over the base's top tokens and the one rest bucket. By the data-processing inequality it
    is at most the full KL, and equal when the rest is a single token; the gap is the base's rest
    mass times the KL inside the rest. On SmolLM2's answers, against noised weights, the base's
    top 64 / 256 / 1024 / 4096 tokens kept 91.5% / 96.7% / 99.0% / 99.8% of the full KL."""
    top = (base_top.exp() * (base_top - model_top)).sum(-1)
    return top + base_rest.exp() * (base_rest - model_rest)


def base_view(
    base,
    prompts_ids: list[list[int]],
    answers_ids: list[list[int]],
    batch_size: int,
    top_k: int = TOP_K,
) -> BaseView:
    """The base's coarsened distributions at every answer position (see `BaseView`); `top_k` is
    capped at vocab - 1 so the rest bucket is never empty (at vocab - 1 the KL is exact)."""
    batches = []
    for pairs, packed in answer_batches(prompts_ids, answers_ids, batch_size):
        logp = torch.log_softmax(answer_logits(base, packed), -1)
        top_ids = logp.topk(min(top_k, logp.shape[1] - 1), -1).indices
        top_logp, rest_logp = coarsen(logp, top_ids)
        targets = packed.targets[packed.example_order()].unsqueeze(1).to(logp.device)
        answer_logp = logp.gather(1, targets).squeeze(1)
        batches.append(_Batch(pairs, packed, top_ids, top_logp, rest_logp, answer_logp))
    return BaseView(answers_ids, batches)


def kl_to_view(view: BaseView, model) -> dict:
    """KL(base || model) and the log-likelihood change along the base's answers.

    `{"kl": mean per token (coarse_kl), "delta_loglik": mean per token of log p_model - log
    p_base of the answer token (nats), "tokens": answer tokens scored, "prompts": prompts scored,
    "per_prompt": {"index", "kl", "delta_loglik", "tokens"}}`, the per-prompt lists holding each
    scored prompt's index in `answers_ids`, its own per-token means and its token count (for
    bootstrap CIs over prompts), in prompt order.
    Prompts with an empty answer (too long for the model) are left out.
    """
    answers = view.answers_ids
    kl_sum, dll_sum = np.zeros(len(answers)), np.zeros(len(answers))
    for b in view.batches:
        logp = torch.log_softmax(answer_logits(model, b.packed), -1)
        kl = coarse_kl(b.top_logp, b.rest_logp, *coarsen(logp, b.top_ids))
        targets = b.packed.targets[b.packed.example_order()].unsqueeze(1).to(logp.device)
        dll = logp.gather(1, targets).squeeze(1) - b.answer_logp
        at = 0
        for i in b.pairs:  # example order: each pair's answer positions, consecutive
            n = len(answers[i])
            kl_sum[i] = kl[at : at + n].sum().item()
            dll_sum[i] = dll[at : at + n].sum().item()
            at += n
    scored = [i for i, a in enumerate(answers) if a]
    if not scored:
        raise MixsdError("kl: no prompt has a base answer to score")
    tokens = np.array([len(answers[i]) for i in scored])
    return {
        "kl": float(kl_sum.sum() / tokens.sum()),
        "delta_loglik": float(dll_sum.sum() / tokens.sum()),
        "tokens": int(tokens.sum()),
        "prompts": len(scored),
        "per_prompt": {
            "index": scored,
            "kl": (kl_sum[scored] / tokens).tolist(),
            "delta_loglik": (dll_sum[scored] / tokens).tolist(),
            "tokens": tokens.tolist(),
        },
    }


def kl_to_base(
    base,
    model,
    prompts_ids: list[list[int]],
    answers_ids: list[list[int]],
    batch_size: int,
    top_k: int = TOP_K,
) -> dict:
    """`kl_to_view` of `model` against `base` along `answers_ids` (one-off; `KLProbe` keeps the
    base's view for many checkpoints)."""
    return kl_to_view(base_view(base, prompts_ids, answers_ids, batch_size, top_k), model)


class KLProbe:
    """`kl_to_view` of checkpoints against one base: at construction the base answers the prompts
    (greedy) and its view along the answers is kept (`base_view`; the base is then freed); each
    call loads one checkpoint (an HF dir or a LoRA adapter dir,
    `mixsd.evaluate.checkpoints.load_checkpoint`) and scores it with one forward."""

    def __init__(
        self,
        base_dir: str | Path,
        tokenizer,
        prompts_ids: list[list[int]],
        max_new_tokens: int,
        batch_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        allow_pickle: bool = False,
        top_k: int = TOP_K,
    ):
        from mixsd.data.models import load_model

        self.device, self.dtype, self.allow_pickle = device, dtype, allow_pickle
        base = load_model(base_dir, device, dtype, allow_pickle)
        answers = base_answers(base, tokenizer, prompts_ids, max_new_tokens, batch_size)
        self.view = base_view(base, prompts_ids, answers, batch_size, top_k)

    def __call__(self, model_dir: str | Path) -> dict:
        """`kl_to_view` of the checkpoint in `model_dir`."""
        from mixsd.evaluate.checkpoints import load_checkpoint

        model = load_checkpoint(model_dir, self.device, self.dtype, self.allow_pickle)
        return kl_to_view(self.view, model)
