"""Scoring: accuracy, multiple-choice letters, retention arithmetic, first peak."""

from __future__ import annotations

import pytest

from mixsd.evaluate.scoring import accuracy, first_peak, mc_letter, retention, score


def test_retention_per_suite_and_average():
    base = {"gsm8k": 0.5, "mmlu": 0.8, "known": 0.25}
    model = {"gsm8k": 0.25, "mmlu": 0.8, "known": 0.5}
    r = retention(model, base)
    assert r["per_suite"] == {"gsm8k": 0.5, "mmlu": 1.0, "known": 2.0}
    assert r["average"] == pytest.approx((0.5 + 1.0 + 2.0) / 3)


def test_retention_base_zero_is_undefined_and_left_out_of_the_average():
    r = retention({"a": 0.3, "b": 0.2}, {"a": 0.0, "b": 0.4})
    assert r["per_suite"] == {"a": None, "b": 0.5}
    assert r["average"] == 0.5
    assert retention({"a": 0.0}, {"a": 0.0}) == {"per_suite": {"a": None}, "average": None}


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


@pytest.mark.parametrize(
    ("curve", "peak"),
    [
        ([0.2, 0.9, 1.0, 1.0, 0.95], 2),
        ([0.5, 0.5, 0.9], 2),
        ([0.8, 0.6, 0.9], 0),
        ([0.1, 0.3, 0.2, 0.9], 1),
        ([0.4], 0),
        ([0.1, 0.2, 0.3], 2),
    ],
)
def test_first_peak(curve, peak):
    assert first_peak(curve) == peak
