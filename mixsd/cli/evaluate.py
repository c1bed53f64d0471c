"""`mixsd evaluate`: memorization vs retention, target NLL, Fisher drift, report."""

from __future__ import annotations

import typer

from mixsd.cli.options import config_command
from mixsd.evaluate.config import EvaluateConfig


def _evaluate(cfg: EvaluateConfig) -> None:
    from mixsd.evaluate.run import evaluate as run

    report = run(cfg)
    typer.echo(f"report: {report / 'report.md'}")


evaluate = config_command(
    EvaluateConfig, _evaluate, "Memorization vs retention, target NLL, Fisher drift, report."
)
