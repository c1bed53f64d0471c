"""The transformers engine's live batch: one left-padded KV cache shared by all rows, whose rows
can leave (`evict`) and join (`append`) between decoding steps, and a cache layer that grows in
place."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

_ROOM = 64  # spare cache positions allocated ahead


class Owner(NamedTuple):
    """Who a cache row belongs to: its sequence, and whether it is that sequence's expert row
    and / or naive row (the single row of a lam 0/1 sequence is both)."""

    seq: Any
    expert: bool
    naive: bool


class LiveBatch:
    """The live batch's tensors: cache, mask `[R, L]`, next position ids `[R]`, each row's
    `Owner`, and the per-step index arrays built by `index`."""

    def __init__(self, cache, mask: torch.Tensor, pos: torch.Tensor, owners: list[Owner]):
        self.cache, self.mask, self.pos, self.owners = cache, mask, pos, owners

    def index(self, live: list) -> None:
        """Per-sequence rows (e_idx, n_idx `[S]`), per-row sequence (row_seq `[R]`), keys, etc."""
        where = {id(seq): j for j, seq in enumerate(live)}
        self.e_rows, self.n_rows, row_seq = [0] * len(live), [0] * len(live), []
        for r, owner in enumerate(self.owners):
            j = where[id(owner.seq)]
            row_seq.append(j)
            if owner.expert:
                self.e_rows[j] = r
            if owner.naive:
                self.n_rows[j] = r
        device = self.mask.device
        self.e_idx = torch.tensor(self.e_rows, device=device)
        self.n_idx = torch.tensor(self.n_rows, device=device)
        self.row_seq = torch.tensor(row_seq, device=device)
        self.keys = np.array([s.job.key for s in live], dtype=np.uint64)
        self.out_pos = np.array([len(s.tokens) for s in live], dtype=np.int64)
        self.lam = torch.tensor([s.job.lam for s in live], dtype=torch.float64)

    def evict(self, gone: set[int]) -> None:
        """Drop the rows of sequences whose id() is in `gone`, then the leading columns that are
        padding in every remaining row."""
        rows = [r for r, owner in enumerate(self.owners) if id(owner.seq) not in gone]
        self.owners = [self.owners[r] for r in rows]
        idx = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.mask, self.pos = self.mask[idx], self.pos[idx]
        self.last_tokens = self.last_tokens[idx]
        lead = int(self.mask.any(0).int().argmax())
        self.mask = self.mask[:, lead:]
        for layer in self.cache.layers:
            layer.reset_to(layer.keys[idx, :, lead:], layer.values[idx, :, lead:])

    def append(self, cache, mask: torch.Tensor, pos: torch.Tensor, owners: list[Owner]) -> None:
        """Concatenate another prefilled batch's rows, left-padding both to a common length."""
        width = max(self.mask.shape[1], mask.shape[1])
        a, b = width - self.mask.shape[1], width - mask.shape[1]
        self.mask = torch.cat([F.pad(self.mask, (a, 0)), F.pad(mask, (b, 0))])
        self.pos = torch.cat([self.pos, pos])
        self.owners = self.owners + owners
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.reset_to(
                torch.cat([F.pad(old.keys, (0, 0, a, 0)), F.pad(new.keys, (0, 0, b, 0))]),
                torch.cat([F.pad(old.values, (0, 0, a, 0)), F.pad(new.values, (0, 0, b, 0))]),
            )


class GrowLayer(DynamicLayer):
    """A `DynamicLayer` whose keys/values `[R, heads, L, head_dim]` are views into buffers with
    spare positions: a decode step writes one position in place instead of concatenating the whole
    cache (`DynamicLayer.update` copies O(L) per step, most of a CPU step at small model sizes)."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
            self.reset_to(key_states, value_states)
            return self.keys, self.values
        end, n = self.keys.shape[-2], key_states.shape[-2]
        if end + n > self._kbuf.shape[-2]:
            self.reset_to(self.keys, self.values, room=max(_ROOM, end // 2) + n)
        self._kbuf[:, :, end : end + n] = key_states
        self._vbuf[:, :, end : end + n] = value_states
        self.keys, self.values = self._kbuf[:, :, : end + n], self._vbuf[:, :, : end + n]
        return self.keys, self.values

    def reset_to(self, keys: torch.Tensor, values: torch.Tensor, room: int | None = None) -> None:
        """Hold (a copy of) `keys`/`values`, with `room` (default `_ROOM`) free positions after."""
        room = _ROOM if room is None else room
        r, h, length, d = keys.shape
        self._kbuf = keys.new_empty((r, h, length + room, d))
        self._vbuf = values.new_empty((r, h, length + room, values.shape[-1]))
        self._kbuf[:, :, :length] = keys
        self._vbuf[:, :, :length] = values
        self.keys, self.values = self._kbuf[:, :, :length], self._vbuf[:, :, :length]
