"""The training loop: one loop, plain PyTorch or DeepSpeed underneath (see backends), and one of
two objectives on top: NLL on target sets (`TargetNLL`) or on-policy self-distillation (`opsd`).

Each optimizer step takes the next `batch_size` items (target rows, or OPSD prompts) of a seeded
per-epoch order, splits them over processes and micro-steps (schedule.micro_slices), packs each
micro-batch without padding between sequences (packing), and normalises the loss by the token
count of the whole global batch: the update is the same for 1 process or N. Writes
`RUN/config.yaml`, `RUN/metrics.jsonl`, checkpoints, exports and the final `RUN/model/`; the same
command resumes a killed run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from mixsd.config import to_dict
from mixsd.errors import MixsdError
from mixsd.train import checkpoint, schedule
from mixsd.train.config import RESUMABLE_CHANGES, TrainConfig
from mixsd.train.data import load_examples
from mixsd.train.packing import Packed, pack


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


class NLLMicro(NamedTuple):
    """One micro-step of target rows; weight 0 for a process left without rows."""

    batch: Packed
    weight: float


class TargetNLL:
    """The NLL objective on target-set examples (MixSD or SFT targets): per micro-step the summed
    target NLL, normalised by the target-token count of the whole global batch."""

    def __init__(self, examples: list, stats, one_row: bool = False):
        self.examples, self.stats, self.one_row = examples, stats, one_row
        self.n_items = len(examples)

    def data_record(self) -> dict:
        return {**vars(self.stats), "examples": self.n_items}

    def micro_batches(self, backend, epoch: int, indices, parts, world: int):
        """(micro-steps, global target-token count, step figures)."""
        ex = self.examples
        # A short last batch can leave this process nothing: run the first sequence with
        # weight 0 so every process takes part in the collective operations.
        micros = [
            NLLMicro(
                pack([ex[i] for i in part] or [ex[indices[0]]], self.one_row), float(len(part) > 0)
            )
            for part in parts
        ]
        return micros, sum(ex[i].n_target for i in indices), {}

    def loss(self, backend, micro: NLLMicro) -> tuple:
        loss = backend.loss_sum(micro.batch)
        figures = {"loss": float(loss.detach()), "tokens": micro.batch.n_real,
                   "slots": micro.batch.n_slots}  # fmt: skip
        return loss, figures

    def record(self, sums: dict, n_target: float) -> dict:
        return {"loss": sums["loss"] / n_target, "target_tokens": int(n_target)}

    def recall_examples(self) -> list:
        return self.examples


def _objective(cfg: TrainConfig, tokenizer, max_len: int):
    if cfg.method == "opsd":
        from mixsd.train.opsd import OPSD

        return OPSD(cfg, tokenizer, max_len)
    examples, stats = load_examples(
        cfg.targets, tokenizer, max_len, cfg.too_long, cfg.failed, cfg.allow_incomplete
    )
    return TargetNLL(examples, stats)


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
    objective = _objective(cfg, tokenizer, max_len)
    n = objective.n_items
    total = schedule.total_steps(n, cfg.batch_size, cfg.epochs, cfg.steps)
    per_epoch = schedule.steps_per_epoch(n, cfg.batch_size)
    backend, micro, accumulation = _build(cfg, model, rank, world, total)
    if cfg.method == "opsd":
        objective.load_teacher(backend.device, next(backend.module.parameters()).dtype)
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
        _log(metrics_path, {"event": "data", "step": start, **objective.data_record()})
    backend.module.train()
    # Flash attention packs one row at zero cost (varlen kernels); SDPA/eager pay row^2: see packing.
    objective.one_row = backend.module.config._attn_implementation.startswith("flash")
    end = total if stop_after is None else min(total, start + stop_after)
    # A bar on a terminal; a line every 30 s without one (SLURM logs, redirected runs).
    bar = Progress("train", total, "step", initial=start, enabled=rank == 0)
    for step in range(start, end):
        t0 = time.perf_counter()
        epoch, indices = schedule.step_indices(n, cfg.batch_size, cfg.seed, step)
        parts = schedule.micro_slices(indices, world, micro, accumulation, rank)
        lr = backend.lr()
        micros, n_norm, step_figures = objective.micro_batches(
            backend, epoch, indices, parts, world
        )
        sums: dict[str, float] = {}
        for g, item in enumerate(micros):
            weight = item.weight
            boundary = g == accumulation - 1
            with backend.micro_step(boundary):
                loss, figures = objective.loss(backend, item)
                backend.backward(loss * weight / max(n_norm, 1))
            norm = backend.step(boundary)
            for key, value in figures.items():
                sums[key] = sums.get(key, 0.0) + weight * value
        keys = sorted(sums)
        sums = dict(zip(keys, allreduce_sum([sums[k] for k in keys], world), strict=True))
        seconds = time.perf_counter() - t0
        done = step + 1
        if rank == 0:
            tokens = sums.pop("tokens")
            record = {
                "step": done,
                "epoch": epoch + 1,
                **objective.record({**sums, **step_figures}, n_norm),
                "lr": lr,
                "grad_norm": norm,
                "tokens": int(tokens),
                "tokens_per_s": tokens / seconds,
                "real_token_fraction": tokens / sums["slots"],
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
            recall = _recall(backend, tokenizer, objective.recall_examples(), cfg, rank)
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
