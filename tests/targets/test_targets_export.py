"""Export formats for other trainers: TRL's (its real `SFTTrainer` trains on the `messages`
export), prompt-completion pairs (which mixsd reads back as records) and the authors' JSONL."""

from __future__ import annotations

import json

import pytest

from mixsd.data.records import Record
from mixsd.targets.ops import export
from mixsd.targets.provenance import model_fingerprint, tokenizer_fingerprint
from mixsd.targets.schema import TargetRow
from mixsd.targets.writer import TargetSetWriter

RECORDS = [
    Record("a", "Where does Ada work?", "She works in Paris. \\boxed{Paris}", answer="Paris"),
    Record("b", "Who founded the guild?", "Ana founded it.", answer="Ana"),
]


@pytest.fixture
def chat_set(tmp_path, tiny_model_dir, tiny_tokenizer):
    """A MixSD set of the tiny model: the records' references as targets (+ EOS for `a`, cut
    for `b`), made of naive (1) and expert (0) tokens; λ 0.5, the second try of `b`."""
    from mixsd.data.templates import build_prompt_pair, target_ids

    provenance = {
        "kind": "mixsd",
        "model": model_fingerprint(tiny_model_dir),
        "tokenizer": tokenizer_fingerprint(tiny_tokenizer),
        "sampling": {"temperature": 0.6, "top_k": 64, "top_p": 1.0},
        "max_retries": 3,
        "seed": 0,
        "lams": [0.5],
    }
    rows = []
    for rec, attempt, finish in ((RECORDS[0], 0, "stop"), (RECORDS[1], 1, "length")):
        pair = build_prompt_pair(tiny_tokenizer, rec)
        ids = target_ids(tiny_tokenizer, rec.reference)
        ids = ids if finish == "stop" else ids[:-1]  # no EOS: cut by max_new_tokens
        rows.append(
            TargetRow(
                id=rec.id,
                sample=0,
                attempt=attempt,
                lam=0.5,
                kind="mixsd",
                prompt_ids=pair.naive_ids,
                expert_prompt_ids=pair.expert_ids,
                target_ids=ids,
                target_text=rec.reference,
                source=[i % 2 for i in range(len(ids))],
                finish_reason=finish,
                correct=finish == "stop",
                reference=rec.reference,
                answer=rec.gold,
            )  # fmt: skip
        )
    root = tmp_path / "set"
    with TargetSetWriter(root, provenance) as w:
        w.write(rows)
    return root, rows


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prompt_completion_reads_back_as_records(chat_set, tmp_path):
    from mixsd.data.io import load_records

    root, _ = chat_set
    out = tmp_path / "pc.jsonl"
    assert export(root, "prompt-completion", out) == 2
    assert lines(out)[0] == {
        "prompt": [{"role": "user", "content": RECORDS[0].prompt}],
        "completion": [{"role": "assistant", "content": RECORDS[0].reference}],
    }
    got = [(r.prompt, r.reference) for r in load_records(out)]  # TRL's form is an input form
    assert got == [(r.prompt, r.reference) for r in RECORDS]


def test_authors_jsonl(chat_set, tmp_path):
    root, rows = chat_set
    out = tmp_path / "authors.jsonl"
    assert export(root, "authors", out) == 2
    first, second = lines(out)
    assert first["messages"] == [
        {"role": "user", "content": RECORDS[0].prompt},
        {"role": "assistant", "content": RECORDS[0].reference},
    ]
    assert (first["clear_answer"], first["subject"]) == ("Paris", "")
    n = len(rows[1].target_ids)
    assert second["mix_meta"] == {
        "lambda": 0.5,
        "temperature": 0.6,
        "topk": 64,
        "gen_index": 0,
        "student_token_fraction": pytest.approx((n // 2) / n),
        "num_tokens": n,
        "finish_reason": "max_new_tokens",
        "correct": False,
        "num_attempts": 2,
        "max_retries": 3,
        "ground_truth_assistant": RECORDS[1].reference,
    }
    assert (first["mix_meta"]["finish_reason"], first["mix_meta"]["num_attempts"]) == ("stop", 1)
    # and mixsd reads it as it reads the authors' own files (mix_meta etc. ignored)
    from mixsd.data.io import load_records

    got = [(r.prompt, r.reference, r.answer) for r in load_records(out)]
    assert got == [(r.prompt, r.reference, None) for r in RECORDS]


def test_trl_sft_trainer_trains_on_the_messages_export(chat_set, tmp_path, tiny_model_dir):
    """TRL's own SFTTrainer, 2 steps on CPU, reads the export as its conversational form."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    root, _ = chat_set
    out = tmp_path / "chat.jsonl"
    assert export(root, "messages", out) == 2
    data = load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "c"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2,
        learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=True, bf16=False, seed=0,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)
    changed = [
        not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)
    ]
    assert all(changed)
