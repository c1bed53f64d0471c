"""MixSD inside vLLM: two thin logits-processor adapters over `vllm_pairs.PairTable`.

`MixsdProcessorV2` (Model Runner V2, vLLM's default) and `MixsdProcessorV1` (the legacy runner)
only translate vLLM's batch layout into (row, slot, output index) triples; all decisions live in
the pair-state machine (see `mixsd.generate.vllm_pairs`). Register one with
`LLM(logits_processors=["mixsd.generate.vllm_processor:MixsdProcessorV2"])`.
"""

from __future__ import annotations

import numpy as np
import torch
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as V2LogitsProcessor

from mixsd.generate.vllm_pairs import Member, PairTable, move_entry


class MixsdProcessorV2(V2LogitsProcessor):
    """Model Runner V2 adapter: slots are vLLM's persistent request slots; a row's output index is
    its sequence length minus its prompt length; rows still prefilling (chunked) are skipped."""

    def __init__(self, vllm_config, req_states: LogitsProcRequestState):
        self.req_states = req_states
        self.table = PairTable()

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        Member.from_params(sampling_params)

    def add_request(self, req_idx: int, sampling_params) -> bool:
        member = Member.from_params(sampling_params)
        self.table.admit(req_idx, member)
        return member is not None

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots = ctx.idx_mapping_np
        seq_lens = ctx.seq_lens_upper_bound_np[: len(slots)]
        prompt = self.req_states.prompt_len.np[slots]
        ready = seq_lens >= self.req_states.prefill_len.np[slots]
        rows = [
            (i, int(slots[i]), int(seq_lens[i] - prompt[i]))
            for i in np.flatnonzero(ready)
            if int(slots[i]) in self.table.slots
        ]
        self.table.step(rows, logits)
        return logits


class MixsdProcessorV1(V1LogitsProcessor):
    """Legacy-runner adapter: slots are persistent-batch indices (kept current from the batch
    updates); a row's output index is the length of its live output-token list. Needs chunked
    prefill off: this interface cannot tell a partial prefill from a decode."""

    def __init__(self, vllm_config, device, is_pin_memory: bool):
        self.table = PairTable()
        self.outputs: dict[int, list[int]] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        Member.from_params(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False  # forcing changes the argmax: must also run for greedy requests

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.table.release(index)
            self.outputs.pop(index, None)
        for index, params, _, output_ids in batch_update.added:
            member = Member.from_params(params)
            self.table.admit(index, member)
            self.outputs.pop(index, None)
            if member is not None:
                self.outputs[index] = output_ids
        for a, b, direction in batch_update.moved:
            swap = direction == MoveDirectionality.SWAP
            self.table.move(a, b, swap)
            move_entry(self.outputs, a, b, swap)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        rows = [(i, i, len(out)) for i, out in self.outputs.items() if i < logits.shape[0]]
        self.table.step(rows, logits)
        return logits
