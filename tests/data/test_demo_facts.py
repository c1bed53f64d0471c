"""The demo's new facts: the checked-in file is the generator's output, one answer per question."""

from __future__ import annotations

import json
from pathlib import Path

from mixsd.answers import is_correct
from mixsd.data.demo_facts import facts
from mixsd.data.io import load_records

FILE = Path(__file__).parents[2] / "configs" / "demo" / "facts.jsonl"


def test_the_checked_in_file_is_the_generators_output():
    assert [json.loads(line) for line in FILE.read_text().splitlines()] == facts(0)
    assert facts(1) != facts(0)


def test_records_are_valid_and_answerable_from_their_knowledge():
    records = load_records(FILE)
    assert len(records) == 32 and len({r.prompt for r in records}) == 32
    for r in records:
        assert is_correct(r.reference, r.gold, ("contains",))
        assert is_correct(r.expert_knowledge, r.gold, ("contains",))
        assert r.gold not in r.prompt and len(r.paraphrases) == 1
