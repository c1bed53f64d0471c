"""`mixsd train`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mixsd.errors import MixsdError

Str = str | None
Int = int | None
Bool = bool | None


def train(
    config: Annotated[
        Path | None, typer.Option(help="YAML train config (flags override it).")
    ] = None,
    model: Annotated[Str, typer.Option(help="Model directory (HF format) to fine-tune.")] = None,
    targets: Annotated[
        list[str] | None, typer.Option(help="Target set: SET or SET:lam=0.3 (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (resumed when it holds a checkpoint).")
    ] = None,
    epochs: Annotated[Int, typer.Option(help="Epochs over the target rows.")] = None,
    steps: Annotated[Int, typer.Option(help="Optimizer steps (overrides --epochs).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    batch_size: Annotated[
        Int, typer.Option(help="GLOBAL batch: sequences per optimizer step.")
    ] = None,
    micro_batch_size: Annotated[
        Int, typer.Option(help="Sequences per process per forward.")
    ] = None,
    zero: Annotated[
        Str, typer.Option(help="none (plain PyTorch) or DeepSpeed ZeRO stage 0|1|2|3.")
    ] = None,
    deepspeed_config: Annotated[
        Path | None, typer.Option(help="DeepSpeed JSON ('auto' values filled).")
    ] = None,
    nproc: Annotated[
        Int, typer.Option(help="Local processes to start (unless under a launcher).")
    ] = None,
    seed: Annotated[Int, typer.Option(help="Seed of the data order and of torch.")] = None,
    warmup_steps: Annotated[Int, typer.Option(help="Linear warm-up steps.")] = None,
    schedule: Annotated[Str, typer.Option(help="constant | cosine (after warm-up).")] = None,
    save_every: Annotated[
        Int, typer.Option(help="Checkpoint every N steps (and at epoch ends).")
    ] = None,
    export_every_epoch: Annotated[
        Bool,
        typer.Option(
            "--export-every-epoch/--no-export-every-epoch", help="HF dir per epoch in RUN/exports/."
        ),
    ] = None,
    failed: Annotated[
        Str,
        typer.Option(help="Rows that failed every answer check: reference | drop | keep."),
    ] = None,
    max_len: Annotated[
        Int, typer.Option(help="Max prompt+target tokens (default: the model's).")
    ] = None,
    allow_incomplete: Annotated[
        Bool,
        typer.Option(
            "--allow-incomplete/--no-allow-incomplete",
            help="Train on what an incomplete target set holds (recorded in the metrics).",
        ),
    ] = None,
    too_long: Annotated[
        Str, typer.Option(help="truncate (and count) | refuse over-long sequences.")
    ] = None,
    gradient_checkpointing: Annotated[
        Bool,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute activations in backward.",
        ),
    ] = None,
    dtype: Annotated[
        Str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16.")
    ] = None,
    recall_every_epoch: Annotated[
        Bool,
        typer.Option(
            "--recall-every-epoch/--no-recall-every-epoch", help="Closed-book recall per epoch."
        ),
    ] = None,
    method: Annotated[
        Str, typer.Option(help="nll (target sets) | opsd (on-policy self-distillation).")
    ] = None,
    input: Annotated[
        Path | None, typer.Option(help="opsd: input records (naive prompts, teacher knowledge).")
    ] = None,
    templates: Annotated[
        Path | None, typer.Option(help="opsd: expert templates YAML (default: published).")
    ] = None,
    divergence: Annotated[
        Str, typer.Option(help="opsd: reverse_kl | forward_kl | jsd, per rollout token.")
    ] = None,
    jsd_beta: Annotated[float | None, typer.Option(help="opsd: beta of jsd.")] = None,
    teacher_top_k: Annotated[
        Int, typer.Option(help="opsd: divergence over the teacher's top-k (0: full vocab).")
    ] = None,
    rollouts: Annotated[Int, typer.Option(help="opsd: rollouts per prompt.")] = None,
    rollout_max_new_tokens: Annotated[Int, typer.Option(help="opsd: rollout length cap.")] = None,
    rollout_temperature: Annotated[
        float | None, typer.Option(help="opsd: student sampling temperature.")
    ] = None,
    stop_after: Annotated[
        Int, typer.Option(help="Stop (checkpointed) after N steps of this call.")
    ] = None,
) -> None:
    """Fine-tune on target sets (--method nll) or by on-policy self-distillation from an input set
    (--method opsd); writes RUN/{config.yaml,metrics.jsonl,checkpoints,model}."""
    options = locals()  # the flags, named as TrainConfig's fields; None = not given
    from mixsd.config import load_config
    from mixsd.train.config import TrainConfig
    from mixsd.train.launch import relaunch, under_launcher

    stop_after = options.pop("stop_after")  # this call only, not the run's config
    cfg = load_config(TrainConfig, options.pop("config"), **options)
    if not under_launcher():
        _precheck(cfg)  # user errors as one line here, before a model loads or N processes start
    if cfg.nproc > 1 and not under_launcher():
        code = relaunch(cfg.nproc, sys.argv[1:])
        if code:
            raise MixsdError(
                f"training failed in one of the {cfg.nproc} processes (exit code {code}, see above)"
            )
        return
    from mixsd.train import run

    run(cfg, stop_after=stop_after)


def _precheck(cfg) -> None:
    from mixsd.data.models import load_tokenizer
    from mixsd.outputs import check_output
    from mixsd.targets.completeness import require_complete
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.reader import read_manifest
    from mixsd.train.data import check_set, parse_target_spec

    roots = [parse_target_spec(spec)[0] for spec in cfg.targets]
    inputs = [cfg.model, *roots, cfg.input, cfg.templates, cfg.deepspeed_config]
    check_output(cfg.out, "run", inputs)
    tokenizer = load_tokenizer(cfg.model)
    if cfg.method == "opsd":
        from mixsd.data.io import load_records
        from mixsd.data.templates import load_templates

        load_records(cfg.input)
        load_templates(cfg.templates)
    for spec in cfg.targets:
        root, lams = parse_target_spec(spec)
        check_set(root, lams, tokenizer_fingerprint(tokenizer))
        require_complete(root, read_manifest(root), cfg.allow_incomplete)
    cfg.micro_and_accumulation(cfg.nproc)
