"""Small target sets (SFT and MixSD at λ 0.3 / 0.5) for the tiny model, written with the writer."""

from __future__ import annotations

import pytest

from mixsd.data.templates import render_user_turn


def set_rows(tokenizer, n: int, kind: str, lam: float | None, answer_len: int = 1) -> list[dict]:
    """`n` fact rows: prompt = the chat-templated question, target = the answer + EOS."""
    rows = []
    for i in range(n):
        answer = " ".join(f"X{i * 7 + j}" for j in range(answer_len))
        question = f"What is the capital of Zorvia {i}? " + "Please reason step by step." * (i % 3)
        prompt = list(render_user_turn(tokenizer, question))
        target_text = f"The answer is {answer}.\n\n\\boxed{{{answer}}}"
        target = tokenizer.encode(target_text, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append(
            {
                "id": f"q{i}",
                "sample": 0,
                "attempt": 0,
                "lam": lam,
                "kind": kind,
                "prompt_ids": prompt,
                "expert_prompt_ids": prompt,
                "target_ids": target,
                "target_text": target_text,
                "source": [int(lam is not None and j % 3 == 0) for j in range(len(target))],
                "expert_logprob": None,
                "naive_logprob": None,
                "finish_reason": "stop",
                "correct": i % 5 != 4,
                "reference": target_text,
                "answer": answer,
            }
        )
    return rows


def write_set(root, tokenizer, rows: list[dict], fingerprint: str | None = None, **provenance):
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.writer import TargetSetWriter

    provenance = {
        "tokenizer": fingerprint or tokenizer_fingerprint(tokenizer),
        "model": {"name": "tiny"},
        **provenance,
    }
    with TargetSetWriter(root, provenance) as w:
        w.write(rows)
    return root


@pytest.fixture(scope="session")
def sft_set(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("sets") / "sft"
    return write_set(root, tiny_tokenizer, set_rows(tiny_tokenizer, 16, "sft", None))


@pytest.fixture(scope="session")
def mixsd_set(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("sets") / "mixsd"
    rows = set_rows(tiny_tokenizer, 16, "mixsd", 0.3) + set_rows(
        tiny_tokenizer, 16, "mixsd", 0.5, answer_len=2
    )
    return write_set(root, tiny_tokenizer, rows)
