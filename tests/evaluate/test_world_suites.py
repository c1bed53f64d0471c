"""The built-in packaged suites: well-formed, curated from the candidate pool of
scripts/curate_suites.py, and what the real SmolLM2 knows."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from mixsd.answers import is_correct
from mixsd.errors import MixsdError
from mixsd.evaluate.suites import PACKAGED, load_suite

# the counts the PACKAGED comment documents
SIZES = {"world": 146, "language": 65, "arithmetic": 31, "commonsense": 24, "translation": 42}
CURATE = Path(__file__).parents[2] / "scripts" / "curate_suites.py"


def _curate():
    spec = importlib.util.spec_from_file_location("curate_suites", CURATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_packaged_suites_are_the_documented_ones():
    assert list(PACKAGED) == list(SIZES)
    assert sum(SIZES.values()) >= 200  # retention over >= 200 items: one item < 0.5 points


@pytest.mark.parametrize("name, size", SIZES.items())
def test_packaged_suites_load(name, size):
    suite = load_suite(name)
    assert suite.name == name and len(suite.records) == size and not suite.multiple_choice
    assert len({r.id for r in suite.records}) == size
    for r in suite.records:
        assert r.gold.strip() and r.reference.strip()
        # the gold is never given away by the question, and the reference (the Fisher's label)
        # answers it under the suite's own check
        assert not is_correct(r.prompt, r.gold, ("contains",)), r.id
        assert is_correct(r.reference, r.gold, ("contains",)), r.id


def test_ids_are_unique_across_suites():
    ids = [r.id for name in PACKAGED for r in load_suite(name).records]
    assert len(ids) == len(set(ids))


def test_arithmetic_golds_are_right():
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b}
    for r in load_suite("arithmetic").records:
        a, op, b = re.fullmatch(r"What is (\d+) ([+\-x]) (\d+)\?", r.prompt).groups()
        assert r.gold == str(ops[op](int(a), int(b))), r.id


def test_packaged_items_are_unchanged_candidates():
    """Every packaged item is a candidate of the curation script, as the script writes it."""
    pool = {(c["suite"], c["id"]): c for c in _curate().candidates()}
    for name in PACKAGED:
        for r in load_suite(name).records:
            c = pool[(name, r.id)]
            assert (c["prompt"], c["answer"], c["reference"]) == (r.prompt, r.gold, r.reference)


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
