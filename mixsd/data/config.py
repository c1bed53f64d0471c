"""Configs of the data commands (`mixsd data kgfact|kgfunc`, `mixsd model tiny`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixsd.config import at_least, option

# size -> (domains, entities per domain, facts per entity): 5 x 10 x 2 = 100, 7 x 25 x 3 = 525,
# the two KGFact sizes of the MixSD paper.
KGFACT_SIZES = {"small": (5, 10, 2), "large": (7, 25, 3)}


@dataclass
class KGFactConfig:
    """The synthetic knowledge graph: `size` small (~100 facts) or large (~500)."""

    out: Path = option(Path("data/kgfact"), "Output folder.")
    size: str = option("small", "small (100 facts) or large (525).")
    seed: int = option(0, "Random seed (same seed, byte-identical files).")
    distractors: int = option(50, "Facts in context next to the true one (retrieval split).")

    def __post_init__(self) -> None:
        if self.size not in KGFACT_SIZES:
            raise ValueError(f"option 'size': expected one of small, large, got {self.size!r}")
        at_least(self, 0, "distractors")


@dataclass
class KGFuncConfig:
    """Opaque digit functions: `per_op` questions per seen function, `compositions` chains of
    seen functions, and questions on `heldout_ops` functions never seen in training."""

    out: Path = option(Path("data/kgfunc"), "Output folder.")
    seed: int = option(0, "Random seed (same seed, byte-identical files).")
    shots: int = option(10, "Input/Output examples per function.")
    per_op: int = option(10, "Questions per single function.")
    compositions: int = option(40, "Chained-function questions.")
    heldout_ops: int = option(3, "Functions held out of training.")

    def __post_init__(self) -> None:
        at_least(self, 1, "shots", "per_op")
        at_least(self, 0, "compositions")
        if not 1 <= self.heldout_ops <= 6:
            raise ValueError(f"option 'heldout_ops': expected 1..6, got {self.heldout_ops}")


@dataclass
class TinyModelConfig:
    """A random-init Llama-style model and its locally trained tokenizer (tests, benchmarks)."""

    out: Path = option(help="Output folder: a save_pretrained model and tokenizer.")
    hidden: int = option(64, "Hidden size.")
    layers: int = option(2, "Transformer layers.")
    # head size hidden/heads = 64, which vLLM's CPU attention supports
    heads: int = option(1, "Attention heads, divide hidden.")
    vocab: int = option(512, "Most tokenizer entries.")
    seed: int = option(0, "Weight-init seed.")

    def __post_init__(self) -> None:
        at_least(self, 1, "hidden", "layers", "heads")
        if self.hidden % self.heads:
            raise ValueError(
                f"option 'hidden': {self.hidden} is not divisible by heads ({self.heads})"
            )
        if self.vocab < 300:
            # byte-level BPE: 256 byte tokens and the special tokens come before any merge
            raise ValueError(f"option 'vocab': expected >= 300, got {self.vocab}")
