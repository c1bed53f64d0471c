"""TrainConfig: every option of the train stage, with all of its checks in `__post_init__`."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from mixsd.errors import MixsdError

SCHEDULES = ("constant", "cosine")
ZERO_STAGES = ("none", "0", "1", "2", "3")
DTYPES = ("auto", "float32", "bfloat16")
TOO_LONG = ("truncate", "refuse")
FAILED = ("reference", "drop", "keep")
METHODS = ("nll", "opsd")
DIVERGENCES = ("reverse_kl", "forward_kl", "jsd")
# Options that only one method reads: set under the other, they are an error, not ignored.
NLL_ONLY = ("targets", "failed", "too_long", "allow_incomplete")
OPSD_ONLY = ("input", "templates", "divergence", "jsd_beta", "teacher_top_k", "rollouts",
             "rollout_max_new_tokens", "rollout_temperature", "answer_methods")  # fmt: skip

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
    """Fine-tuning: `method` nll trains on target sets (MixSD or SFT), opsd is on-policy
    self-distillation from an input set (`mixsd.train.opsd`). `batch_size` is the GLOBAL batch
    (sequences, or OPSD prompts, per optimizer step): it is split into processes x
    `micro_batch_size` x gradient-accumulation steps, so a run reaches the same weights whatever
    the number of processes."""

    model: str
    out: Path
    method: str = "nll"
    targets: list[str] = field(
        default_factory=list
    )  # "SET" or "SET:lam=0.3" (or "SET:lam=0.3,0.5")
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
    allow_incomplete: bool = False  # train on what an incomplete set holds (recorded in metrics)
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    recall_every_epoch: bool = False  # greedy closed-book recall on training questions
    recall_limit: int = 256  # questions used by the recall hook
    recall_max_new_tokens: int = 64
    # --method opsd (defaults as published: reverse KL over the teacher's top-64, one rollout per
    # prompt at T=1; 16 prompts per step and 2 epochs are set in configs/opsd.yaml)
    input: Path | None = None  # input records (JSONL): naive prompts, knowledge for the teacher
    templates: Path | None = None  # expert templates YAML (default: the published ones)
    divergence: str = "reverse_kl"  # reverse_kl | forward_kl | jsd, per rollout token
    jsd_beta: float = 0.5  # jsd: beta KL(teacher||m) + (1-beta) KL(student||m)
    teacher_top_k: int = 64  # divergence over the teacher's top-k tokens (0: the full vocabulary)
    rollouts: int = 1  # rollouts per prompt
    rollout_max_new_tokens: int = 512
    rollout_temperature: float = 1.0
    answer_methods: list[str] = field(default_factory=lambda: ["boxed", "number"])

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"option 'method': expected one of {', '.join(METHODS)}, got {self.method!r}"
            )
        other = OPSD_ONLY if self.method == "nll" else NLL_ONLY
        for f in (f for f in fields(self) if f.name in other):
            default = f.default_factory() if f.default is MISSING else f.default
            if getattr(self, f.name) != default:
                raise ValueError(f"option '{f.name}': not used by --method {self.method}")
        if self.method == "nll" and not self.targets:
            raise ValueError("option 'targets': give at least one target set (SET or SET:lam=0.3)")
        if self.method == "opsd":
            self._check_opsd()
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

    def _check_opsd(self) -> None:
        from mixsd.answers import METHODS as ANSWER_METHODS

        if self.input is None:
            raise ValueError("option 'input': --method opsd needs the input records (JSONL)")
        if self.divergence not in DIVERGENCES:
            raise ValueError(
                f"option 'divergence': expected one of {', '.join(DIVERGENCES)}, "
                f"got {self.divergence!r}"
            )
        if not 0 < self.jsd_beta < 1:
            raise ValueError(f"option 'jsd_beta': expected a number in (0, 1), got {self.jsd_beta}")
        if self.teacher_top_k < 0:
            raise ValueError(
                f"option 'teacher_top_k': expected an integer >= 0 (0: the full vocabulary), "
                f"got {self.teacher_top_k}"
            )
        for name in ("rollouts", "rollout_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"option '{name}': expected an integer >= 1, got {getattr(self, name)}"
                )
        if not self.rollout_temperature > 0:
            raise ValueError(
                f"option 'rollout_temperature': expected a positive number, "
                f"got {self.rollout_temperature}"
            )
        bad = [m for m in self.answer_methods if m not in ANSWER_METHODS]
        if not self.answer_methods or bad:
            raise ValueError(
                f"option 'answer_methods': expected some of {', '.join(ANSWER_METHODS)}, "
                f"got {self.answer_methods}"
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
