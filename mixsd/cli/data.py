"""`mixsd data ...`: validate input sets, build the synthetic corpora (KGFact, KGFunc)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixsd.cli.options import config_command
from mixsd.data.config import KGFactConfig, KGFuncConfig
from mixsd.outputs import check_output

app = typer.Typer(no_args_is_help=True)


@app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(help="Input set: .jsonl/.json/.parquet/.csv or folder.")],
) -> None:
    """Check an input set: print every problem (file:line: field: what is wrong), exit 1 if any,
    and notes on what loading does (ids derived from content, fields ignored)."""
    from mixsd.data.io import check

    records, problems, notes = check(path)
    for line in [str(p) for p in problems] + [f"note: {n}" for n in notes]:
        typer.echo(line)
    if problems:
        typer.echo(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {path}")
        raise typer.Exit(1)
    typer.echo(f"{len(records)} records OK")


def _kgfact(cfg: KGFactConfig) -> None:
    from mixsd.data import kgfact as corpus

    check_output(cfg.out, "corpus")
    _report(cfg.out, corpus.build(cfg))


def _kgfunc(cfg: KGFuncConfig) -> None:
    from mixsd.data import kgfunc as corpus

    check_output(cfg.out, "corpus")
    _report(cfg.out, corpus.build(cfg))


kgfact = app.command("kgfact")(
    config_command(
        KGFactConfig,
        _kgfact,
        "Build the KGFact corpus: invented entities, typed relations, four question splits.",
    )
)
kgfunc = app.command("kgfunc")(
    config_command(
        KGFuncConfig,
        _kgfunc,
        "Build the KGFunc corpus: opaque digit functions named by letters, few-shot prompts.",
    )
)


def _report(out: Path, counts: dict[str, int]) -> None:
    for split, n in counts.items():
        typer.echo(f"{out / (split + '.jsonl')}: {n} records")
