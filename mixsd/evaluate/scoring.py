"""Scoring: closed-book accuracy by answer extraction, multiple-choice letters."""

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
