"""The NLL objective on target sets (MixSD or SFT targets): per micro-step the summed NLL of the
target tokens, normalised by the loop by the target-token count of the whole global batch."""

from __future__ import annotations

from typing import NamedTuple

from mixsd.train.data import DataStats, Example
from mixsd.train.objective import idle_or
from mixsd.train.packing import Packed, pack


class NLLMicro(NamedTuple):
    """One micro-step of target rows; weight 0 for a process left without rows."""

    batch: Packed
    weight: float


class TargetNLL:
    """`objective.Objective` over target-set examples (`data.load_examples`)."""

    def __init__(self, examples: list[Example], stats: DataStats, one_row: bool = False):
        self.examples, self.stats, self.one_row = examples, stats, one_row
        self.n_items = len(examples)

    def prepare(self, backend) -> None:
        pass

    def micro_batches(self, backend, epoch: int, indices, parts, world: int):
        """(micro-steps, global target-token count, no step figures)."""
        ex = self.examples
        micros = []
        for part in parts:
            rows, weight = idle_or([ex[i] for i in part], ex[indices[0]])
            micros.append(NLLMicro(pack(rows, self.one_row), weight))
        return micros, sum(ex[i].n_target for i in indices), {}

    def loss(self, backend, micro: NLLMicro) -> tuple:
        loss = backend.loss_sum(micro.batch)
        figures = {
            "loss": float(loss.detach()),
            "tokens": micro.batch.n_real,
            "slots": micro.batch.n_slots,
        }
        return loss, figures

    def record(self, sums: dict, n_target: float) -> dict:
        return {"loss": sums["loss"] / n_target, "target_tokens": int(n_target)}

    def recall_examples(self) -> list[Example]:
        return self.examples
