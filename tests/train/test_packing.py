"""Packing: positions restart, no attention across sequences, packed loss = per-sequence losses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mixsd.train.data import Example
from mixsd.train.packing import layout, pack, packed_loss_sum, padded_real_fraction


def _examples(lengths, n_prompt=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Example(
            ids=rng.integers(5, 400, n).astype(np.int32), n_prompt=n_prompt, id=str(i), answer=None
        )
        for i, n in enumerate(lengths)
    ]


def test_one_row_layout():
    exs = _examples([5, 4])
    b = pack(exs, one_row=True)
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert b.input_ids[0].tolist() == exs[0].ids.tolist() + exs[1].ids.tolist()
    # Targets are ids[3:] of each sequence, predicted from the previous column of the same one.
    assert b.row.tolist() == [0, 0, 0] and b.col.tolist() == [2, 3, 7]
    assert b.targets.tolist() == [*exs[0].ids[3:].tolist(), exs[1].ids[3]]
    assert b.n_real == b.n_slots == 9


def test_rows_first_fit_decreasing():
    assert layout([5, 2, 3, 4, 1], one_row=False) == [[0], [3, 4], [2, 1]]
    b = pack(_examples([5, 2, 3, 4, 1]))
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert b.n_real == 15 == b.n_slots  # a perfect fit here
    b = pack(_examples([6, 2]))
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 2, 3]]  # padding: own block
    assert b.n_real == 8 and b.n_slots == 12 and b.targets.numel() == 3


@pytest.mark.parametrize("one_row", [True, False])
def test_packed_loss_equals_per_sequence_loss(tiny_model, one_row):
    exs = _examples([7, 12, 4, 9, 3])
    with torch.no_grad():
        packed = packed_loss_sum(tiny_model, pack(exs, one_row), torch.device("cpu"))
        ref = 0.0  # each sequence alone through a plain HF forward, no packing code
        for e in exs:
            logits = tiny_model(torch.as_tensor(e.ids[None], dtype=torch.long)).logits[0]
            ids = torch.as_tensor(e.ids, dtype=torch.long)
            ref += torch.nn.functional.cross_entropy(
                logits[e.n_prompt - 1 : -1], ids[e.n_prompt :], reduction="sum"
            )
    torch.testing.assert_close(packed, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("one_row", [True, False])
def test_target_position_logits_equal_full_logits(tiny_model, one_row):
    """Gathering the hidden states at target positions before the LM head gives the loss and the
    gradients of the full [rows, width, vocab] logits indexed afterwards, and leaves no hook."""
    exs = _examples([7, 12, 4, 9, 3])
    b = pack(exs, one_row)
    model = copy.deepcopy(tiny_model)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    gathered = packed_loss_sum(model, b, torch.device("cpu"))
    g_gathered = grads(gathered)
    full = model(input_ids=b.input_ids, position_ids=b.position_ids, use_cache=False).logits
    assert full.shape[:2] == b.input_ids.shape  # the hook is gone after the call
    ref = torch.nn.functional.cross_entropy(full[b.row, b.col], b.targets, reduction="sum")
    g_ref = grads(ref)
    torch.testing.assert_close(gathered, ref, rtol=1e-5, atol=0)
    for a, r in zip(g_gathered, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)


def test_no_attention_across_sequences(tiny_model):
    """Changing the first sequence leaves the second one's logits untouched."""
    a, b = _examples([6, 6], seed=1)
    a2 = Example(ids=(a.ids + 1).astype(np.int32), n_prompt=3, id="0", answer=None)

    def logits(exs):
        p = pack(exs, one_row=True)
        return tiny_model(
            input_ids=p.input_ids, position_ids=p.position_ids, use_cache=False
        ).logits

    with torch.no_grad():
        out1, out2 = logits([a, b]), logits([a2, b])
    assert not torch.allclose(out1[0, :6], out2[0, :6])
    assert torch.allclose(out1[0, 6:], out2[0, 6:], atol=1e-6)


def test_padded_real_fraction():
    assert padded_real_fraction([2, 4, 3, 3], batch=2) == (6 + 6) / (8 + 6)
    assert padded_real_fraction([5], batch=4) == 1.0


def test_example_order_lines_up_packs_of_the_same_targets():
    """The same targets after prompts of other lengths pack into other layouts; `example_order`
    puts both in example order (what OPSD needs to pair student and teacher positions)."""
    student = _examples([9, 4, 7, 5], n_prompt=3)
    teacher = [
        Example(np.concatenate([np.full(p, 7, np.int32), e.ids[3:]]), p, e.id, None)
        for e, p in zip(student, (2, 9, 3, 6), strict=True)
    ]
    a, b = pack(student), pack(teacher)
    assert layout([len(e.ids) for e in student], False) != layout(
        [len(e.ids) for e in teacher], False
    )
    assert a.targets.tolist() != b.targets.tolist()
    expected = np.concatenate([e.ids[3:] for e in student]).tolist()
    assert (
        a.targets[a.example_order()].tolist() == b.targets[b.example_order()].tolist() == expected
    )
