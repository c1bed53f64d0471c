"""The one comparison of two engines' results that every engine-agreement test makes."""

import torch


def assert_same(ref: dict, got: dict) -> None:
    assert ref.keys() == got.keys()
    for tag, a in ref.items():
        b = got[tag]
        assert (b.target_ids, b.source, b.finish_reason) == (
            a.target_ids,
            a.source,
            a.finish_reason,
        ), tag
        for x, y in ((a.expert_logprob, b.expert_logprob), (a.naive_logprob, b.naive_logprob)):
            assert (x is None) == (y is None), tag
            if x is not None:
                assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-4), tag
