"""`mixsd evaluate`: memorization vs retention, target NLL, Fisher drift, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Repeatable = list[str] | None


def evaluate(
    config: Annotated[
        Path | None, typer.Option(help="YAML config (configs/evaluate.yaml).")
    ] = None,
    models: Annotated[
        Repeatable,
        typer.Option(
            "--model", help="Run dir (every exported epoch + final) or HF dir; repeatable."
        ),
    ] = None,
    base: Annotated[str | None, typer.Option(help="The base model (HF dir).")] = None,
    input: Annotated[
        str | None, typer.Option(help="Injected facts: KGFact/KGFunc dir or input file.")
    ] = None,
    targets: Annotated[
        Repeatable, typer.Option(help="Target set for per-token NLL under the base; repeatable.")
    ] = None,
    suites: Annotated[
        Repeatable,
        typer.Option(
            "--suite",
            help="Held-out suite: gsm8k|math500|mmlu|jsonl=PATH, or built-in world, language, "
            "kgfunc-heldout, toy-known, toy-addition, toy-reversal (=SEED optional); repeatable.",
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Report dir (metrics.json, report.md, PNGs).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per forward.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Answer length cap.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most N examples per split, suite and λ (0 = all).")
    ] = None,
    answer_methods: Annotated[
        str | None, typer.Option(help="Answer extraction, in order: boxed,number,contains.")
    ] = None,
    fisher_examples: Annotated[
        int | None, typer.Option(help="Held-out examples for the base's Fisher (0 = off).")
    ] = None,
    peak_tolerance: Annotated[
        float | None,
        typer.Option(help="First peak: accuracy points a next gain may have (mixed targets: 5)."),
    ] = None,
    allow_incomplete: Annotated[
        bool | None,
        typer.Option(
            "--allow-incomplete/--no-allow-incomplete",
            help="Score incomplete --targets sets (recorded in metrics.json).",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16, float16.")] = None,
) -> None:
    options = locals()  # the flags, named as EvaluateConfig's fields; None = not given
    from mixsd.config import load_config
    from mixsd.evaluate.config import EvaluateConfig
    from mixsd.evaluate.run import evaluate as run

    cfg = load_config(EvaluateConfig, options.pop("config"), **options)
    report = run(cfg)
    typer.echo(f"report: {report / 'report.md'}")
