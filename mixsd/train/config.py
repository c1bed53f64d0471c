"""TrainConfig: every option of the train stage, with all of its checks in `__post_init__`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mixsd.errors import MixsdError

SCHEDULES = ("constant", "cosine")
ZERO_STAGES = ("none", "0", "1", "2", "3")
DTYPES = ("auto", "float32", "bfloat16")
TOO_LONG = ("truncate", "refuse")
FAILED = ("reference", "drop", "keep")

# Options that do not change the training trajectory: a resumed run may change them.
RESUMABLE_CHANGES = (
    "save_every",
    "export_every_epoch",
    "recall_every_epoch",
    "recall_limit",
    "recall_max_new_tokens",
)


@dataclass
class TrainConfig:
    """Fine-tuning on target sets. `batch_size` is the GLOBAL batch (sequences per optimizer step):
    it is split into processes x `micro_batch_size` x gradient-accumulation steps, so a run reaches
    the same weights whatever the number of processes."""

    model: str
    targets: list[str]  # "SET" or "SET:lam=0.3" (several λ: "SET:lam=0.3,0.5")
    out: Path
    epochs: int = 1
    steps: int | None = None  # optimizer steps; overrides epochs when given
    lr: float = 1e-5
    batch_size: int = 16
    micro_batch_size: int | None = (
        None  # sequences per process per forward; default: no accumulation
    )
    zero: str = "none"  # none = plain PyTorch (DDP with several processes); 0-3 = DeepSpeed ZeRO
    deepspeed_config: Path | None = None  # default: configs/deepspeed/zero<N>.json
    nproc: int = 1  # local processes to launch (when not already under a launcher)
    seed: int = 0
    warmup_steps: int = 20
    schedule: str = "constant"
    weight_decay: float = 0.01
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    save_every: int = 0  # checkpoint every N optimizer steps (0: at epoch ends only)
    export_every_epoch: bool = False  # RUN/exports/epoch-<k>/ HF dirs, to pick the "first peak"
    failed: str = "reference"  # rows that failed every answer check: reference | drop | keep
    max_len: int | None = None  # prompt + target tokens; default: the model's max positions
    too_long: str = "truncate"  # truncate the target (and count) or refuse the set
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    recall_every_epoch: bool = False  # greedy closed-book recall on training questions
    recall_limit: int = 256  # questions used by the recall hook
    recall_max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("option 'targets': give at least one target set (SET or SET:lam=0.3)")
        self.zero = str(self.zero)
        if self.zero not in ZERO_STAGES:
            raise ValueError(
                f"option 'zero': expected one of {', '.join(ZERO_STAGES)}, got {self.zero!r}"
            )
        for name in ("epochs", "batch_size", "nproc"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"option '{name}': expected an integer >= 1, got {getattr(self, name)}"
                )
        for name in ("steps", "micro_batch_size", "max_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"option '{name}': expected an integer >= 1, got {value}")
        for name in ("warmup_steps", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"option '{name}': expected an integer >= 0, got {getattr(self, name)}"
                )
        if not self.lr > 0:
            raise ValueError(f"option 'lr': expected a positive number, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"option 'schedule': expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"option 'dtype': expected one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        if self.too_long not in TOO_LONG:
            raise ValueError(
                f"option 'too_long': expected one of {', '.join(TOO_LONG)}, got {self.too_long!r}"
            )
        if self.failed not in FAILED:
            raise ValueError(
                f"option 'failed': expected one of {', '.join(FAILED)}, got {self.failed!r}"
            )
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(
                f"option 'adam_betas': expected two numbers in [0, 1), got {self.adam_betas}"
            )
        if self.deepspeed_config is not None and self.zero == "none":
            raise ValueError("option 'deepspeed_config': needs --zero 0|1|2|3")
        if self.recall_every_epoch and self.zero == "3":
            raise ValueError(
                "option 'recall_every_epoch': not with ZeRO-3 (sharded weights); "
                "use --export-every-epoch and evaluate the exports"
            )

    def micro_and_accumulation(self, world: int) -> tuple[int, int]:
        """(sequences per process per forward, gradient-accumulation steps) for `world` processes."""
        if self.batch_size % world:
            raise MixsdError(
                f"option 'batch_size': {self.batch_size} is not divisible by {world} processes"
            )
        per_process = self.batch_size // world
        micro = self.micro_batch_size or per_process
        if per_process % micro:
            raise MixsdError(
                f"option 'micro_batch_size': {micro} does not divide the {per_process} sequences "
                f"per process (batch_size {self.batch_size} / {world} processes)"
            )
        return micro, per_process // micro
