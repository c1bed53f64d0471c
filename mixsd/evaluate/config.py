"""The evaluate stage's options (YAML `configs/evaluate.yaml`, overridden by `mixsd evaluate` flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mixsd.answers import METHODS


@dataclass
class EvaluateConfig:
    """What to evaluate, against what, and where the report goes.

    models: run dirs (every `exports/epoch-<k>/` and `model/` is a checkpoint) or HF model dirs.
    base: the model before fine-tuning: the retention reference, the NLL scorer, θ0 of the drift.
    input: the injected facts (a KGFact dir or one input file) for closed-book memorization.
    targets: target sets whose per-token NLL under the base is measured (every λ and SFT).
    suites: held-out suites, `FORMAT=PATH` (gsm8k, math500, mmlu, jsonl) or a built-in name.
    limit: at most this many examples per memorization split, suite and target-set λ (0 = all).
    fisher_examples: held-out examples (from the suites) for the base's diagonal Fisher (0 = off).
    peak_tolerance: accuracy points (of 100) the next checkpoint may gain over a new maximum that
    is still the run's first peak (`scoring.first_peak`; the authors use 5 for mixed targets).
    """

    base: str
    out: str
    models: list[str] = field(default_factory=list)
    input: str | None = None
    targets: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    batch_size: int = 16
    max_new_tokens: int = 256
    limit: int = 0
    answer_methods: list[str] = field(default_factory=lambda: ["boxed", "number"])
    fisher_examples: int = 64
    peak_tolerance: float = 0.0
    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    allow_incomplete: bool = False  # score incomplete target sets (recorded in metrics.json)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0 = all), got {self.limit}")
        if self.fisher_examples < 0:
            raise ValueError(f"fisher_examples must be >= 0 (0 = off), got {self.fisher_examples}")
        if not 0.0 <= self.peak_tolerance <= 100.0:
            raise ValueError(
                f"peak_tolerance must be in [0, 100] points, got {self.peak_tolerance}"
            )
        # "boxed,contains" from a flag is a list of two
        self.answer_methods = [m for ms in self.answer_methods for m in ms.split(",") if m]
        bad = [m for m in self.answer_methods if m not in METHODS]
        if bad or not self.answer_methods:
            raise ValueError(f"answer_methods: expected some of {', '.join(METHODS)}, got {bad}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"dtype: expected auto, float32, bfloat16 or float16, got {self.dtype!r}"
            )
        if self.input is None and not self.suites and not self.targets:
            raise ValueError("nothing to evaluate: give an input set, suites or target sets")
