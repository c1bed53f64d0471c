"""Per-epoch closed-book recall on the training questions, to find the "first peak" checkpoint.

Greedy decoding from the naive prompt (no knowledge in context), set up as evaluation sets it up
(`mixsd.generate.greedy`); a question counts as recalled when the decoded answer matches the
row's gold answer.
"""

from __future__ import annotations

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
    from mixsd.generate.greedy import greedy_answers

    questions: dict[str, Example] = {}
    for ex in sorted(examples, key=lambda e: e.id):
        if ex.answer and ex.id not in questions:
            questions[ex.id] = ex
    chosen = list(questions.values())[:limit]
    if not chosen:
        return None
    prompts = [ex.ids[: ex.n_prompt].tolist() for ex in chosen]
    texts = greedy_answers(model, tokenizer, prompts, max_new_tokens)
    right = sum(is_correct(t, ex.answer, methods) for t, ex in zip(texts, chosen, strict=True))
    return right / len(chosen)
