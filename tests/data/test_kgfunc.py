"""KGFunc: the digit operations (hand-checked), prompts, chains, held-out split, determinism."""

from __future__ import annotations

import json
import random
import re

import pytest

from mixsd.data.config import KGFuncConfig
from mixsd.data.io import load_records
from mixsd.data.kgfunc import OPERATIONS, SUFFIX, build, chain

# (operation, input, output), worked out by hand.
HAND_CHECKED = [
    ("reverse", 12345, 54321),
    ("reverse", 12340, 4321),
    ("digit_sum", 12345, 15),
    ("digit_sum", 0, 0),
    ("digit_square_sum", 123, 14),
    ("digit_square_sum", 99999, 405),
    ("digit_triangular_sum", 123, 10),  # 1 + 3 + 6
    ("digit_triangular_sum", 905, 60),  # 45 + 0 + 15
    ("cumulative_max_sum", 31415, 19),  # 3 + 3 + 4 + 4 + 5
    ("cumulative_max_sum", 90000, 45),
    ("digit_convolution_dot", 123, 10),  # 1*3 + 2*2 + 3*1
    ("digit_convolution_dot", 12345, 35),  # 5 + 8 + 9 + 8 + 5
    ("position_weighted_sum", 123, 14),  # 1*1 + 2*2 + 3*3
    ("position_weighted_sum", 50001, 10),  # 1*5 + 5*1
    ("sort_descending", 31415, 54311),
    ("sort_ascending", 30415, 1345),
    ("rotate_left", 12345, 23451),
    ("rotate_left", 105, 51),
    ("complement", 12345, 87654),
    ("complement", 90, 9),
    ("swap_pairs", 12345, 21435),
    ("swap_pairs", 7, 7),
]
CFG = dict(seed=3, shots=10, per_op=4, compositions=12, heldout_ops=3)


@pytest.mark.parametrize("name, x, y", HAND_CHECKED)
def test_operations_hand_checked(name, x, y):
    assert OPERATIONS[name](x) == y


def test_every_operation_is_covered_and_total_on_the_input_range():
    assert {name for name, _, _ in HAND_CHECKED} == set(OPERATIONS)
    rng = random.Random(0)
    for x in [0, 9, 10, 99999, *rng.sample(range(100_000), 200)]:
        assert all(isinstance(op(x), int) and op(x) >= 0 for op in OPERATIONS.values())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("kgfunc")
    counts = build(KGFuncConfig(out=out, **CFG))
    key = json.loads((out / "functions.json").read_text())
    records = {s: load_records(out / f"{s}.jsonl") for s in counts}  # load_records validates
    return out, counts, key, records


def shown_examples(prompt: str) -> dict[str, list[tuple[int, int]]]:
    """letter -> the (input, output) pairs shown for it in a prompt."""
    found = {}
    for block in prompt.split("\n\n"):
        if block.startswith("Examples of "):
            letter = block.split()[2].rstrip(":")
            pairs = re.findall(r"Input: (\d+)\nOutput: (\d+)", block)
            found[letter] = [(int(a), int(b)) for a, b in pairs]
    return found


def evaluate(expr: str, key: dict) -> int:
    """Independent evaluation of a chain: the expression is valid Python over the letters."""
    names = {letter: OPERATIONS[spec["operation"]] for letter, spec in key.items()}
    return eval(expr, {"__builtins__": {}}, names)


def test_sizes_and_heldout_operations(corpus):
    _, counts, key, records = corpus
    heldout = sorted(letter for letter, spec in key.items() if spec["heldout"])
    assert len(key) == 12 and len(heldout) == 3
    assert sorted(spec["operation"] for spec in key.values()) == sorted(OPERATIONS)
    assert counts == {"train": 9 * 4, "compose": 12, "heldout": 3 * 4}
    for split in ("train", "compose"):
        for r in records[split]:
            assert not set(shown_examples(r.prompt)) & set(heldout)
    assert {letter for r in records["heldout"] for letter in shown_examples(r.prompt)} == set(
        heldout
    )


def test_prompts_show_correct_examples_and_answers(corpus):
    _, _, key, records = corpus
    for r in [r for split in records.values() for r in split]:
        assert r.kind == "function" and r.prompt.endswith(SUFFIX)
        for letter, pairs in shown_examples(r.prompt).items():
            assert len(pairs) == CFG["shots"]
            assert all(OPERATIONS[key[letter]["operation"]](x) == y for x, y in pairs)
        expr = re.search(r"What is (.+)\?" + re.escape(SUFFIX), r.prompt).group(1)
        assert str(evaluate(expr, key)) == r.answer == r.gold
        assert r.reference.endswith(f"The answer is {r.answer}.\n\n\\boxed{{{r.answer}}}")


def test_chains_compose_two_or_three_functions(corpus):
    _, _, key, records = corpus
    for r in records["compose"]:
        letters = re.findall(r"([A-Z])\(", r.prompt.split("What is ")[-1])
        assert 2 <= len(letters) <= 3 and len(set(letters)) == len(letters)
        assert sorted(shown_examples(r.prompt)) == sorted(letters)


def test_chain_worked_steps():
    key = {"B": "digit_sum", "E": "reverse", "G": "complement"}
    expr, value, worked = chain(random.Random(0), key, ["G", "E", "B"], 12345)
    assert re.fullmatch(r"B\(E\(G\(12345\) [+-] \d00\) [+-] \d00\)", expr)
    assert value == evaluate(expr, {k: {"operation": v} for k, v in key.items()})
    assert worked.startswith("G(12345) = 87654. ")
    assert worked.endswith(f"= {value}.")


def test_same_seed_byte_identical(corpus, tmp_path):
    out, counts, _, _ = corpus
    build(KGFuncConfig(out=tmp_path, **CFG))
    for name in [f"{s}.jsonl" for s in counts] + ["functions.json"]:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
