"""What the synthetic worlds share (KGFact `kgfact.py`, the toy world `toy.py`, the demo's facts
`demo_facts.py`): invented names, relations with a closed set of values, human-style references.

Every helper draws from the `random.Random` it is given, in a fixed order, so a world stays a pure
function of its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

_ONSETS = tuple("b d f g k l m n p r s t v z br dr kr th st gl".split())
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "sk", "th")


def cap(text: str) -> str:
    """`text` with its first letter upper-cased (the rest kept, unlike `str.capitalize`)."""
    return text[0].upper() + text[1:]


def word(rng: random.Random, syllables: int = 2) -> str:
    """An invented capitalised word of `syllables` onset-vowel-coda syllables ("Braethor")."""
    parts = [
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    ]
    return cap("".join(parts))


def invent(draw: Callable[[], str], n: int, taken: set[str], nested: bool = False) -> list[str]:
    """`n` names from `draw()` that are not in `taken` (with `nested`: not inside a taken name,
    nor one inside them, so an answer never matches another entity's name); each is added to
    `taken`, so later calls avoid it too."""
    out: list[str] = []
    while len(out) < n:
        name = draw()
        if not (any(name in t or t in name for t in taken) if nested else name in taken):
            taken.add(name)
            out.append(name)
    return out


@dataclass(frozen=True)
class Relation:
    """An attribute of a person with a closed set of values: question phrasings (the first is the
    one trained on, the others paraphrases), the statement of a fact, and the values.
    `{s}` stands for the person, `{o}` for the value."""

    name: str
    questions: tuple[str, ...]
    statement: str
    values: tuple[str, ...]

    def ask(self, subject: str, phrasing: int = 0) -> str:
        return self.questions[phrasing].format(s=subject)

    def state(self, subject: str, value: str) -> str:
        return self.statement.format(s=subject, o=value)


def human_reference(rng: random.Random, templates, rel: Relation, subject: str, value: str) -> str:
    """A reference in a human style the base model does not write: one of `templates`
    (`{c}` the statement, `{o}` the value, `{s}` the person)."""
    return rng.choice(templates).format(c=rel.state(subject, value), o=value, s=subject)
