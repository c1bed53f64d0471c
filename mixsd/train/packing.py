"""Batches that waste (almost) no compute on padding: sequence packing with per-sequence boundaries.

A micro-batch's sequences are concatenated into rows; position ids restart at 0 for every
sequence and no attention mask is passed, so the model (transformers >= 5) reads the restarts as
sequence boundaries: a block-diagonal causal mask with SDPA/eager attention, variable-length
kernels with flash attention. No token attends across sequences, so the packed loss equals the
sum of the per-sequence losses. (`use_cache=False` matters: with a cache, transformers does not
look for packed sequences.)

Two layouts, because attention costs differ:
- one row holding every sequence (`one_row=True`): for flash attention, whose varlen kernels cost
  sum(n_i^2) and which transformers only packs at batch size 1;
- rows as long as the longest sequence, filled first-fit-decreasing (`one_row=False`): for SDPA
  and eager attention, which compute the whole row x row score matrix, masked or not. Rows are
  ~95% real tokens on typical length spreads, against ~40-50% for padding to the longest.

Logits are computed only where a target token is predicted: the final hidden states at those K
(row, column) positions are gathered before the LM head, so it makes [K, vocab] logits instead of
[rows, width, vocab]. With a 49k vocabulary the head and its fp32 cross-entropy are a fifth of a
small model's compute and most of its activation memory; prompt tokens and row-end padding skip
both. (`logits_to_keep` cannot do this: it keeps the same columns in every row, and in packed rows
nearly every column predicts a target in some row.)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from mixsd.train.data import Example


@dataclass
class Packed:
    """Packed rows. `input_ids`, `position_ids` [rows, width]; target k is predicted at row
    `row[k]`, column `col[k]`, is `targets[k]` and belongs to example `seq[k]` (targets of one
    example are consecutive and in order)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    targets: torch.Tensor
    seq: torch.Tensor
    n_real: int

    def example_order(self) -> torch.Tensor:
        """Permutation [K] putting the targets in example order (example 0's first): two packs of
        the same targets after different prompts line up, whatever their row layouts."""
        return torch.argsort(self.seq, stable=True)

    @property
    def n_slots(self) -> int:
        return self.input_ids.numel()


def packs_one_row(model) -> bool:
    """Whether `model` runs flash attention, so packs one row (see the module doc).

    transformers (5.19) has no public getter for the attention a loaded model dispatches to: the
    underscored config property that `set_attn_implementation` writes is the only record of it,
    so it is read here and nowhere else.
    """
    return str(model.config._attn_implementation).startswith("flash")


def layout(lengths: list[int], one_row: bool) -> list[list[int]]:
    """Indices of the sequences in each row: all in one row, or first-fit-decreasing into rows of
    capacity max(lengths)."""
    if one_row:
        return [list(range(len(lengths)))]
    width = max(lengths)
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = next((r for r, f in enumerate(free) if f >= lengths[i]), None)
        if r is None:
            rows.append([])
            free.append(width)
            r = len(rows) - 1
        rows[r].append(i)
        free[r] -= lengths[i]
    return rows


def pack(examples: list[Example], one_row: bool = False) -> Packed:
    """Pack `examples` (see `layout`); padding at row ends is its own block (positions from 0,
    token id 0, no targets)."""
    rows = layout([len(e.ids) for e in examples], one_row)
    width = max(sum(len(examples[i].ids) for i in r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    at_row, at_col, targets, seq = [], [], [], []
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            e = examples[i]
            n = len(e.ids)
            ids[r, start : start + n] = e.ids
            pos[r, start : start + n] = np.arange(n)
            # Column t predicts token t+1; targets sit at >= n_prompt >= 1 within their own
            # sequence, so no prediction crosses a sequence boundary.
            cols = np.arange(start + e.n_prompt - 1, start + n - 1)
            at_row.append(np.full(len(cols), r))
            at_col.append(cols)
            targets.append(e.ids[e.n_prompt :])
            seq.append(np.full(len(cols), i))
            start += n
        pos[r, start:] = np.arange(width - start)
    return Packed(
        input_ids=torch.from_numpy(ids),
        position_ids=torch.from_numpy(pos),
        row=torch.from_numpy(np.concatenate(at_row)),
        col=torch.from_numpy(np.concatenate(at_col)),
        targets=torch.from_numpy(np.concatenate(targets).astype(np.int64)),
        seq=torch.from_numpy(np.concatenate(seq)),
        n_real=sum(len(e.ids) for e in examples),
    )


@contextlib.contextmanager
def head_at(model, row: torch.Tensor, col: torch.Tensor):
    """Context in which `model`'s LM head (an HF causal LM's output embeddings) sees only the final
    hidden states at (`row[k]`, `col[k]`): [rows, width, hidden] -> [K, hidden], so the model's
    logits come out [K, vocab]. A forward pre-hook, so the forward still runs through whatever
    wraps the model (DDP, a DeepSpeed engine, PEFT)."""

    def gather(module, args):
        return (args[0][row, col], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


def packed_logits(model, batch: Packed, device: torch.device, forward=None) -> torch.Tensor:
    """fp32 logits [K, vocab] of `model` (an HF causal LM) at the positions predicting the batch's
    K target tokens, in packed order; `forward` (default `model`) is what runs it: a DDP or
    DeepSpeed wrapper of `model`."""
    with head_at(model, batch.row.to(device), batch.col.to(device)):
        out = (forward or model)(
            input_ids=batch.input_ids.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        )
    return out.logits.float()


def packed_loss_sum(model, batch: Packed, device: torch.device, forward=None) -> torch.Tensor:
    """Summed NLL (fp32 scalar) of the batch's target tokens under `model` (an HF causal LM; see
    `packed_logits` for `forward`)."""
    logits = packed_logits(model, batch, device, forward)
    return torch.nn.functional.cross_entropy(logits, batch.targets.to(device), reduction="sum")


def padded_real_fraction(lengths: list[int], batch: int) -> float:
    """Real-token fraction of padding each consecutive `batch` sequences to their longest
    (what a padding collator feeds the model), for comparison."""
    real = padded = 0
    for i in range(0, len(lengths), batch):
        chunk = lengths[i : i + batch]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    return real / padded if padded else 1.0
