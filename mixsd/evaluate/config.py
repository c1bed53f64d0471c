"""The evaluate stage's options (YAML `configs/evaluate.yaml`, overridden by `mixsd evaluate` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from mixsd.answers import check_methods
from mixsd.config import option
from mixsd.modeling import DTYPES
from mixsd.tracking import REPORT_TO_HELP, check_report_to


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
    kl_prompts: held-out prompts (round-robin over the suites and `mixsd.evaluate.kl`'s chat
    prompts) along whose base greedy answers each checkpoint's KL(base || model) is measured
    (0 = off: it costs the base's answers plus one forward per checkpoint).
    """

    base: str = option(help="The base model (HF dir).")
    out: str = option(help="Report dir (metrics.json, report.md, PNGs).")
    models: list[str] = option(
        [], "Run dir (every exported epoch + final) or HF dir; repeatable.", flag="--model"
    )
    input: str | None = option(None, "Injected facts: KGFact/KGFunc dir or input file.")
    targets: list[str] = option([], "Target set for per-token NLL under the base; repeatable.")
    suites: list[str] = option(
        [],
        "Held-out suite: gsm8k|math500|mmlu|jsonl=PATH, or built-in world, language, "
        "kgfunc-heldout, toy-known, toy-addition, toy-reversal (=SEED optional); repeatable.",
        flag="--suite",
    )
    batch_size: int = option(16, "Sequences per forward.")
    max_new_tokens: int = option(256, "Answer length cap.")
    limit: int = option(0, "At most N examples per split, suite and λ (0 = all).")
    answer_methods: list[str] = option(
        ["boxed", "number"], "Answer extraction, in order: boxed,number,contains."
    )
    fisher_examples: int = option(64, "Held-out examples for the base's Fisher (0 = off).")
    kl_prompts: int = option(
        0,
        "Held-out prompts (suites + chat) for KL(base||model) along the base's answers (0 = off).",
    )
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    dtype: str = option(
        "auto", "auto (bf16 on GPU or a bf16 CPU, else fp32), float32, bfloat16, float16."
    )
    allow_pickle: bool = option(
        False, "Load a model whose weights are only pickled (trusted models only)."
    )
    allow_incomplete: bool = option(
        False, "Score incomplete --targets sets (recorded in metrics.json)."
    )
    report_to: list[str] = option([], REPORT_TO_HELP)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0 = all), got {self.limit}")
        if self.kl_prompts < 0:
            raise ValueError(f"kl_prompts must be >= 0 (0 = off), got {self.kl_prompts}")
        if self.fisher_examples < 0:
            raise ValueError(f"fisher_examples must be >= 0 (0 = off), got {self.fisher_examples}")
        self.answer_methods = check_methods(self.answer_methods)
        self.report_to = check_report_to(self.report_to)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.input is None and not self.suites and not self.targets:
            raise ValueError("nothing to evaluate: give an input set, suites or target sets")
