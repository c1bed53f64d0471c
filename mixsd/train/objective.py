"""What the training loop asks of a training objective, declared once.

An objective turns one optimizer step's items (target rows for `nll.TargetNLL`, prompts for
`opsd.OPSD`) into micro-steps and a summed loss per micro-step; the loop (`loop.run`) does
everything else the same way for every objective: the data order, the split over processes and
micro-steps, normalising by the global batch's token count, the backend, checkpoints, exports,
recall and the metrics line (to which the objective adds its own figures).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import torch

from mixsd.train.data import Example

T = TypeVar("T")


class MicroStep(Protocol):
    """One micro-step's packed data; `weight` 0 for an idle one (see `idle_or`)."""

    weight: float


class Objective(Protocol):
    n_items: int  # the items (target rows, prompts) one epoch goes through
    stats: Any  # a dataclass of what loading kept and dropped: the run's `data` metrics line

    def prepare(self, backend) -> None:
        """Called once the backend holds the model, before the first step."""

    def micro_batches(
        self, backend, epoch: int, indices: list[int], parts: list[list[int]], world: int
    ) -> tuple[list[MicroStep], float, dict[str, float]]:
        """One optimizer step: the micro-steps of this process (one per list of item indices in
        `parts`), the global batch's token count the loss is normalised by, and figures of the
        step for its metrics (the same on every process)."""
        ...

    def loss(self, backend, micro: MicroStep) -> tuple[torch.Tensor, dict[str, float]]:
        """The micro-step's summed loss (a scalar with gradient) and its figures, summed over
        micro-steps and processes by the loop; they must include `tokens` and `slots` (packed
        real tokens and slots, for throughput)."""
        ...

    def record(self, sums: dict[str, float], n_norm: float) -> dict:
        """The objective's part of a step's metrics line (with `loss`) from the summed figures."""
        ...

    def recall_examples(self) -> list[Example]:
        """What the recall hook asks: examples with a naive prompt and a gold answer."""
        ...


def idle_or(items: list[T], fallback: T) -> tuple[list[T], float]:
    """A micro-step's items and weight. A short last batch can leave a process nothing: it then
    runs `fallback` with weight 0, so that every process takes part in the collective
    operations (gradient all-reduce, ZeRO gathers)."""
    return (items, 1.0) if items else ([fallback], 0.0)
