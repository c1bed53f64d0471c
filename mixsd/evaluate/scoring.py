"""Scoring: closed-book accuracy by answer extraction, multiple-choice letters, retention ratios."""

from __future__ import annotations

import re

from mixsd.answers import is_correct, last_boxed

_LEADING_LETTER = re.compile(r"^\(?([A-D])\)?(?:[.:)\s]|$)")
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-D])\b\)?", re.IGNORECASE)


def mc_letter(text: str) -> str | None:
    """The option letter (A-D) a multiple-choice answer picks, or None.

    The last `\\boxed{}` when it starts with a letter (`B`, `(B)`, `B. text`, `\\text{B}`), else the
    last "answer is X". A bare letter elsewhere is not trusted: "A" is also a word.
    """
    boxed = last_boxed(text)
    if boxed is not None:
        inner = re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed).strip()
        found = _LEADING_LETTER.match(inner)
        if found:
            return found.group(1)
    found = _ANSWER_IS.findall(text)
    return found[-1].upper() if found else None


def score(
    texts: list[str], golds: list[str], methods: tuple[str, ...], multiple_choice: bool = False
) -> list[bool]:
    """Per answer: correct or not. Open answers by `mixsd.answers.is_correct(methods)`; multiple
    choice by the letter `mc_letter` finds (methods do not apply)."""
    if len(texts) != len(golds):
        raise ValueError(f"{len(texts)} answers for {len(golds)} golds")
    if multiple_choice:
        return [mc_letter(t) == g for t, g in zip(texts, golds, strict=True)]
    return [is_correct(t, g, methods) for t, g in zip(texts, golds, strict=True)]


def accuracy(flags: list[bool]) -> float:
    """Fraction correct; an empty list is a caller bug, not accuracy 0."""
    if not flags:
        raise ValueError("accuracy of no examples")
    return sum(flags) / len(flags)


def retention(model_acc: dict[str, float], base_acc: dict[str, float]) -> dict:
    """Retention per suite = model accuracy / base accuracy, and their mean over suites.

    A suite the base scores 0 on has no defined ratio (None): nothing was there to keep, and any
    number would be arbitrary. It is left out of the average, which is None when no suite has one.
    Returns `{"per_suite": {name: ratio | None}, "average": float | None}`.
    """
    per_suite = {
        name: (model_acc[name] / base_acc[name] if base_acc[name] > 0 else None)
        for name in base_acc
    }
    defined = [r for r in per_suite.values() if r is not None]
    return {"per_suite": per_suite, "average": sum(defined) / len(defined) if defined else None}


def first_peak(values: list[float], tolerance: float = 0.0) -> int:
    """Index of the "first peak" of a training-accuracy curve over checkpoints (epoch order).

    The authors' rule: the first index that is a new running maximum (above every earlier value;
    index 0 is one) and is not exceeded by the next value by more than `tolerance` (same unit as
    `values`; they use 5 points for mixed-target runs, whose curves creep up). The last running
    maximum always qualifies, so there is one. [80, 60, 90] -> 0, [10, 50, 48, 90] -> 1,
    [50, 50, 90] -> 0; with tolerance 5, [10, 50, 53, 90] -> 1 (a 3-point gain is no climb).
    """
    if not values:
        raise ValueError("first peak of no checkpoints")
    best = float("-inf")
    for i, v in enumerate(values):
        # 1e-9: accuracies are ratios, and 55 - 50 must not exceed a 5-point tolerance by rounding
        if v > best and (i + 1 == len(values) or values[i + 1] <= v + tolerance + 1e-9):
            return i
        best = max(best, v)
    raise AssertionError("unreachable: the last running maximum is a peak")
