"""`mixsd targets ...`: inspect, validate, merge, export target sets; SFT sets from references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

Set = Annotated[Path, typer.Argument(help="Target-set folder.")]


@app.command("inspect")
def inspect(
    root: Set,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Rows per λ, target-length stats, naive-token fraction, correct rate, finish reasons,
    provenance (one streaming pass)."""
    from mixsd.targets.summary import format_summary, inspect_set

    summary = inspect_set(root)
    typer.echo(json.dumps(summary, indent=1) if as_json else format_summary(root, summary))


@app.command("validate")
def validate(root: Set) -> None:
    """Check completeness (every planned shard ran and finished), checksums, schema, row
    consistency, unique keys, unlisted parts: print each problem on one line and exit 1, else
    print `OK: N rows` (plus a note when the set predates recorded plans)."""
    from mixsd.targets.completeness import completeness
    from mixsd.targets.reader import read_manifest
    from mixsd.targets.validate import validate as check

    problems, rows = check(root)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    note = completeness(read_manifest(root))[1]
    typer.echo(f"OK: {rows} rows" + (f" ({note})" if note else ""))


@app.command("merge")
def merge(
    sets: Annotated[list[Path], typer.Argument(help="Two or more target sets.")],
    out: Annotated[Path, typer.Option(help="New target-set folder.")],
) -> None:
    """Merge sets made alike (same model, tokenizer, templates, sampling...) into a new set."""
    from mixsd.targets.ops import merge as run

    rows = run(sets, out)
    typer.echo(f"{out}: {rows} rows from {len(sets)} sets")


@app.command("export")
def export(
    root: Set,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="jsonl (all columns); messages (TRL chat SFT), prompt-completion (TRL), "
            "authors (the paper's JSONL with mix_meta).",
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Output file (default: stdout).")] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="Tokenizer folder for the chat formats (default: the set's model)."),
    ] = None,
) -> None:
    """Export rows as JSON lines for other trainers."""
    from mixsd.targets.ops import export as run

    rows = run(root, fmt, out, tokenizer)
    if out is not None:
        typer.echo(f"{out}: {rows} rows")


@app.command("from-references")
def from_references(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Input set (records).")],
    model: Annotated[Path, typer.Option(help="Model folder (its tokenizer renders the prompts).")],
    out: Annotated[Path, typer.Option(help="Target-set folder to write (resumes if it exists).")],
    templates: Annotated[Path | None, typer.Option(help="Prompt templates YAML.")] = None,
) -> None:
    """Build an SFT target set (λ null) whose targets are the references, same format as MixSD."""
    from mixsd.targets.ops import from_references as run

    rows = run(input_path, model, out, templates)
    typer.echo(f"{out}: wrote {rows} rows")
