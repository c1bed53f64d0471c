"""TrainConfig: every option of the train stage, with all of its checks in `__post_init__`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from mixsd.answers import check_methods
from mixsd.config import at_least, field_default, option
from mixsd.errors import MixsdError
from mixsd.tracking import REPORT_TO_HELP, check_report_to

SCHEDULES = ("constant", "cosine")
ZERO_STAGES = ("none", "0", "1", "2", "3")
DTYPES = ("auto", "float32", "bfloat16")
TOO_LONG = ("truncate", "refuse")
FAILED = ("reference", "drop", "keep")
METHODS = ("nll", "opsd")
DIVERGENCES = ("reverse_kl", "forward_kl", "jsd")
# read from target sets: refused with --method opsd
NLL_ONLY = ("targets", "failed", "too_long", "allow_mostly_reference", "allow_incomplete")

# Options that do not change the training trajectory: a resumed run may change them
# (answer_methods only grades: recall, and the accuracy of OPSD's rollouts; allow_pickle only
# says which weight files may load).
RESUMABLE_CHANGES = (
    "save_every",
    "save_state",
    "export_every_epoch",
    "recall_every_epoch",
    "recall_limit",
    "recall_max_new_tokens",
    "answer_methods",
    "allow_mostly_reference",  # a check at start; the data itself is checked on resume (data.json)
    "allow_pickle",
    "report_to",  # where the metrics are copied to
)


@dataclass
class OPSDConfig:
    """The options of `--method opsd` alone (YAML: an `opsd:` mapping; flags: as named here).
    Defaults as published: reverse KL over the teacher's top-64, one rollout per prompt at T=1
    (16 prompts per step and 2 epochs are set in configs/opsd.yaml)."""

    input: Path | None = option(None, "opsd: input records (naive prompts, teacher knowledge).")
    templates: Path | None = option(None, "opsd: expert templates YAML (default: published).")
    divergence: str = option(
        "reverse_kl", "opsd: reverse_kl | forward_kl | jsd, per rollout token."
    )
    jsd_beta: float = option(0.5, "opsd: beta of jsd.")
    teacher_top_k: int = option(64, "opsd: divergence over the teacher's top-k (0: full vocab).")
    rollouts: int = option(1, "opsd: rollouts per prompt.")
    rollout_max_new_tokens: int = option(512, "opsd: rollout length cap.")
    rollout_temperature: float = option(1.0, "opsd: student sampling temperature.")

    def __post_init__(self) -> None:
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
        at_least(self, 1, "rollouts", "rollout_max_new_tokens")
        if not self.rollout_temperature > 0:
            raise ValueError(
                f"option 'rollout_temperature': expected a positive number, "
                f"got {self.rollout_temperature}"
            )


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    """LoRA with PEFT (YAML: a `lora:` mapping; flags `--lora-r` etc.): the base weights stay
    frozen and a rank-`r` update B A scaled by alpha / r is trained on each target module
    (`mixsd.train.lora`). r = 0 (the default) is full fine-tuning."""

    r: int = option(0, "LoRA rank (0: full fine-tuning).", flag="--lora-r")
    alpha: float = option(
        64.0, "LoRA alpha (the update is scaled by alpha / r).", flag="--lora-alpha"
    )
    dropout: float = option(0.05, "LoRA dropout on the adapter's input.", flag="--lora-dropout")
    target_modules: list[str] = option(
        LORA_TARGETS,
        "LoRA: module names to adapt (repeatable; default: attention and MLP projections).",
        flag="--lora-target-modules",
    )
    merge: bool = option(
        True,
        "LoRA: export a merged full model beside the adapter.",
        flag="--merge-lora/--no-merge-lora",
    )

    def __post_init__(self) -> None:
        if self.r < 0:
            raise ValueError(f"option 'lora_r': expected >= 0 (0: full fine-tuning), got {self.r}")
        if not self.alpha > 0:
            raise ValueError(f"option 'lora_alpha': expected a positive number, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(
                f"option 'lora_dropout': expected a number in [0, 1), got {self.dropout}"
            )
        if not self.target_modules:
            raise ValueError("option 'lora_target_modules': give at least one module name")


@dataclass
class TrainConfig:
    """Fine-tuning: `method` nll trains on target sets (MixSD or SFT), opsd is on-policy
    self-distillation from an input set (`mixsd.train.opsd`, options in `opsd`). `batch_size` is
    the GLOBAL batch (sequences, or OPSD prompts, per optimizer step): it is split into processes
    x `micro_batch_size` x gradient-accumulation steps, so a run reaches the same weights whatever
    the number of processes."""

    model: str = option(help="Model directory (HF format) to fine-tune.")
    out: Path = option(help="Run directory (resumed when it holds a checkpoint).")
    method: str = option("nll", "nll (target sets) | opsd (on-policy self-distillation).")
    targets: list[str] = option([], "nll: target set, SET or SET:lam=0.3[,0.5] (repeatable).")
    epochs: int = option(1, "Epochs over the target rows (or OPSD prompts).")
    steps: int | None = option(None, "Optimizer steps (overrides --epochs).")
    lr: float = option(1e-5, "Peak learning rate.")
    batch_size: int = option(16, "GLOBAL batch: sequences (OPSD: prompts) per optimizer step.")
    micro_batch_size: int | None = option(
        None, "Sequences per process per forward (default: no accumulation)."
    )
    zero: str = option("none", "none (plain PyTorch, DDP with several processes) | ZeRO 0|1|2|3.")
    deepspeed_config: Path | None = option(
        None, "DeepSpeed JSON ('auto' values filled; default configs/deepspeed/zero<N>.json)."
    )
    nproc: int = option(1, "Local processes to start (unless under a launcher).")
    seed: int = option(0, "Seed of the data order and of torch.")
    warmup_steps: int = option(20, "Linear warm-up steps.")
    schedule: str = option("constant", "constant | cosine (after warm-up).")
    weight_decay: float = option(0.01, "AdamW weight decay (not on norms and biases).")
    adam_betas: list[float] = option([0.9, 0.95], "AdamW betas, e.g. 0.9,0.95.")
    grad_clip: float = option(1.0, "Gradient-norm clip.")
    save_every: int = option(0, "Checkpoint every N steps (0: at epoch ends only).")
    save_state: bool = option(
        True,
        "Write checkpoints (weights, AdamW moments, RNG: 12 bytes a parameter) to resume from; "
        "--no-save-state: a killed run starts over (exports and model/ are still written).",
    )
    export_every_epoch: bool = option(
        False, "HF dir per epoch in RUN/exports/epoch-<k>/, to pick the first peak."
    )
    report_to: list[str] = option([], REPORT_TO_HELP)
    failed: str = option(
        "reference", "nll: rows that failed every answer check: reference | drop | keep."
    )
    allow_mostly_reference: bool = option(
        False, "nll: train a MixSD selection most of whose rows --failed reference replaces (SFT)."
    )
    max_len: int | None = option(None, "Max prompt+target tokens (default: the model's).")
    too_long: str = option("truncate", "nll: truncate (and count) | refuse over-long sequences.")
    allow_incomplete: bool = option(
        False, "nll: train on what an incomplete target set holds (recorded in the metrics)."
    )
    gradient_checkpointing: bool = option(False, "Recompute activations in backward.")
    dtype: str = option(
        "auto", "auto (bf16 autocast on GPU or a bf16 CPU, else fp32) | float32 | bfloat16."
    )
    recall_every_epoch: bool = option(False, "Closed-book greedy recall per epoch.")
    recall_limit: int = option(256, "Training questions the recall hook asks.")
    recall_max_new_tokens: int = option(64, "Answer length cap of the recall hook.")
    answer_methods: list[str] | None = option(
        None,
        "How recall and OPSD's rollouts are graded: boxed,number,contains (default: nll: the "
        "methods the target sets were checked with, as generate recorded them; else boxed,number).",
    )
    allow_pickle: bool = option(
        False, "Load a model whose weights are only pickled (trusted models only)."
    )
    opsd: OPSDConfig | None = None  # --method opsd only
    lora: LoRAConfig | None = None  # None (or r = 0): full fine-tuning

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"option 'method': expected one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.method == "nll":
            if self.opsd is not None:
                names = ", ".join(f.name for f in fields(OPSDConfig))
                raise ValueError(f"option 'opsd' ({names}): not used by --method nll")
            if not self.targets:
                raise ValueError(
                    "option 'targets': give at least one target set (SET or SET:lam=0.3)"
                )
        else:
            # the options of target sets must not be set: their defaults are what "not set" means
            for f in fields(self):
                if f.name in NLL_ONLY and getattr(self, f.name) != field_default(f):
                    raise ValueError(f"option '{f.name}': not used by --method opsd")
            if self.opsd is None or self.opsd.input is None:
                raise ValueError("option 'input': --method opsd needs the input records (JSONL)")
        self.lora = _lora_or_none(self.lora)
        self.zero = str(self.zero)
        _one_of(self, "zero", ZERO_STAGES)
        _one_of(self, "schedule", SCHEDULES)
        _one_of(self, "dtype", DTYPES)
        _one_of(self, "too_long", TOO_LONG)
        _one_of(self, "failed", FAILED)
        at_least(self, 1, "epochs", "batch_size", "nproc", "steps", "micro_batch_size", "max_len")
        at_least(self, 0, "warmup_steps", "save_every")
        if self.save_every and not self.save_state:
            raise ValueError("option 'save_every': checkpoints are off (save_state: false)")
        self.report_to = check_report_to(self.report_to)
        if not self.lr > 0:
            raise ValueError(f"option 'lr': expected a positive number, got {self.lr}")
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
        if self.answer_methods is not None:
            self.answer_methods = check_methods(self.answer_methods)

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


def _lora_or_none(lora: LoRAConfig | None) -> LoRAConfig | None:
    """`lora` when it is on (r > 0); None for r = 0, refusing LoRA options without a rank (they
    would silently train every weight)."""
    if lora is None or lora.r > 0:
        return lora
    for f in fields(LoRAConfig):
        if f.name != "r" and getattr(lora, f.name) != field_default(f):
            raise ValueError(
                f"option 'lora.{f.name}': needs --lora-r > 0 (r = 0 is full fine-tuning)"
            )
    return None


def _one_of(cfg, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in allowed:
        raise ValueError(
            f"option '{name}': expected one of {', '.join(allowed)}, got {getattr(cfg, name)!r}"
        )
