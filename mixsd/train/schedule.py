"""Pure schedule logic: data order, how a global batch is split, the learning-rate curve.

Everything here is a function of (seed, epoch, step), which is what makes a resumed run and a run
on another number of processes walk through exactly the same data.
"""

from __future__ import annotations

import math

import numpy as np


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps per epoch; the last batch of an epoch may be short."""
    return math.ceil(n_examples / batch_size)


def total_steps(n_examples: int, batch_size: int, epochs: int, steps: int | None) -> int:
    return steps if steps is not None else epochs * steps_per_epoch(n_examples, batch_size)


def epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example indices of `epoch` [n_examples]: a permutation keyed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


def step_indices(n_examples: int, batch_size: int, seed: int, step: int) -> tuple[int, np.ndarray]:
    """(epoch, example indices [<= batch_size]) of global optimizer step `step` (0-based)."""
    per_epoch = steps_per_epoch(n_examples, batch_size)
    epoch, k = divmod(step, per_epoch)
    return epoch, epoch_order(n_examples, seed, epoch)[k * batch_size : (k + 1) * batch_size]


def micro_slices(
    indices: np.ndarray, world: int, micro: int, accumulation: int, rank: int
) -> list[np.ndarray]:
    """The indices rank `rank` runs in each of the `accumulation` micro-steps [micro each].

    Micro-step g of rank r gets `indices[(g * world + r) * micro :][:micro]`: every sequence of the
    step is run exactly once somewhere. A short last batch leaves some slices empty; such a rank
    still runs a forward (see loop) so that collective operations stay in step.
    """
    return [
        indices[(g * world + rank) * micro : (g * world + rank + 1) * micro]
        for g in range(accumulation)
    ]


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based): linear warm-up over `warmup`
    steps (the first step already moves), then constant or cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
