"""On-policy self-distillation (OPSD), the paper's second baseline, on the project's trainer.

Each optimizer step takes the next `batch_size` prompts of the seeded order (split over processes
like target rows). For each, the STUDENT (the model being trained, its current weights) samples
`rollouts` continuations of the NAIVE prompt at T=1 with the project's decoding (HF engine, keyed
randomness: a rollout is a function of (seed, id, rollout, epoch) and the weights, so a resumed run
samples the same ones). The TEACHER is a frozen copy of the base model that reads the EXPERT
prompt (the same templates as MixSD; with LoRA, the student with its adapter disabled, no second
copy of the weights). One teacher-forced pass each gives both next-token
distributions at every rollout token, and the loss is the divergence between them:

    loss = sum over rollout tokens of D(student(. | naive, y<t), teacher(. | expert, y<t))
           / rollout tokens of the global batch

D is reverse KL (default), forward KL or JSD_beta, over the teacher's top-k tokens (both
distributions renormalised there; k=0 is the full vocabulary). Only the student gets gradients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mixsd.errors import MixsdError
from mixsd.train.config import OPSDConfig, TrainConfig
from mixsd.train.data import Example, answer_methods
from mixsd.train.objective import idle_or
from mixsd.train.packing import Packed, pack, packed_logits


def divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kind: str = "reverse_kl",
    top_k: int = 64,
    beta: float = 0.5,
) -> torch.Tensor:
    """Per-token divergence [K] between student and teacher next-token distributions, from logits
    `[K, vocab]` (fp32; the teacher's carry no gradient).

    top_k > 0 restricts both to the teacher's top-k token ids per row and renormalises them there.
    reverse_kl = KL(student || teacher), forward_kl = KL(teacher || student),
    jsd = beta KL(teacher || m) + (1 - beta) KL(student || m) with m = beta teacher + (1-beta) student.
    """
    teacher = teacher.detach()
    if top_k and top_k < teacher.shape[-1]:
        idx = teacher.topk(top_k, dim=-1).indices
        student, teacher = student.gather(-1, idx), teacher.gather(-1, idx)
    ls, lt = student.log_softmax(-1), teacher.log_softmax(-1)
    if kind == "reverse_kl":
        return (ls.exp() * (ls - lt)).sum(-1)
    if kind == "forward_kl":
        return (lt.exp() * (lt - ls)).sum(-1)
    if kind == "jsd":
        lm = torch.logsumexp(torch.stack([lt + math.log(beta), ls + math.log(1 - beta)]), dim=0)
        return beta * (lt.exp() * (lt - lm)).sum(-1) + (1 - beta) * (ls.exp() * (ls - lm)).sum(-1)
    raise ValueError(f"unknown divergence {kind!r}")


@dataclass(frozen=True)
class Prompt:
    """One input record as OPSD uses it: both prompts' ids and the gold answer."""

    id: str
    naive_ids: list[int]
    expert_ids: list[int]
    gold: str


@dataclass
class PromptStats:
    """What loading kept and dropped (written to the run's metrics)."""

    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def load_prompts(cfg: OPSDConfig, tokenizer, max_len: int) -> tuple[list[Prompt], PromptStats]:
    """The prompt pairs of `cfg.input` (templates `cfg.templates`), in input order; a record whose
    expert prompt leaves no room for one rollout token within `max_len` is dropped and counted."""
    from mixsd.data.io import load_records
    from mixsd.data.templates import build_prompt_pair, load_templates

    records = load_records(cfg.input)
    templates = load_templates(cfg.templates)
    stats = PromptStats(records=len(records))
    prompts = []
    for r in records:
        pair = build_prompt_pair(tokenizer, r, templates)
        if len(pair.expert_ids) >= max_len:
            stats.dropped["expert prompt over max_len"] = (
                stats.dropped.get("expert prompt over max_len", 0) + 1
            )
            continue
        prompts.append(Prompt(r.id, pair.naive_ids, pair.expert_ids, r.gold))
    if not prompts:
        raise MixsdError(f"{cfg.input}: no usable records (dropped: {stats.dropped or 'none'})")
    stats.kept = len(prompts)
    return prompts, stats


@dataclass
class Micro:
    """One micro-step: the student's pack (naive prompt + rollouts) and the teacher's (expert
    prompt + the same rollouts); weight 0 for a process left without prompts (it still runs, so
    that collective operations stay in step)."""

    student: Packed
    teacher: Packed
    weight: float


class OPSD:
    """`objective.Objective` for OPSD: rollouts and packs per step, the divergence per
    micro-step, the step's metrics. `cfg` is the run's `TrainConfig` (model, seed, answer
    methods), `cfg.opsd` its OPSD options."""

    def __init__(self, cfg: TrainConfig, tokenizer, max_len: int, one_row: bool = False):
        self.cfg, self.opsd, self.tokenizer, self.max_len = cfg, cfg.opsd, tokenizer, max_len
        self.prompts, self.stats = load_prompts(cfg.opsd, tokenizer, max_len)
        self.n_items = len(self.prompts)
        self.teacher = None
        self.one_row = one_row
        self.methods = answer_methods(cfg.answer_methods, cfg.targets)  # given, else boxed, number

    def prepare(self, backend) -> None:
        """Load the teacher beside the student: same device, same dtype. With LoRA the teacher
        is the student itself with its adapter disabled (`lora.base_weights`): exactly the
        frozen base, and no second copy of the weights."""
        if self.cfg.lora is not None:
            self.lora_model, self.device = backend.module, backend.device
            return
        self.load_teacher(backend.device, next(backend.module.parameters()).dtype)

    def teacher_logits(self, batch: Packed) -> torch.Tensor:
        """The teacher's logits [K, vocab] at `batch`'s target positions, without gradient."""
        if self.teacher is not None:
            return packed_logits(self.teacher, batch, self.device)
        from mixsd.train.lora import base_weights

        model = self.lora_model
        was_training = model.training
        model.eval()  # as the separate teacher: no dropout
        with base_weights(model):
            logits = packed_logits(model, batch, self.device)
        model.train(was_training)
        return logits

    def load_teacher(self, device: torch.device, dtype: torch.dtype) -> None:
        """The frozen teacher: the base model (`cfg.model`) again, in eval mode, no gradients."""
        from mixsd.data.models import load_model

        teacher = load_model(self.cfg.model, allow_pickle=self.cfg.allow_pickle)
        self.teacher = teacher.to(device=device, dtype=dtype).eval()
        self.teacher.requires_grad_(False)
        self.device = device

    def rollouts(self, module, items: list[tuple[Prompt, int]], epoch: int) -> list[list[int]]:
        """Token ids of one sampled continuation per (prompt, rollout index), in order: the
        student `module`'s naive conditional at `rollout_temperature`, full vocabulary."""
        from mixsd.generate.core import Sampling, sequence_key
        from mixsd.generate.jobs import Job
        from mixsd.modeling import naive_engine

        opsd = self.opsd
        sampling = Sampling(temperature=opsd.rollout_temperature, top_k=0, top_p=1.0)
        engine = naive_engine(
            module,
            self.tokenizer,
            sampling,
            max(1, len(items)),
            opsd.rollout_max_new_tokens,
            self.max_len,
        )
        jobs = [
            Job(sequence_key(self.cfg.seed, p.id, r, epoch), 1.0, p.naive_ids, None, tag=j)
            for j, (p, r) in enumerate(items)
        ]
        out: list[list[int]] = [[] for _ in jobs]
        for result in engine.generate(jobs):
            out[result.tag] = list(result.target_ids)
        return out

    def micro_batches(self, backend, epoch: int, indices, parts, world: int):
        """(micro-steps, global rollout-token count, step figures) of one optimizer step: this
        process samples the rollouts of its `parts` (one list of prompt indices per micro-step)
        with the current weights, then packs them for the student and the teacher."""
        from mixsd.answers import is_correct
        from mixsd.train.backends import allreduce_sum

        t0 = time.perf_counter()
        tok, rollouts, methods = self.tokenizer, self.opsd.rollouts, self.methods
        items = [(self.prompts[i], r) for part in parts for i in part for r in range(rollouts)]
        backend.module.eval()
        with backend.for_generation():
            sampled = self.rollouts(backend.module, items, epoch) if items else []
        backend.module.train()
        seconds = time.perf_counter() - t0
        correct = sum(
            is_correct(tok.decode(t, skip_special_tokens=True), p.gold, methods)
            for (p, _), t in zip(items, sampled, strict=True)
        )
        lengths = [len(t) for t in sampled]
        idle = self.prompts[indices[0]]  # any sequence will do for an idle micro-step
        idle_pair = (
            _example(idle.naive_ids, [0], idle.id),
            _example(idle.expert_ids, [0], idle.id),
        )
        micros, k = [], 0
        for part in parts:
            pairs = []  # (student's example, teacher's example) per rollout
            for i in part:
                p = self.prompts[i]
                for _ in range(rollouts):
                    # The teacher's prompt is the longer one: cut the rollout so both fit max_len.
                    y = sampled[k][: self.max_len - len(p.expert_ids)]
                    k += 1
                    if y:
                        pairs.append(
                            (_example(p.naive_ids, y, p.id), _example(p.expert_ids, y, p.id))
                        )
            pairs, weight = idle_or(pairs, idle_pair)
            students, teachers = ([pair[j] for pair in pairs] for j in (0, 1))
            micros.append(Micro(pack(students, self.one_row), pack(teachers, self.one_row), weight))
        n_tokens, n_rollouts, n_correct, total_len = allreduce_sum(
            [
                sum(m.student.targets.numel() for m in micros if m.weight),
                len(items),
                correct,
                sum(lengths),
            ],
            world,
        )
        figures = {
            "rollouts": n_rollouts,
            "correct": n_correct,
            "sampled_tokens": total_len,
            "rollout_seconds": seconds,
        }
        return micros, n_tokens, figures

    def loss(self, backend, micro: Micro) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed divergence (fp32 scalar, with gradient) of one micro-step, and its figures."""
        opsd = self.opsd
        student = backend.logits(micro.student)[micro.student.example_order()]
        with torch.no_grad():
            teacher = self.teacher_logits(micro.teacher)
            teacher = teacher[micro.teacher.example_order()].float()
        per_token = divergence(student, teacher, opsd.divergence, opsd.teacher_top_k, opsd.jsd_beta)
        with torch.no_grad():
            kl = divergence(student.detach(), teacher, "reverse_kl", top_k=0)
        loss = per_token.sum()
        figures = {
            "loss": float(loss.detach()),
            "kl": float(kl.sum()),
            "tokens": micro.student.n_real,
            "slots": micro.student.n_slots,
        }
        return loss, figures

    def record(self, sums: dict[str, float], n_tokens: float) -> dict:
        """The step's metrics: mean per-token loss and full-vocabulary reverse KL, mean rollout
        length and the student's accuracy on its own rollouts (answer extraction)."""
        rollouts = max(sums["rollouts"], 1)
        return {
            "loss": sums["loss"] / max(n_tokens, 1),
            "kl": sums["kl"] / max(n_tokens, 1),
            "rollout_len": sums["sampled_tokens"] / rollouts,
            "accuracy": sums["correct"] / rollouts,
            "rollout_tokens": int(n_tokens),  # those the loss covers (cut to fit max_len)
            "rollout_seconds": sums["rollout_seconds"],  # process 0's sampling time
        }

    def recall_examples(self) -> list[Example]:
        """The prompts as `recall.greedy_recall` reads examples (naive prompt and gold answer)."""
        return [_example(p.naive_ids, [0], p.id, p.gold) for p in self.prompts]


def _example(prompt: list[int], target: list[int], id_: str, answer: str | None = None) -> Example:
    ids = np.asarray(list(prompt) + list(target), dtype=np.int32)
    return Example(ids=ids, n_prompt=len(prompt), id=id_, answer=answer)
