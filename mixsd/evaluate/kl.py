"""Forgetting with no gold: how far a checkpoint's next-token distributions moved from the base's,
along the base's own greedy answers to held-out prompts.

For each prompt the base answers once (greedy, T=0); then, teacher-forced over prompt + answer,
at every answer position t both models give a next-token distribution given prompt +
answer[:t]. Reported per checkpoint: the mean per-token KL(base || model) and the mean per-token
change of the answer's log-likelihood (model minus base). Forgetting shows as this distribution
shift before it shows as wrong answers, and it needs no gold answer, so any chat prompt serves.

Base and checkpoint run side by side on the same packed batch (`mixsd.train.packing`: no padding,
logits only at the answer positions), so no base distribution is held beyond one batch: a cache of
250 prompts x ~32 positions x 49k vocabulary would be ~1.5 GB in fp32. The cost is a second
forward of the base per checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from mixsd.errors import MixsdError
from mixsd.train.data import Example
from mixsd.train.packing import Packed, pack, packed_logits

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
    sum_v p_base(v) (log p_base(v) - log p_model(v)), log-softmax in fp32."""
    return _kl(
        torch.log_softmax(base_logits.float(), -1), torch.log_softmax(model_logits.float(), -1)
    )


def _kl(base_logp: torch.Tensor, model_logp: torch.Tensor) -> torch.Tensor:
    """KL(base || model) [n] from log-probabilities [n, vocab]."""
    return (base_logp.exp() * (base_logp - model_logp)).sum(-1)


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
    example order (pair 0's answer positions first), on the CPU."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = packed_logits(model, batch, device)
    return logits[batch.example_order().to(device)].cpu()


def base_answers(
    model, tokenizer, prompts_ids: list[list[int]], max_new_tokens: int, batch_size: int
) -> list[list[int]]:
    """The base's greedy answer ids to each prompt (`mixsd.generate.greedy.greedy_answer_ids`;
    an answer that stopped keeps its stop token: ending is part of the distribution)."""
    from mixsd.generate.greedy import greedy_answer_ids

    return greedy_answer_ids(model, tokenizer, prompts_ids, max_new_tokens, batch_size, "kl base")


def kl_to_base(
    base,
    model,
    prompts_ids: list[list[int]],
    answers_ids: list[list[int]],
    batch_size: int,
) -> dict:
    """KL(base || model) and the log-likelihood change along the base's answers.

    `{"kl": mean per token, "delta_loglik": mean per token of log p_model - log p_base (nats),
    "tokens": answer tokens scored, "prompts": prompts scored, "per_prompt": {"kl",
    "delta_loglik", "tokens"}}`, the per-prompt lists holding each prompt's own per-token means
    and token count (for bootstrap CIs over prompts), in prompt order. Prompts with an empty
    answer (too long for the model) are left out.
    """
    kl_sum = np.zeros(len(prompts_ids))
    dll_sum = np.zeros(len(prompts_ids))
    for chunk, batch in answer_batches(prompts_ids, answers_ids, batch_size):
        base_logp = torch.log_softmax(answer_logits(base, batch), -1)
        model_logp = torch.log_softmax(answer_logits(model, batch), -1)
        targets = batch.targets[batch.example_order()].unsqueeze(1)
        kl = _kl(base_logp, model_logp)
        dll = (model_logp.gather(1, targets) - base_logp.gather(1, targets)).squeeze(1)
        at = 0
        for i in chunk:  # example order: each pair's answer positions, consecutive
            n = len(answers_ids[i])
            kl_sum[i] = kl[at : at + n].sum().item()
            dll_sum[i] = dll[at : at + n].sum().item()
            at += n
    scored = [i for i, a in enumerate(answers_ids) if a]
    tokens = np.array([len(answers_ids[i]) for i in scored])
    if not scored:
        raise MixsdError("kl: no prompt has a base answer to score")
    return {
        "kl": float(kl_sum.sum() / tokens.sum()),
        "delta_loglik": float(dll_sum.sum() / tokens.sum()),
        "tokens": int(tokens.sum()),
        "prompts": len(scored),
        "per_prompt": {
            "kl": (kl_sum[scored] / tokens).tolist(),
            "delta_loglik": (dll_sum[scored] / tokens).tolist(),
            "tokens": tokens.tolist(),
        },
    }


class KLProbe:
    """`kl_to_base` of checkpoints against one base: the base is loaded and answers the prompts
    once, at construction; each call loads one checkpoint (an HF dir or a LoRA adapter dir,
    `mixsd.evaluate.checkpoints.load_checkpoint`) and scores it."""

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
    ):
        from mixsd.data.models import load_model

        self.device, self.dtype, self.allow_pickle = device, dtype, allow_pickle
        self.batch_size, self.prompts_ids = batch_size, prompts_ids
        self.base = load_model(base_dir, device, dtype, allow_pickle)
        self.answers = base_answers(self.base, tokenizer, prompts_ids, max_new_tokens, batch_size)

    def __call__(self, model_dir: str | Path) -> dict:
        """`kl_to_base` of the checkpoint in `model_dir`."""
        from mixsd.evaluate.checkpoints import load_checkpoint

        model = load_checkpoint(model_dir, self.device, self.dtype, self.allow_pickle)
        return kl_to_base(self.base, model, self.prompts_ids, self.answers, self.batch_size)
