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
    """Closed-book greedy answers (T=0) of `model`, one decoded text per prompt, in order.

    The transformers engine with `Job(lam=1.0, expert_ids=None)` (naive only) and
    `Sampling(temperature=0)`, stopping at EOS and the end-of-turn tokens (`runner.stop_ids`) like
    generation does. A prompt longer than the model allows gets an empty answer. `desc`: show a
    progress bar with that label.
    """
    from mixsd.generate.core import Sampling
    from mixsd.generate.hf_engine import HFEngine
    from mixsd.generate.jobs import Job
    from mixsd.generate.runner import declared_eos, stop_ids

    pad_id = tokenizer.pad_token_id
    engine = HFEngine(
        model,
        Sampling(temperature=0.0),
        stop_ids=stop_ids(tokenizer, (), declared_eos(model.generation_config)),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_model_len=model.config.max_position_embeddings,
        other_logprobs=False,
        pad_id=pad_id if pad_id is not None else tokenizer.eos_token_id,
    )
    jobs = [
        Job(key=0, lam=1.0, naive_ids=p, expert_ids=None, tag=i) for i, p in enumerate(prompts_ids)
    ]
    texts = [""] * len(jobs)
    with Progress(desc or "", len(jobs), "q", enabled=desc is not None) as bar:
        for result in engine.generate(jobs):
            texts[result.tag] = tokenizer.decode(result.target_ids, skip_special_tokens=True)
            bar.update(tokens=len(result.target_ids))
    return texts
