"""KGFact: determinism, sizes, one answer per question across every split, two-hop correctness."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from mixsd.answers import is_correct
from mixsd.data.config import KGFactConfig
from mixsd.data.io import load_records
from mixsd.data.kgfact import SUFFIX, build

SPLITS = ("train", "paraphrase", "retrieval", "two_hop")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("kgfact") / "small"
    counts = build(KGFactConfig(out=out, size="small", seed=0))
    return out, counts


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    out = tmp_path_factory.mktemp("kgfact") / "large"
    return out, build(KGFactConfig(out=out, size="large", seed=1))


def splits(out):
    return {s: load_records(out / f"{s}.jsonl") for s in SPLITS}  # load_records validates


def test_same_seed_byte_identical_other_seed_differs(small, tmp_path):
    out, _ = small
    build(KGFactConfig(out=tmp_path / "again", size="small", seed=0))
    build(KGFactConfig(out=tmp_path / "other", size="small", seed=7))
    for name in [f"{s}.jsonl" for s in SPLITS] + ["kg.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()


@pytest.mark.parametrize(
    "which, domains, per_domain, facts", [("small", 5, 10, 100), ("large", 7, 25, 525)]
)
def test_sizes(request, which, domains, per_domain, facts):
    out, counts = request.getfixturevalue(which)
    assert counts == dict.fromkeys(SPLITS, facts)
    kg = json.loads((out / "kg.json").read_text())
    assert [len(names) for names in kg["entities"].values()] == [per_domain] * domains
    names = [n for names in kg["entities"].values() for n in names]
    assert not [(a, b) for a in names for b in names if a != b and a in b]  # none inside another
    assert len(kg["facts"]) == facts
    assert {s: len(r) for s, r in splits(out).items()} == counts


@pytest.mark.parametrize("which", ["small", "large"])
def test_every_question_has_one_answer_across_splits(request, which):
    out, _ = request.getfixturevalue(which)
    answers = defaultdict(set)
    for records in splits(out).values():
        for r in records:
            answers[r.prompt].add(r.gold)
            for p in r.paraphrases:
                answers[p].add(r.gold)
            question = r.prompt.rsplit("\n\n", 2)[-2]  # retrieval: the question after the context
            answers[question].add(r.gold)
    assert all(len(a) == 1 for a in answers.values())
    kg = json.loads((out / "kg.json").read_text())
    keys = [(f["relation"], f["subject"]) for f in kg["facts"]]
    assert len(set(keys)) == len(keys)  # the constraint that makes questions single-answer


def test_train_records_follow_the_mixsd_format(small):
    out, _ = small
    kg = json.loads((out / "kg.json").read_text())
    train = splits(out)["train"]
    for r, fact in zip(train, kg["facts"], strict=True):
        assert r.prompt == fact["question"] + SUFFIX
        assert r.reference == f"The answer is {fact['object']}.\n\n\\boxed{{{fact['object']}}}"
        assert (r.answer, r.kind, r.split, r.knowledge) == (fact["object"], "fact", "train", None)
        assert is_correct(r.reference, r.answer)
        assert len(r.paraphrases) == len(set(r.paraphrases)) == 10
        assert all(p.endswith(SUFFIX) and p != r.prompt for p in r.paraphrases)


def test_paraphrase_split_uses_the_train_phrasings(small):
    out, _ = small
    data = splits(out)
    for train, para in zip(data["train"], data["paraphrase"], strict=True):
        assert para.prompt in train.paraphrases and para.answer == train.answer


def test_retrieval_has_the_fact_and_50_distractors(small):
    out, _ = small
    kg = json.loads((out / "kg.json").read_text())
    statements = {f["statement"] for f in kg["facts"]}
    for r, fact in zip(splits(out)["retrieval"], kg["facts"], strict=True):
        context = r.prompt.split("\n\n")[0].splitlines()[1:]
        assert len(context) == 51 and len(set(context)) == 51
        assert fact["statement"] in context and set(context) <= statements
        assert r.prompt.endswith(fact["question"] + SUFFIX)


def test_two_hop_answers_follow_both_facts(small):
    """Solve every two-hop question from kg.json alone: exactly one chain matches, and its end
    is the record's answer."""
    out, _ = small
    kg = json.loads((out / "kg.json").read_text())
    relations = {r["name"]: r for r in kg["relations"]}
    objects = {(f["relation"], f["subject"]): f["object"] for f in kg["facts"]}
    chains = {}
    for f in kg["facts"]:
        inner = relations[f["relation"]]["relative"].format(s=f["subject"])
        for name, rel in relations.items():
            if (name, f["object"]) in objects:
                q = rel["question"].format(s=inner)
                assert q[0].upper() + q[1:] not in chains
                chains[q[0].upper() + q[1:]] = (f, objects[(name, f["object"])])
    two_hop = splits(out)["two_hop"]
    assert len(two_hop) == 100 and len({r.prompt for r in two_hop}) == 100
    for r in two_hop:
        first, answer = chains[r.prompt.removesuffix(SUFFIX)]
        assert r.answer == answer and r.gold == answer
        assert r.knowledge.startswith(first["statement"] + " ")
