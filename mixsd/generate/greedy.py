"""Greedy closed-book decoding: the one setup that evaluation and the trainer's recall share."""

from __future__ import annotations

from mixsd.progress import Progress


def greedy_answers(
    model,
    tokenizer,
    prompts_ids: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 32,
    desc: str | None = None,
) -> list[str]:
    """Closed-book greedy answers (T=0) of `model`, one decoded text per prompt, in order (the
    ids of `greedy_answer_ids`, special tokens dropped)."""
    ids = greedy_answer_ids(model, tokenizer, prompts_ids, max_new_tokens, batch_size, desc)
    return [tokenizer.decode(a, skip_special_tokens=True) for a in ids]


def greedy_answer_ids(
    model,
    tokenizer,
    prompts_ids: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 32,
    desc: str | None = None,
) -> list[list[int]]:
    """Closed-book greedy answers (T=0) of `model` as token ids, one list per prompt, in order;
    an answer that stopped ends with its stop token.

    `modeling.naive_engine` with `Sampling(temperature=0)`: naive-only jobs, stopping at EOS and
    the end-of-turn tokens like generation does. A prompt longer than the model allows gets an
    empty answer. `desc`: show a progress bar with that label.
    """
    from mixsd.generate.core import Sampling
    from mixsd.generate.jobs import Job
    from mixsd.modeling import naive_engine

    limit = model.config.max_position_embeddings
    engine = naive_engine(
        model, tokenizer, Sampling(temperature=0.0), batch_size, max_new_tokens, limit
    )
    jobs = [
        Job(key=0, lam=1.0, naive_ids=p, expert_ids=None, tag=i) for i, p in enumerate(prompts_ids)
    ]
    answers: list[list[int]] = [[] for _ in jobs]
    with Progress(desc or "", len(jobs), "q", enabled=desc is not None) as bar:
        for result in engine.generate(jobs):
            answers[result.tag] = list(result.target_ids)
            bar.update(tokens=len(result.target_ids))
    return answers
