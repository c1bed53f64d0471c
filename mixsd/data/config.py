"""Configs of the data commands (`mixsd data kgfact|kgfunc`, `mixsd model tiny`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# size -> (domains, entities per domain, facts per entity): 5 x 10 x 2 = 100, 7 x 25 x 3 = 525,
# the two KGFact sizes of the MixSD paper.
KGFACT_SIZES = {"small": (5, 10, 2), "large": (7, 25, 3)}


@dataclass
class KGFactConfig:
    """The synthetic knowledge graph: `size` small (~100 facts) or large (~500)."""

    out: Path = Path("data/kgfact")
    size: str = "small"
    seed: int = 0
    distractors: int = 50  # facts put in context next to the true one, in the retrieval split

    def __post_init__(self) -> None:
        if self.size not in KGFACT_SIZES:
            raise ValueError(f"option 'size': expected one of small, large, got {self.size!r}")
        if self.distractors < 0:
            raise ValueError(f"option 'distractors': expected >= 0, got {self.distractors}")


@dataclass
class KGFuncConfig:
    """Opaque digit functions: `per_op` questions per seen function, `compositions` chains of
    seen functions, and questions on `heldout_ops` functions never seen in training."""

    out: Path = Path("data/kgfunc")
    seed: int = 0
    shots: int = 10
    per_op: int = 10
    compositions: int = 40
    heldout_ops: int = 3

    def __post_init__(self) -> None:
        for name in ("shots", "per_op"):
            if getattr(self, name) < 1:
                raise ValueError(f"option '{name}': expected >= 1, got {getattr(self, name)}")
        if self.compositions < 0:
            raise ValueError(f"option 'compositions': expected >= 0, got {self.compositions}")
        if not 1 <= self.heldout_ops <= 6:
            raise ValueError(f"option 'heldout_ops': expected 1..6, got {self.heldout_ops}")


@dataclass
class TinyModelConfig:
    """A random-init Llama-style model and its locally trained tokenizer (tests, benchmarks)."""

    out: Path
    hidden: int = 64
    layers: int = 2
    heads: int = 1  # head size hidden/heads = 64, which vLLM's CPU attention supports
    vocab: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"option '{name}': expected >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(
                f"option 'hidden': {self.hidden} is not divisible by heads ({self.heads})"
            )
        if self.vocab < 300:
            # byte-level BPE: 256 byte tokens and the special tokens come before any merge
            raise ValueError(f"option 'vocab': expected >= 300, got {self.vocab}")
