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
    ("curve", "tolerance", "peak"),
    [
        ([80, 60, 90], 0, 0),  # a new maximum later does not undo the first peak
        ([10, 50, 48, 90], 0, 1),
        ([10, 50, 48, 90], 5, 1),  # a fall is never a climb, whatever the tolerance
        ([50, 50, 90], 0, 0),  # an equal next value does not exceed it
        ([20, 90, 100, 100, 95], 0, 2),
        ([10, 30, 20, 90], 0, 1),
        ([40], 0, 0),
        ([10, 20, 30], 0, 2),  # still rising at the end: the last checkpoint
        ([10, 50, 53, 90], 0, 3),
        ([10, 50, 53, 90], 5, 1),  # a 3-point gain is within the tolerance: 50 is the peak
        ([10, 50, 55, 90], 5, 1),  # exactly 5 points: within
        ([10, 50, 56, 90], 5, 3),
        ([0.1, 0.5, 0.55, 0.9], 0.05, 1),  # ratios: no rounding past the tolerance
        ([30, 20, 25, 40], 0, 0),  # 25 is not a new running maximum
    ],
)
def test_first_peak(curve, tolerance, peak):
    assert first_peak(curve, tolerance) == peak
