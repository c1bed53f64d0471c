"""The input record: one schema used by every stage.

Readers and validation of input files live in `mixsd.data.io`; this module holds only the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixsd.answers import extract_answer

KINDS = ("fact", "function")


@dataclass(frozen=True)
class Record:
    """One example: prompt x, reference answer y*, and the knowledge c the expert sees.

    `knowledge` defaults to the reference (the MixSD paper puts y* in the expert's context);
    `answer`, the short canonical answer used for scoring, defaults to the one extracted from the
    reference (last `\\boxed{}`, else last number, else the whole stripped reference).
    `kind` selects the prompt templates ("fact" or "function").
    """

    id: str
    prompt: str
    reference: str | None  # None only in answer-only records (`parse`: evaluation files)
    knowledge: str | None = None
    answer: str | None = None
    kind: str = "fact"
    split: str | None = None
    paraphrases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def expert_knowledge(self) -> str | None:
        return self.knowledge if self.knowledge is not None else self.reference

    @property
    def gold(self) -> str:
        """The answer that scoring and rejection sampling compare against."""
        if self.answer is not None:
            return self.answer
        found = extract_answer(self.reference)
        return found if found is not None else self.reference.strip()
