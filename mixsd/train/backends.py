"""The two things that can sit under the training loop: plain PyTorch (one process, or several
with DistributedDataParallel) or a DeepSpeed engine (ZeRO 0-3, any number of processes). Same
loss, same update: only the plumbing differs.

The loop hands each micro-step's summed target NLL divided by the number of target tokens in the
whole global batch, so the gradient is the token-mean over the global batch however the batch is
split over processes and accumulation steps.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from mixsd.train.packing import Packed, packed_logits, packed_loss_sum

DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


class Plain:
    """PyTorch: AdamW, grad clipping, LambdaLR; bf16 through autocast. With several processes the
    model is wrapped in DistributedDataParallel (gradients all-reduced at each accumulation
    boundary), so every process holds the same weights and the update is one process's."""

    def __init__(
        self, model, optimizer, scheduler, grad_clip: float, device, bf16: bool, rank=0, world=1
    ):
        self.module, self.optimizer, self.scheduler = model.to(device), optimizer, scheduler
        self.grad_clip, self.device, self.bf16 = grad_clip, device, bf16
        self.rank, self.world = rank, world
        self.forward = self.module
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.module, device_ids=ids)

    def loss_sum(self, batch: Packed) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return packed_loss_sum(self.module, batch, self.device, self.forward)

    def logits(self, batch: Packed) -> torch.Tensor:
        """fp32 logits [K, vocab] at the batch's target positions (`packing.packed_logits`)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return packed_logits(self.module, batch, self.device, self.forward)

    def micro_step(self, boundary: bool):
        """Context for one micro-step's forward and backward: DDP all-reduces only at the
        accumulation boundary."""
        if self.world > 1 and not boundary:
            return self.forward.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        # DDP averages gradients over processes; the loss is already normalised by the global
        # batch's token count, so undo the average (as for DeepSpeed).
        (loss * self.world).backward()

    def step(self, boundary: bool) -> float | None:
        """Called after every micro-step; updates at the accumulation boundary. Returns the grad
        norm (before clipping) at a boundary."""
        if not boundary:
            return None
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, tag_dir: Path) -> None:
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.rank == 0:  # every process holds the same state
            torch.save(state, tag_dir / "state.pt")

    def load(self, tag_dir: Path) -> None:
        from mixsd.safe_load import load_tensors

        state = load_tensors(tag_dir / "state.pt", map_location=self.device)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def full_weights(self):
        return contextlib.nullcontext()

    def for_generation(self):
        """Context in which `self.module` can decode without the other processes."""
        return contextlib.nullcontext()


class DeepSpeedBackend:
    """A DeepSpeed engine built from a checked-in JSON config whose "auto" values are filled from
    the train config. The torch optimizer is passed in, so DeepSpeed builds no FusedAdam.
    Checkpoints are read without pickle unless `allow_pickle` (`weights_only_checkpoints`).
    `cpu_autocast`: forwards under bf16 autocast over the fp32 module (bf16 on the CPU, where
    the config's bf16 section, which casts the module, is off)."""

    def __init__(
        self,
        model,
        optimizer,
        scheduler,
        ds_config: dict,
        world: int,
        allow_pickle: bool = False,
        cpu_autocast: bool = False,
    ):
        import deepspeed

        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
        )
        if not allow_pickle:
            from mixsd.safe_load import weights_only_checkpoints

            weights_only_checkpoints(self.engine)
        self.module, self.world, self.device = self.engine.module, world, self.engine.device
        self.cpu_autocast = cpu_autocast
        self.stage = ds_config["zero_optimization"]["stage"]
        # Stage 0 in fp32 clips with the torch optimizer but keeps no norm (get_global_grad_norm()
        # is None): the loop measures it itself, on the already all-reduced gradients.
        self.own_norm = self.stage == 0 and not any(
            ds_config.get(k, {}).get("enabled") for k in ("bf16", "fp16")
        )

    def loss_sum(self, batch: Packed) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
            return packed_loss_sum(self.module, batch, self.device, self.engine)

    def logits(self, batch: Packed) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
            return packed_logits(self.module, batch, self.device, self.engine)

    def micro_step(self, boundary: bool):
        return contextlib.nullcontext()  # the engine knows its accumulation boundaries

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed averages gradients over processes; undo it, since the loss is already
        # normalised by the global batch's token count (and accumulation is not rescaled either).
        self.engine.backward(loss * self.world, scale_wrt_gas=False)

    def step(self, boundary: bool) -> float | None:
        own = boundary and self.own_norm
        norm = grad_norm(self.module.parameters()) if own else None
        self.engine.step()  # DeepSpeed counts micro-steps and updates only at the boundary
        if not boundary:
            return None
        return norm if own else float(self.engine.get_global_grad_norm())

    def save(self, tag_dir: Path) -> None:
        self.engine.save_checkpoint(tag_dir.parent, tag=tag_dir.name, save_latest=False)

    def load(self, tag_dir: Path) -> None:
        path, _ = self.engine.load_checkpoint(tag_dir.parent, tag=tag_dir.name)
        if path is None:
            from mixsd.errors import MixsdError

            raise MixsdError(
                f"{tag_dir}: DeepSpeed could not load this checkpoint (delete it to restart)"
            )

    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def full_weights(self):
        """Context in which every process holds the full weights (gathers ZeRO-3 shards)."""
        if self.stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)

    def for_generation(self):
        """Context in which `self.module` can decode without the other processes: under ZeRO-3 the
        weights are gathered once and the partitioning hooks removed (every process must enter
        it; DeepSpeed's own helper for RL-style rollouts), else nothing to do."""
        if self.stage != 3:
            return contextlib.nullcontext()
        from deepspeed.runtime.zero import unwrap_model_for_generation

        return unwrap_model_for_generation(self.engine)


def grad_norm(parameters) -> float:
    """The 2-norm of all gradients of `parameters` (those that have one), as clipping sees it."""
    return float(torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None]))


def allreduce_sum(values: list[float], world: int) -> list[float]:
    """Element-wise sum of `values` over all processes (for logging global figures)."""
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(
        values, dtype=torch.float64, device="cuda" if torch.cuda.is_available() else "cpu"
    )
    dist.all_reduce(t)
    return t.tolist()


def deepspeed_config(
    path: Path | None,
    stage: int,
    *,
    batch_size: int,
    micro: int,
    accumulation: int,
    grad_clip: float,
    bf16: bool,
) -> dict:
    """The JSON config at `path` (default `configs/deepspeed/zero<stage>.json`), "auto" filled."""
    from mixsd.errors import MixsdError

    path = path or DEEPSPEED_CONFIGS / f"zero{stage}.json"
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MixsdError(f"{path}: DeepSpeed config not found") from None
    except json.JSONDecodeError as e:
        raise MixsdError(f"{path}: invalid JSON at line {e.lineno}") from None
    auto = {
        "train_batch_size": batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": grad_clip,
    }
    for key, value in auto.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    if config.get("bf16", {}).get("enabled") == "auto":
        config["bf16"]["enabled"] = bf16
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage", stage) != stage:
        raise MixsdError(f"{path}: zero_optimization.stage is {zero['stage']}, but --zero {stage}")
    zero["stage"] = stage
    if "optimizer" in config or "scheduler" in config:
        raise MixsdError(
            f"{path}: remove 'optimizer'/'scheduler' (mixsd passes AdamW and its LR schedule)"
        )
    return config
