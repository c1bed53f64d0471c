"""The demo's and the experiment's new facts: the checked-in files are the generator's output,
one answer per question; the names set's answers are distinct invented names, none inside
another name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixsd.answers import is_correct
from mixsd.data.demo_facts import facts, name_facts
from mixsd.data.io import load_records

CONFIGS = Path(__file__).parents[2] / "configs"
FILES = {
    "demo": CONFIGS / "demo" / "facts.jsonl",
    "names": CONFIGS / "experiment" / "facts-names.jsonl",
}
MAKERS = {"demo": facts, "names": name_facts}


@pytest.mark.parametrize("which", sorted(FILES))
def test_the_checked_in_file_is_the_generators_output(which):
    make = MAKERS[which]
    assert [json.loads(line) for line in FILES[which].read_text().splitlines()] == make(0)
    assert make(0) == make(0) and make(1) != make(0)


@pytest.mark.parametrize("which", sorted(FILES))
def test_records_are_valid_and_answerable_from_their_knowledge(which):
    records = load_records(FILES[which])
    assert len(records) == 32 and len({r.prompt for r in records}) == 32
    for r in records:
        assert is_correct(r.reference, r.gold, ("contains",))
        assert is_correct(r.expert_knowledge, r.gold, ("contains",))
        assert r.gold not in r.prompt and len(r.paraphrases) == 1


@pytest.mark.parametrize("which", sorted(FILES))
def test_sixteen_people_two_facts_each(which):
    people = [r["knowledge"].split(" ")[:2] for r in MAKERS[which](0)]
    assert len({tuple(p) for p in people}) == 16
    assert all(people[i] == people[i + 1] for i in range(0, 32, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_name_answers_are_invented_names_none_inside_another(seed):
    records = name_facts(seed)
    answers = [r["answer"] for r in records]
    people = {" ".join(r["knowledge"].split(" ")[:2]) for r in records}
    names = set(answers) | people
    assert len(set(answers)) == 32 and len(names) == 48
    for a in answers:
        assert not any(a in n or n in a for n in names - {a})
        # only the fact's own reference and knowledge name it; nothing else in the set does
        assert [r["id"] for r in records if a in r["knowledge"]] == [
            r["id"] for r in records if r["answer"] == a
        ]
    # two-syllable invented words, as shapes "W Society", "W Rovers", "W" (mentor, pet)
    words = [a.split(" ")[0] for a in answers]
    assert all(len(w) >= 4 and w[0].isupper() for w in words)
    shapes = {a.split(" ")[1] if " " in a else "-" for a in answers}
    assert shapes <= {"Society", "Rovers", "-"}


def test_name_answers_are_several_tokens_for_smollm2(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    counts = [
        len(tokenizer(" " + r["answer"], add_special_tokens=False).input_ids) for r in name_facts(0)
    ]
    assert min(counts) == 3 and max(counts) == 7 and sorted(counts)[16] == 4
