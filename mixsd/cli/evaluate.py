"""`mixsd evaluate`: memorization vs retention, target NLL, Fisher drift, report; `mixsd compare`:
the same runs over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


def compare(
    reports: Annotated[
        list[Path],
        typer.Argument(metavar="REPORT_DIR...", help="One `mixsd evaluate` report dir per seed."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for compare.md, compare.json, tradeoff.png.")],
    control: Annotated[
        str, typer.Option(help="The run every other run is compared with, paired by seed.")
    ] = "sft",
) -> None:
    """Mean over seeds with CIs per checkpoint, retention at matched training accuracy, and each
    run - control with a paired test over seeds."""
    from mixsd.evaluate.compare import compare as run

    done = run(reports, out, control)
    typer.echo(f"compare: {done / 'compare.md'}")
