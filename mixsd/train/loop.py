"""The training loop: one loop, plain PyTorch or DeepSpeed underneath (see backends).

Each optimizer step takes the next `batch_size` sequences of a seeded per-epoch order, splits them
over processes and micro-steps (schedule.micro_slices), packs each micro-batch without padding
between sequences (packing), and normalises the loss by the target-token count of the whole global batch: the update
is the same for 1 process or N. Writes `RUN/config.yaml`, `RUN/metrics.jsonl`, checkpoints, exports
and the final `RUN/model/`; the same command resumes a killed run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from mixsd.config import to_dict
from mixsd.errors import MixsdError
from mixsd.train import checkpoint, schedule
from mixsd.train.config import RESUMABLE_CHANGES, TrainConfig
from mixsd.train.data import load_examples
from mixsd.train.packing import pack


def _distributed(zero: str) -> tuple[int, int]:
    """(rank, world): starts the process group when launched by torchrun / deepspeed (NCCL on
    GPUs, gloo on CPUs; DeepSpeed's own init for its engine)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if zero == "none":
        import torch.distributed as dist

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend)
    else:
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend)
    return int(os.environ["RANK"]), world


def _check_resume(run: Path, cfg: TrainConfig) -> None:
    path = run / "config.yaml"
    if not (run / "checkpoints" / "latest").is_file() or not path.is_file():
        return
    old = yaml.safe_load(path.read_text(encoding="utf-8"))
    new = to_dict(cfg)
    for key in sorted(set(old) | set(new)):
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key):
            raise MixsdError(
                f"{path}: cannot resume with a different '{key}' ({old.get(key)!r} -> {new.get(key)!r}); "
                "use another --out or the same options"
            )


def _load_model(path: str):
    """(tokenizer, fp32 model) of `path`; a one-line error when it is not a model directory."""
    from mixsd.data.models import load_model, load_tokenizer

    return load_tokenizer(path), load_model(path)


def _build(cfg: TrainConfig, model, rank: int, world: int, total: int):
    """The backend (plain or DeepSpeed) with its AdamW and LR schedule; (backend, micro, accumulation)."""
    import torch

    bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and torch.cuda.is_available())
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # norms and biases
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule.lr_factor(s, cfg.warmup_steps, total, cfg.schedule)
    )
    micro, accumulation = cfg.micro_and_accumulation(world)
    if cfg.zero == "none":
        from mixsd.train.backends import Plain

        gpu = torch.cuda.is_available()
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if gpu else "cpu")
        backend = Plain(model, optimizer, scheduler, cfg.grad_clip, device, bf16, rank, world)
    else:
        from mixsd.train.backends import DeepSpeedBackend, deepspeed_config

        ds = deepspeed_config(
            cfg.deepspeed_config,
            int(cfg.zero),
            batch_size=cfg.batch_size,
            micro=micro,
            accumulation=accumulation,
            grad_clip=cfg.grad_clip,
            bf16=bf16,
        )
        backend = DeepSpeedBackend(model, optimizer, scheduler, ds, world)
    return backend, micro, accumulation


def run(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Train; returns `RUN/model`. `stop_after`: stop (with a checkpoint) after that many optimizer
    steps of this invocation, as if killed; running again resumes."""
    import torch

    from mixsd.progress import Progress
    from mixsd.train.backends import allreduce_sum

    rank, world = _distributed(cfg.zero)
    run_dir = Path(cfg.out)
    _check_resume(run_dir, cfg)
    torch.manual_seed(cfg.seed)
    tokenizer, model = _load_model(cfg.model)
    max_len = cfg.max_len or model.config.max_position_embeddings
    examples, stats = load_examples(cfg.targets, tokenizer, max_len, cfg.too_long, cfg.failed)
    total = schedule.total_steps(len(examples), cfg.batch_size, cfg.epochs, cfg.steps)
    per_epoch = schedule.steps_per_epoch(len(examples), cfg.batch_size)
    backend, micro, accumulation = _build(cfg, model, rank, world, total)
    metrics_path = run_dir / "metrics.jsonl"
    if rank == 0:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        # Atomic: a resume parses it (`_check_resume`), a kill must not leave half of it.
        checkpoint.write_atomic(
            run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False)
        )
    start = checkpoint.load(run_dir, backend, rank)
    if rank == 0:
        checkpoint.trim_metrics(metrics_path, start)
        _log(
            metrics_path, {"event": "data", "step": start, **vars(stats), "examples": len(examples)}
        )
    backend.module.train()
    # Flash attention packs one row at zero cost (varlen kernels); SDPA/eager pay row^2: see packing.
    one_row = backend.module.config._attn_implementation.startswith("flash")
    end = total if stop_after is None else min(total, start + stop_after)
    # A bar on a terminal; a line every 30 s without one (SLURM logs, redirected runs).
    bar = Progress("train", total, "step", initial=start, enabled=rank == 0)
    for step in range(start, end):
        t0 = time.perf_counter()
        epoch, indices = schedule.step_indices(len(examples), cfg.batch_size, cfg.seed, step)
        n_target = sum(examples[i].n_target for i in indices)
        lr = backend.lr()
        loss_sum, tokens, slots, norm = 0.0, 0, 0, None
        for g, part in enumerate(schedule.micro_slices(indices, world, micro, accumulation, rank)):
            # A short last batch can leave this process nothing: run the first sequence with
            # weight 0 so every process takes part in the collective operations.
            batch = pack(
                [examples[i] for i in part] if len(part) else [examples[indices[0]]], one_row
            )
            boundary = g == accumulation - 1
            with backend.micro_step(boundary):
                loss = backend.loss_sum(batch)
                backend.backward(loss * (1.0 if len(part) else 0.0) / n_target)
            norm = backend.step(boundary)
            if len(part):
                loss_sum, tokens, slots = (
                    loss_sum + float(loss.detach()),
                    tokens + batch.n_real,
                    slots + batch.n_slots,
                )
        loss_sum, tokens, slots = allreduce_sum([loss_sum, tokens, slots], world)
        seconds = time.perf_counter() - t0
        done = step + 1
        if rank == 0:
            record = {
                "step": done,
                "epoch": epoch + 1,
                "loss": loss_sum / n_target,
                "lr": lr,
                "grad_norm": norm,
                "tokens": int(tokens),
                "target_tokens": n_target,
                "tokens_per_s": tokens / seconds,
                "real_token_fraction": tokens / slots,
                "time": time.time(),
            }
            _log(metrics_path, record)
            bar.postfix(loss=f"{record['loss']:.4f}")
            bar.update(1, tokens=int(tokens))
        epoch_end = done % per_epoch == 0 or done == total
        # Exports and recall before the checkpoint: a kill in between redoes them on resume.
        if epoch_end and cfg.export_every_epoch:
            checkpoint.export(backend, tokenizer, run_dir / "exports" / f"epoch-{epoch + 1}", rank)
        if epoch_end and cfg.recall_every_epoch:
            recall = _recall(backend, tokenizer, examples, cfg, rank)
            if rank == 0:
                _log(
                    metrics_path,
                    {"event": "recall", "step": done, "epoch": epoch + 1, "recall": recall},
                )
        if (cfg.save_every and done % cfg.save_every == 0) or epoch_end or done == end:
            checkpoint.save(run_dir, done, backend, rank)
    bar.close()
    model_dir = run_dir / "model"
    if end == total and not model_dir.is_dir():
        checkpoint.export(backend, tokenizer, model_dir, rank)
    return model_dir


def _log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _recall(backend, tokenizer, examples, cfg: TrainConfig, rank: int) -> float | None:
    """Closed-book greedy recall on (up to `recall_limit`) training questions, on process 0."""
    if rank != 0:
        return None
    from mixsd.train.recall import greedy_recall

    backend.module.eval()
    value = greedy_recall(
        backend.module, tokenizer, examples, cfg.recall_limit, cfg.recall_max_new_tokens
    )
    backend.module.train()
    return value
