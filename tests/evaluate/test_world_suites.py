"""The built-in suites `world` and `language`: well-formed, and what the real SmolLM2 knows."""

from __future__ import annotations

import pytest

from mixsd.answers import is_correct
from mixsd.errors import MixsdError
from mixsd.evaluate.suites import load_suite


@pytest.mark.parametrize("name, size", [("world", 53), ("language", 12)])
def test_packaged_suites_load(name, size):
    suite = load_suite(name)
    assert suite.name == name and len(suite.records) == size and not suite.multiple_choice
    assert len({r.id for r in suite.records}) == size
    # a reference, where there is one, answers its question under the suite's own check
    assert all(is_correct(r.reference, r.gold, ("contains",)) for r in suite.records)


def test_a_packaged_suite_takes_no_seed():
    with pytest.raises(MixsdError, match="unknown format 'world'"):
        load_suite("world=1")


def test_smollm2_answers_the_first_world_questions(smollm2_dir):
    from mixsd.data.models import load_tokenizer
    from mixsd.data.templates import render_user_turn
    from mixsd.evaluate.checkpoints import greedy_answers

    records = load_suite("world").records[:6]
    tok = load_tokenizer(smollm2_dir)
    prompts = [render_user_turn(tok, r.prompt) for r in records]
    texts = greedy_answers(smollm2_dir, prompts, 12, 6, "cpu", "float32")
    assert [is_correct(t, r.gold, ("contains",)) for t, r in zip(texts, records, strict=True)] == [
        True
    ] * 6
