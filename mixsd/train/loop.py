"""The training loop: one loop, plain PyTorch or DeepSpeed underneath (see backends), and one
objective on top (`objective.Objective`): NLL on target sets (`nll.TargetNLL`) or on-policy
self-distillation (`opsd.OPSD`). The loop never asks which.

Each optimizer step takes the next `batch_size` items (target rows, or OPSD prompts) of a seeded
per-epoch order, splits them over processes and micro-steps (schedule.micro_slices), packs each
micro-batch without padding between sequences (packing), and normalises the loss by the token
count of the whole global batch: the update is the same for 1 process or N. Writes
`RUN/config.yaml`, `RUN/data.json` (what it trains on), `RUN/metrics.jsonl`, checkpoints, exports
and the final `RUN/model/`; the same command resumes a killed run (on the same data only).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from mixsd.config import to_dict
from mixsd.errors import MixsdError
from mixsd.io import write_atomic
from mixsd.modeling import resolve_device, resolve_dtype
from mixsd.tracking import Tracker, numbers
from mixsd.train import checkpoint, schedule
from mixsd.train.config import RESUMABLE_CHANGES, TrainConfig
from mixsd.train.data import load_examples, reference_warning
from mixsd.train.nll import TargetNLL
from mixsd.train.objective import Objective
from mixsd.train.packing import packs_one_row


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


def _data_fingerprint(cfg: TrainConfig) -> dict:
    """What the run trains on (`RUN/data.json`): the target selections' parts and checksums, or
    OPSD's input records file (and templates file) by content."""
    if cfg.method == "nll":
        from mixsd.train.data import selection_fingerprint

        return selection_fingerprint(cfg.targets)
    from mixsd.targets.provenance import sha256_file

    files = {"input": cfg.opsd.input, "templates": cfg.opsd.templates}
    return {k: f"{v}: sha256 {sha256_file(v)}" for k, v in files.items() if v is not None}


def _check_data(run: Path, fingerprint: dict) -> None:
    """Refuse to resume on other data than the run started on (a set that gained a λ since, a
    part rewritten, an edited input file): the resumed steps would not be the run's steps."""
    from mixsd.train.data import data_change

    path = run / "data.json"
    if not (run / "checkpoints" / "latest").is_file() or not path.is_file():
        return
    changed = data_change(json.loads(path.read_text(encoding="utf-8")), fingerprint)
    if changed:
        raise MixsdError(
            f"{run}: cannot resume, the training data changed since the run started ({changed}); "
            "restore the data, or train into a new --out"
        )


def _load_model(path: str, allow_pickle: bool = False):
    """(tokenizer, fp32 model) of `path`; a one-line error when it is not a model directory."""
    from mixsd.data.models import load_model, load_tokenizer

    return load_tokenizer(path), load_model(path, allow_pickle=allow_pickle)


def _build(cfg: TrainConfig, model, rank: int, world: int, total: int):
    """The backend (plain or DeepSpeed) with its AdamW and LR schedule; (backend, micro, accumulation)."""
    import torch

    bf16 = resolve_dtype(cfg.dtype, resolve_device()) == "bfloat16"
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # norms and biases
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # LoRA has no 1-d weights: an empty group would be dropped by ZeRO-3, the schedule's not.
    # fused: one kernel over all parameters instead of a chain of foreach ops; the same numbers
    # (1e-7) and 3-6x less time a step on CPU (SmolLM2: 0.08 vs 0.29-0.53 s, 2 threads).
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
        fused=True,
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

        # DeepSpeed's bf16 casts the module to bf16 (fp32 only in the optimizer's master copy).
        # On the CPU, mixed precision is the plain backend's instead: bf16 autocast over fp32
        # weights, which keeps norms, softmax and the loss in fp32.
        cpu_autocast = bf16 and not torch.cuda.is_available()
        ds = deepspeed_config(
            cfg.deepspeed_config,
            int(cfg.zero),
            batch_size=cfg.batch_size,
            micro=micro,
            accumulation=accumulation,
            grad_clip=cfg.grad_clip,
            bf16=bf16 and not cpu_autocast,
        )
        backend = DeepSpeedBackend(
            model, optimizer, scheduler, ds, world, cfg.allow_pickle, cpu_autocast
        )
    return backend, micro, accumulation


def _objective(cfg: TrainConfig, tokenizer, max_len: int, one_row: bool, rank: int) -> Objective:
    if cfg.method == "opsd":
        from mixsd.train.opsd import OPSD

        return OPSD(cfg, tokenizer, max_len, one_row)
    examples, stats = load_examples(
        cfg.targets,
        tokenizer,
        max_len,
        cfg.too_long,
        cfg.failed,
        cfg.allow_mostly_reference,
        cfg.allow_incomplete,
    )
    warning = reference_warning(stats)
    if warning and rank == 0:
        print(warning, file=sys.stderr, flush=True)
    return TargetNLL(examples, stats, one_row)


def run(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Train; returns `RUN/model`. `stop_after`: stop (with a checkpoint) after that many optimizer
    steps of this invocation, as if killed; running again resumes."""
    import torch

    from mixsd.progress import Progress

    rank, world = _distributed(cfg.zero)
    run_dir = Path(cfg.out)
    _check_resume(run_dir, cfg)
    data = _data_fingerprint(cfg)
    _check_data(run_dir, data)
    torch.manual_seed(cfg.seed)
    tokenizer, model = _load_model(cfg.model, cfg.allow_pickle)
    if cfg.lora is not None:
        from mixsd.train import lora

        model = lora.wrap(model, cfg.lora, cfg.model)
    max_len = cfg.max_len or model.config.max_position_embeddings
    objective = _objective(cfg, tokenizer, max_len, packs_one_row(model), rank)
    total = schedule.total_steps(objective.n_items, cfg.batch_size, cfg.epochs, cfg.steps)
    backend, micro, accumulation = _build(cfg, model, rank, world, total)
    objective.prepare(backend)
    trainer = _Trainer(cfg, objective, backend, tokenizer, rank, world, micro, accumulation)
    start = trainer.start(data)
    end = total if stop_after is None else min(total, start + stop_after)
    # A bar on a terminal; a line every 30 s without one (SLURM logs, redirected runs).
    bar = Progress("train", total, "step", initial=start, enabled=rank == 0)
    per_epoch = schedule.steps_per_epoch(objective.n_items, cfg.batch_size)
    for step in range(start, end):
        epoch, record = trainer.step(step)
        if record is not None:
            bar.postfix(loss=f"{record['loss']:.4f}")
            bar.update(1, tokens=record["tokens"])
        done = step + 1
        trainer.after_step(
            done, epoch, epoch_end=done % per_epoch == 0 or done == total, last=done == end
        )
    bar.close()
    trainer.close()
    model_dir = run_dir / "model"
    if end == total and _rank0_decides(rank == 0 and not model_dir.is_dir(), world):
        if cfg.export_every_epoch:
            # the last step always ends an epoch's export: the final model is that export, linked
            # (not a second copy of the weights: a 135M model is 650 MB a copy)
            if rank == 0:
                last = run_dir / "exports" / f"epoch-{(total - 1) // per_epoch + 1}"
                checkpoint.link_dir(last, model_dir)
        else:
            _export(cfg, backend, tokenizer, model_dir, rank)
    if world > 1:
        # Leave together and close the process group: a process that exits with gloo's threads
        # still running can abort ("terminate called without an active exception", exit -6)
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return model_dir


def _export(cfg: TrainConfig, backend, tokenizer, out: Path, rank: int) -> None:
    """The HF dir at `out`; with LoRA the adapter (and the merged model), `lora.export`."""
    if cfg.lora is None:
        checkpoint.export(backend, tokenizer, out, rank)
    else:
        from mixsd.train import lora

        lora.export(backend, tokenizer, out, rank, cfg.lora.merge)


def _rank0_decides(flag: bool, world: int) -> bool:
    """Process 0's `flag`, on every process (a collective: all must call it). A choice read from
    a file that process 0 writes itself (the final model) must not be taken by each process at its
    own time: a late one would find the file, skip the export's collectives and leave, and the
    others would fail at the export's barrier ("Connection closed by peer")."""
    from mixsd.train.backends import allreduce_sum

    return allreduce_sum([float(flag)], world)[0] > 0


class _Trainer:
    """One run's loop state: the steps of `objective` on `backend`, and what happens around them
    (the run dir's config and metrics, checkpoints, exports, recall)."""

    def __init__(
        self,
        cfg: TrainConfig,
        objective: Objective,
        backend,
        tokenizer,
        rank: int,
        world: int,
        micro: int,
        accumulation: int,
    ):
        self.cfg, self.objective, self.backend, self.tokenizer = cfg, objective, backend, tokenizer
        self.rank, self.world, self.micro, self.accumulation = rank, world, micro, accumulation
        self.run_dir = Path(cfg.out)
        self.metrics = self.run_dir / "metrics.jsonl"
        self.tracker = None  # --report-to, on process 0: opened at the first line (`log`)

    def start(self, data: dict) -> int:
        """Write RUN/config.yaml and RUN/data.json (`data`: what the run trains on, checked
        against the one there by `_check_data`), restore the latest checkpoint; the step reached."""
        if self.rank == 0:
            ckpts = self.run_dir / "checkpoints"
            (ckpts if self.cfg.save_state else self.run_dir).mkdir(parents=True, exist_ok=True)
            # Atomic: a resume parses them (`_check_resume`, `_check_data`), a kill must not leave
            # half of one.
            write_atomic(
                self.run_dir / "config.yaml", yaml.safe_dump(to_dict(self.cfg), sort_keys=False)
            )
            write_atomic(self.run_dir / "data.json", json.dumps(data, indent=1) + "\n")
        start = checkpoint.load(self.run_dir, self.backend, self.rank)
        if self.rank == 0:
            checkpoint.trim_metrics(self.metrics, start)
            data = {**vars(self.objective.stats), "examples": self.objective.n_items}
            # the precision the steps run in ("auto" resolved; bfloat16 is autocast over fp32)
            dtype = resolve_dtype(self.cfg.dtype, resolve_device())
            self.log({"event": "data", "step": start, "dtype": dtype, **data})
        self.backend.module.train()
        return start

    def step(self, step: int) -> tuple[int, dict | None]:
        """One optimizer step: (its epoch, the metrics line logged; None off process 0)."""
        from mixsd.train.backends import allreduce_sum

        cfg, objective, backend = self.cfg, self.objective, self.backend
        t0 = time.perf_counter()
        epoch, indices = schedule.step_indices(objective.n_items, cfg.batch_size, cfg.seed, step)
        parts = schedule.micro_slices(indices, self.world, self.micro, self.accumulation, self.rank)
        lr = backend.lr()
        micros, n_norm, step_figures = objective.micro_batches(
            backend, epoch, indices, parts, self.world
        )
        sums: dict[str, float] = {}
        for g, item in enumerate(micros):
            boundary = g == self.accumulation - 1
            with backend.micro_step(boundary):
                loss, figures = objective.loss(backend, item)
                backend.backward(loss * item.weight / max(n_norm, 1))
            norm = backend.step(boundary)
            for key, value in figures.items():
                sums[key] = sums.get(key, 0.0) + item.weight * value
        keys = sorted(sums)
        sums = dict(zip(keys, allreduce_sum([sums[k] for k in keys], self.world), strict=True))
        seconds = time.perf_counter() - t0
        if self.rank != 0:
            return epoch, None
        tokens = sums.pop("tokens")
        record = {
            "step": step + 1,
            "epoch": epoch + 1,
            **objective.record({**sums, **step_figures}, n_norm),
            "lr": lr,
            "grad_norm": norm,
            "tokens": int(tokens),
            "tokens_per_s": tokens / seconds,
            "real_token_fraction": tokens / sums["slots"],
            "time": time.time(),
        }
        self.log(record)
        return epoch, record

    def after_step(self, done: int, epoch: int, epoch_end: bool, last: bool) -> None:
        """Exports and recall at an epoch's end, then the checkpoint when one is due: exports and
        recall come first, so a kill in between redoes them on resume."""
        cfg, backend, rank = self.cfg, self.backend, self.rank
        if epoch_end and cfg.export_every_epoch:
            out = self.run_dir / "exports" / f"epoch-{epoch + 1}"
            _export(cfg, backend, self.tokenizer, out, rank)
        if epoch_end and cfg.recall_every_epoch:
            recall = _recall(backend, self.tokenizer, self.objective.recall_examples(), cfg, rank)
            if rank == 0:
                line = {"event": "recall", "step": done, "epoch": epoch + 1, "recall": recall}
                self.log(line)
        due = (cfg.save_every and done % cfg.save_every == 0) or epoch_end or last
        if due and cfg.save_state:
            checkpoint.save(self.run_dir, done, backend, rank)

    def log(self, record: dict) -> None:
        """A line of RUN/metrics.jsonl (the source of truth), copied to the --report-to trackers
        at its step: the `data` line's numbers as `data/...`, the others' as `train/...`.
        The trackers open here, after RUN/config.yaml marks the folder as a run."""
        _log(self.metrics, record)
        if not self.cfg.report_to:
            return
        if self.tracker is None:
            self.tracker = Tracker(self.cfg.report_to, self.run_dir, to_dict(self.cfg))
        values = {k: v for k, v in record.items() if k not in ("event", "step", "time")}
        prefix = "data/" if record.get("event") == "data" else "train/"
        self.tracker.log(numbers(values, prefix), record["step"])

    def close(self) -> None:
        """Flush and end the trackers."""
        if self.tracker is not None:
            self.tracker.close()


def _log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _recall(backend, tokenizer, examples, cfg: TrainConfig, rank: int) -> float | None:
    """Closed-book greedy recall on (up to `recall_limit`) training questions, on process 0,
    answers graded with the run's answer methods (`data.answer_methods`)."""
    if rank != 0:
        return None
    from mixsd.train.data import answer_methods
    from mixsd.train.recall import greedy_recall

    backend.module.eval()
    value = greedy_recall(
        backend.module,
        tokenizer,
        examples,
        cfg.recall_limit,
        cfg.recall_max_new_tokens,
        answer_methods(cfg.answer_methods, cfg.targets),
    )
    backend.module.train()
    return value
