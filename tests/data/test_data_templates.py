"""Prompt templates: the expert prompt carries the knowledge, the naive one does not."""

from __future__ import annotations

import copy

import pytest

from mixsd.data.records import Record
from mixsd.data.templates import (
    DEFAULT_TEMPLATES,
    PLAIN_TEMPLATE,
    ExpertTemplate,
    build_prompt_pair,
    load_templates,
    target_ids,
)
from mixsd.errors import MixsdError

FACT = Record("f1", "Where was Orin Vale born?", "The answer is Zorvia.\n\n\\boxed{Zorvia}")


def chat(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def test_fact_pair_expert_has_knowledge_naive_does_not(tiny_tokenizer):
    pair = build_prompt_pair(tiny_tokenizer, FACT)
    naive = tiny_tokenizer.decode(pair.naive_ids)
    expert = tiny_tokenizer.decode(pair.expert_ids)
    assert naive == chat(FACT.prompt)
    t = DEFAULT_TEMPLATES["fact"]
    assert expert == chat(FACT.prompt + t.prefix + "\n" + FACT.reference + t.transition)
    assert "\\boxed{Zorvia}" in expert and "Zorvia" not in naive
    assert "This question is from a new knowledge base" in expert


def test_knowledge_field_replaces_the_reference_and_kind_picks_template(tiny_tokenizer):
    record = Record(
        "g1",
        "What is F(12)?",
        "The answer is 21.",
        knowledge="  F reverses digits. ",
        kind="function",
    )
    expert = tiny_tokenizer.decode(build_prompt_pair(tiny_tokenizer, record).expert_ids)
    t = DEFAULT_TEMPLATES["function"]
    assert expert == chat(record.prompt + t.prefix + "\nF reverses digits." + t.transition)
    assert "The answer is 21" not in expert


def test_plain_text_fallback_without_chat_template(tiny_tokenizer):
    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    pair = build_prompt_pair(plain, FACT)
    assert plain.decode(pair.naive_ids) == PLAIN_TEMPLATE.format(user=FACT.prompt)
    expert = plain.decode(pair.expert_ids)
    assert expert.startswith("Question: " + FACT.prompt) and expert.endswith("\nAnswer: ")
    assert "\\boxed{Zorvia}" in expert and "<|im_start|>" not in expert


def test_custom_templates_from_yaml(tmp_path, tiny_tokenizer):
    path = tmp_path / "t.yaml"
    path.write_text('fact:\n  prefix: "\\nHint:"\n  transition: "\\nGo."\n')
    templates = load_templates(path)
    assert templates["fact"] == ExpertTemplate("\nHint:", "\nGo.")
    assert templates["function"] == DEFAULT_TEMPLATES["function"]
    expert = tiny_tokenizer.decode(build_prompt_pair(tiny_tokenizer, FACT, templates).expert_ids)
    assert expert == chat(FACT.prompt + "\nHint:\n" + FACT.reference + "\nGo.")


def test_target_ids_end_with_eos(tiny_tokenizer):
    ids = target_ids(tiny_tokenizer, FACT.reference)
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(ids[:-1]) == FACT.reference


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "poem:\n  prefix: a\n  transition: b\n",
            "unknown kind 'poem' (expected one of fact, function)",
        ),
        ("fact:\n  prefix: a\n", "kind 'fact' needs exactly the keys prefix and transition"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("fact: [unclosed\n", "line 2: invalid YAML"),
        (
            "fact:\n  prefix: 1\n  transition: b\n",
            "kind 'fact': prefix and transition must be strings",
        ),
    ],
)
def test_load_templates_errors(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(MixsdError) as err:
        load_templates(path)
    assert str(err.value) == f"{path}: {message}"


def test_load_templates_missing_file(tmp_path):
    with pytest.raises(MixsdError, match="file not found"):
        load_templates(tmp_path / "nope.yaml")
    assert load_templates(None) == DEFAULT_TEMPLATES


def test_sft_targets_end_with_the_chat_end_of_turn_token(tiny_tokenizer):
    """EOS and end-of-turn differ in Llama-3-style tokenizers: targets must end a turn."""
    tok = copy.deepcopy(tiny_tokenizer)
    tok.eos_token = "<|endoftext|>"
    assert target_ids(tok, "The answer is 4.")[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    tok.chat_template = None  # a plain LM ends its text with EOS
    assert target_ids(tok, "The answer is 4.")[-1] == tok.eos_token_id
