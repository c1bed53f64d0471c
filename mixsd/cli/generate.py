"""`mixsd generate`: decode MixSD targets into a target set (options: `GenerateConfig`)."""

from __future__ import annotations

import typer

from mixsd.cli.options import config_command
from mixsd.generate.config import GenerateConfig


def _generate(cfg: GenerateConfig) -> None:
    from mixsd.generate.runner import run  # torch and transformers: after the cheap checks

    stats = run(cfg)
    rate = stats["acceptance_rate"]
    typer.echo(
        f"{cfg.out}: {stats['rows']} rows written ({stats['skipped_existing']} already there), "
        f"{stats['tokens']} tokens in {stats['seconds']:.1f}s, naive fraction "
        f"{stats['naive_fraction'] or 0:.3f}, acceptance {rate if rate is None else round(rate, 3)}"
    )


generate = config_command(
    GenerateConfig,
    _generate,
    "Decode MixSD targets (expert/naive mixing) into a target set; rerun to resume.",
)
