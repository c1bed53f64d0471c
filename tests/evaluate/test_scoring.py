"""Scoring: accuracy and multiple-choice letters."""

from __future__ import annotations

import pytest

from mixsd.evaluate.scoring import accuracy, mc_letter, score


def test_accuracy_and_score():
    texts = [r"\boxed{12}", "it is 7", r"\boxed{\text{Paris}}", "no idea"]
    flags = score(texts, ["12", "7", "paris", "3"], ("boxed", "number"))
    assert flags == [True, True, True, False]
    assert accuracy(flags) == 0.75
    assert score(["it is 7"], ["7"], ("boxed",)) == [False]  # methods are honoured
    with pytest.raises(ValueError):
        accuracy([])
    with pytest.raises(ValueError):
        score(["a"], ["a", "b"], ("boxed",))


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        (r"\boxed{B}", "B"),
        (r"so \boxed{(C)}", "C"),
        (r"\boxed{D. Paris}", "D"),
        (r"\boxed{\text{A}}", "A"),
        ("The answer is (B).", "B"),
        ("I think the answer is: c", "C"),
        (r"\boxed{A} no wait \boxed{C}", "C"),
        ("A cat sat.", None),  # a bare "A" is a word, not an answer
        (r"\boxed{42}", None),
        (r"\boxed{Apple}", None),
    ],
)
def test_mc_letter(text, letter):
    assert mc_letter(text) == letter


def test_score_multiple_choice():
    assert score([r"\boxed{B}", "answer is A", "B"], ["B", "B", "B"], ("boxed",), True) == [
        True,
        False,
        False,
    ]
