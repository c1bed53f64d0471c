"""Per-epoch closed-book recall on the training questions, to find the "first peak" checkpoint.

Greedy decoding from the naive prompt (no knowledge in context) with the transformers engine;
a question counts as recalled when the decoded answer matches the row's gold answer.
"""

from __future__ import annotations

import torch

from mixsd.answers import is_correct
from mixsd.train.data import Example


def greedy_recall(
    model,
    tokenizer,
    examples: list[Example],
    limit: int,
    max_new_tokens: int,
    methods: tuple[str, ...] = ("boxed", "number"),
) -> float | None:
    """Fraction of (up to `limit`, one per id, in id order) training questions answered right
    (`mixsd.answers.is_correct` with `methods`); None when no example carries a gold answer."""
    from mixsd.generate.core import Sampling
    from mixsd.generate.hf_engine import HFEngine
    from mixsd.generate.jobs import Job

    questions: dict[str, Example] = {}
    for ex in sorted(examples, key=lambda e: e.id):
        if ex.answer and ex.id not in questions:
            questions[ex.id] = ex
    chosen = list(questions.values())[:limit]
    if not chosen:
        return None
    engine = HFEngine(
        model,
        Sampling(temperature=0.0),
        stop_ids=[tokenizer.eos_token_id],
        max_new_tokens=max_new_tokens,
        max_model_len=model.config.max_position_embeddings,
        other_logprobs=False,
        pad_id=tokenizer.pad_token_id,
    )
    jobs = [
        Job(key=0, lam=1.0, naive_ids=ex.ids[: ex.n_prompt].tolist(), expert_ids=None, tag=i)
        for i, ex in enumerate(chosen)
    ]
    with torch.no_grad():
        results = list(engine.generate(jobs))
    right = sum(
        is_correct(
            tokenizer.decode(r.target_ids, skip_special_tokens=True), chosen[r.tag].answer, methods
        )
        for r in results
    )
    return right / len(chosen)
