"""`mixsd data ...`: validate input sets, build the synthetic corpora (KGFact, KGFunc)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixsd.config import load_config
from mixsd.outputs import check_output

app = typer.Typer(no_args_is_help=True)

Config = Annotated[Path | None, typer.Option(help="YAML file of options (flags override it).")]
Seed = Annotated[int | None, typer.Option(help="Random seed (same seed, byte-identical files).")]


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


@app.command("kgfact")
def kgfact(
    size: Annotated[str | None, typer.Option(help="small (100 facts) or large (525).")] = None,
    seed: Seed = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default data/kgfact).")] = None,
    distractors: Annotated[
        int | None, typer.Option(help="Facts in context next to the true one (retrieval split).")
    ] = None,
    config: Config = None,
) -> None:
    """Build the KGFact corpus: invented entities, typed relations, four question splits."""
    options = locals()  # the flags, named as KGFactConfig's fields; None = not given
    from mixsd.data import kgfact as corpus
    from mixsd.data.config import KGFactConfig

    cfg = load_config(KGFactConfig, options.pop("config"), **options)
    check_output(cfg.out, "corpus")
    _report(cfg.out, corpus.build(cfg))


@app.command("kgfunc")
def kgfunc(
    seed: Seed = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default data/kgfunc).")] = None,
    shots: Annotated[int | None, typer.Option(help="Input/Output examples per function.")] = None,
    per_op: Annotated[int | None, typer.Option(help="Questions per single function.")] = None,
    compositions: Annotated[int | None, typer.Option(help="Chained-function questions.")] = None,
    heldout_ops: Annotated[int | None, typer.Option(help="Functions held out of training.")] = None,
    config: Config = None,
) -> None:
    """Build the KGFunc corpus: opaque digit functions named by letters, few-shot prompts."""
    options = locals()  # the flags, named as KGFuncConfig's fields; None = not given
    from mixsd.data import kgfunc as corpus
    from mixsd.data.config import KGFuncConfig

    cfg = load_config(KGFuncConfig, options.pop("config"), **options)
    check_output(cfg.out, "corpus")
    _report(cfg.out, corpus.build(cfg))


def _report(out: Path, counts: dict[str, int]) -> None:
    for split, n in counts.items():
        typer.echo(f"{out / (split + '.jsonl')}: {n} records")
