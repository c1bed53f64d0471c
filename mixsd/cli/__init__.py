"""The `mixsd` command: one subcommand (group) per pipeline stage, each in its own module.

Commands are thin: parse the stage config (YAML + flags), call the stage's entry function. Heavy
imports (torch, transformers) happen inside commands, so `mixsd --help` stays instant.
"""

from __future__ import annotations

import sys

import typer

from mixsd.cli import data, evaluate, generate, model, targets, train
from mixsd.errors import MixsdError

app = typer.Typer(
    name="mixsd",
    help="MixSD: inject new knowledge into a language model without making it forget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data", help="Input sets: validate them, build synthetic corpora.")
app.add_typer(model.app, name="model", help="Build local models (tiny random, toy pretrained).")
app.command("generate", help="Decode MixSD targets (expert/naive mixing) into a target set.")(
    generate.generate
)
app.add_typer(targets.app, name="targets", help="Inspect, validate, merge and export target sets.")
app.command("train", help="Fine-tune on target sets (plain PyTorch or DeepSpeed ZeRO).")(
    train.train
)
app.command("evaluate", help="Memorization vs retention, target NLL, Fisher drift, report.")(
    evaluate.evaluate
)
app.command(
    "compare", help="The same runs over seeds: means, CIs, matched accuracy, paired tests."
)(evaluate.compare)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, never a traceback."""
    try:
        app()
    except MixsdError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
