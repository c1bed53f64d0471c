"""The sequence state both engines keep: output limit, refusals, the other prompt, and the
`Result` rule (source from the keyed coins, None conventions)."""

import numpy as np
import pytest

from mixsd.generate.core import COIN, Role, keyed_uniforms
from mixsd.generate.jobs import Job
from mixsd.generate.sequence import Decoding


def test_limit_is_the_tighter_of_new_tokens_and_model_length():
    job = Job(7, 0.5, [1] * 5, [2] * 9, "t")
    assert Decoding.open(job, 20, 100).limit == 20
    assert Decoding.open(job, 20, 15).limit == 15 - 9  # the longer (expert) prompt counts
    assert Decoding.open(job, 20, 15).refusal(15) is None
    assert Decoding.open(job, 20, 9).refusal(9) == "prompt_too_long"  # no room for one token
    assert Decoding.open(job, 0, 100).refusal(100) == "length"


@pytest.mark.parametrize("lam, solo", [(0.0, Role.EXPERT), (0.4, None), (1.0, Role.NAIVE)])
def test_roles_contexts_and_the_other_prompt(lam, solo):
    seq = Decoding.open(Job(7, lam, [1, 2], [3, 4, 5], "t"), 10, 100)
    assert seq.solo == solo and seq.roles() == ([solo] if solo is not None else list(Role))
    seq.tokens += [8, 9]
    assert seq.context(Role.EXPERT) == [3, 4, 5, 8, 9] and seq.context(Role.NAIVE) == [1, 2, 8, 9]
    assert seq.wants_other(True) == (solo is not None) and not seq.wants_other(False)
    if solo is not None:
        assert seq.other_prompt() == ([1, 2] if solo == Role.EXPERT else [3, 4, 5])
        seq.add_other([-1.0, -2.0])
        assert seq.logprobs(Role.NAIVE if solo == Role.EXPERT else Role.EXPERT) == [-1.0, -2.0]


def test_result_source_is_the_coin_rule_and_none_marks_what_was_not_computed():
    seq = Decoding.open(Job(123, 0.5, [1], [2], "mixed"), 64, 100)
    seq.tokens = list(range(64))
    seq.expert_logprob, seq.naive_logprob = [-1.0] * 64, [-2.0] * 64
    r = seq.result("length", other_logprobs=False)
    coins = keyed_uniforms(np.full(64, 123, dtype=np.uint64), np.arange(64), COIN)
    assert r.source == [int(u < 0.5) for u in coins] and 0 < sum(r.source) < 64
    assert (r.tag, r.finish_reason, r.expert_logprob, r.naive_logprob) == (
        "mixed",
        "length",
        [-1.0] * 64,
        [-2.0] * 64,
    )
    expert_only = Decoding.open(Job(1, 0.0, [1], [2], "e"), 4, 100)
    expert_only.tokens, expert_only.expert_logprob = [5, 6], [-0.5, -0.5]
    off = expert_only.result("stop", other_logprobs=False)
    assert off.source == [0, 0] and off.naive_logprob is None and off.expert_logprob == [-0.5] * 2
    assert expert_only.result("stop", other_logprobs=True).naive_logprob == []
    closed = Decoding.open(Job(2, 1.0, [1], None, "c"), 4, 100)
    closed.tokens = [5]
    assert closed.other_prompt() is None
    assert closed.result("stop", other_logprobs=True).expert_logprob is None
    assert closed.result("stop", other_logprobs=True).source == [1]
