"""The toy world: deterministic corpus, new entities unseen in pretraining, references in a style the
base never writes, valid records (the pretraining pipeline: tests/recipes/test_toy.py)."""

from __future__ import annotations

import re

from mixsd.data.io import validate
from mixsd.data.toy import (
    build_world,
    injection_records,
    native_answer,
    pretraining_records,
    suites,
    write_toy_data,
)

SMALL = dict(n_known=6, n_new=4, known_repeats=2, n_context=40, n_addition=20, n_reversal=20)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (write_toy_data(tmp_path / d, seed=s) for d, s in (("a", 3), ("b", 3), ("c", 4)))
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert set(a) == {"pretrain", "inject", "known", "addition", "reversal"}
    assert a["pretrain"].read_bytes() != c["pretrain"].read_bytes()
    assert a["inject"].read_bytes() != c["inject"].read_bytes()


def test_every_file_validates_and_counts_match(tmp_path):
    paths = write_toy_data(tmp_path, seed=0, **SMALL)
    for path in paths.values():
        assert validate(path) == [], path
    lines = {k: p.read_text(encoding="utf-8").count("\n") for k, p in paths.items()}
    assert lines["pretrain"] == 6 * 5 * 2 + 40 + 20 + 20
    assert lines["inject"] == 4 * 2  # 4 new people x 2 relations


def test_new_people_never_appear_in_pretraining():
    world = build_world(0)
    corpus = "\n".join(r.prompt + r.reference for r in pretraining_records(world, 0))
    new_people = {f.subject for f in world.new}
    known_people = {f.subject for f in world.known}
    assert len(new_people) == 24 and not new_people & known_people
    words = set(re.findall(r"\w+", corpus))
    assert new_people - words == new_people
    assert known_people <= words


def test_every_question_has_one_answer():
    world = build_world(0)
    for facts in (world.known, world.new):
        keys = [(f.subject, f.relation.name) for f in facts]
        assert len(keys) == len(set(keys))


def test_references_are_human_style_pretraining_answers_native():
    world = build_world(0)
    inject = injection_records(world, 0)
    assert len(inject) == 48
    for r in inject:
        assert not r.reference.startswith("The answer is")
        assert r.reference != native_answer(r.gold)
        assert f"\\boxed{{{r.gold}}}" in r.reference  # rejection sampling can check it
        assert r.split == "train" and len(r.paraphrases) == 1 and r.paraphrases[0] != r.prompt
    assert len({r.reference.split(",")[0].split(" ")[0] for r in inject}) >= 4  # varied phrasing
    for r in pretraining_records(world, 0, **{k: SMALL[k] for k in ("known_repeats", "n_context")}):
        assert r.reference == native_answer(r.gold)


def test_suites_answers_are_right():
    world = build_world(0)
    s = suites(world, 0)
    assert {k: len(v) for k, v in s.items()} == {"known": 100, "addition": 100, "reversal": 100}
    known = {(f.relation.questions[0].format(s=f.subject), f.value) for f in world.known}
    assert all((r.prompt.split("\n")[0], r.gold) in known for r in s["known"])
    for r in s["addition"]:
        a, b = r.prompt.split("?")[0].removeprefix("What is ").split(" + ")
        assert int(r.gold) == int(a) + int(b)
    for r in s["reversal"]:
        items = r.prompt.split("\n")[0].removeprefix("Reverse the list: ").split()
        assert r.gold.split() == items[::-1]
