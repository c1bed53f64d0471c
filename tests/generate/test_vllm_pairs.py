"""The pair-state machine behind the vLLM processor, driven by hand (no model, no vLLM)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mixsd.generate.core import COIN, TOKEN, Role, Sampling, choose_tokens, keyed_uniforms
from mixsd.generate.vllm_pairs import ARGS_KEY, Member, PairTable

EXPERT, NAIVE = Role.EXPERT, Role.NAIVE

V = 16
SENT = (15, 14)
GREEDY = Sampling(0.0, 0, 1.0)
GEN = torch.Generator().manual_seed(0)


def params(pair, role, key=7, lam=0.5, offset=0, solo=False, sampling=GREEDY, max_tokens=50):
    args = Member(pair, role, key, lam, offset, solo, sampling, SENT).extra_args()
    return SimpleNamespace(extra_args=args, stop_token_ids=[0, *SENT], max_tokens=max_tokens)


def rand(n: int) -> torch.Tensor:
    """Random logits `[n, V]` whose argmax is never a stop id or sentinel (so requests go on)."""
    x = torch.randn(n, V, generator=GEN)
    x[:, [0, *SENT]] -= 100.0
    return x


def member(*a, **kw):
    return Member.from_params(params(*a, **kw))


def forced(logits: torch.Tensor) -> list[int]:
    """The token each row was forced to (exactly one finite entry, equal to 0.0)."""
    finite = torch.isfinite(logits)
    assert finite.sum(1).eq(1).all()
    assert logits[finite].eq(0.0).all()
    return logits.argmax(1).tolist()


def coin_role(key, t, lam):
    u = keyed_uniforms(np.array([key], dtype=np.uint64), t, COIN)[0]
    return NAIVE if u < lam else EXPERT  # written out: the rule the table must follow


def key_with_roles(roles, lam=0.5):
    """A key whose coins at positions 0.. pick `roles`."""
    return next(
        k for k in range(10_000) if [coin_role(k, t, lam) for t in range(len(roles))] == roles
    )


def test_coin_picked_row_is_sampled_and_forced_on_both():
    key = key_with_roles([NAIVE, EXPERT])
    table = PairTable()
    table.admit(3, member(1, EXPERT, key))
    table.admit(5, member(1, NAIVE, key))
    logits = rand(2)
    expect = int(logits[1].argmax())  # position 0: the naive row (row 1) is picked
    table.step([(0, 3, 0), (1, 5, 0)], logits)
    assert forced(logits) == [expect, expect]
    logits = rand(2)
    expect = int(logits[1].argmax())  # position 1: expert, now in row 1 (rows reorder)
    table.step([(0, 5, 1), (1, 3, 1)], logits)
    assert forced(logits) == [expect, expect]
    assert table.pairs[1].tokens[1] == expect and table.divergences == 0


def test_sampling_uses_the_core_with_absolute_position_keys():
    key, samp = 12345, Sampling(0.8, 5, 0.9)
    table = PairTable()
    table.admit(0, member(2, EXPERT, key, lam=0.0, offset=4, sampling=samp))
    table.admit(1, member(2, NAIVE, key, lam=0.0, offset=4, sampling=samp))
    logits = rand(2)
    u = torch.from_numpy(keyed_uniforms(np.array([key], dtype=np.uint64), 4, TOKEN))
    expect = int(choose_tokens(logits[:1], u, samp)[0])
    table.step([(0, 0, 0), (1, 1, 0)], logits)
    assert forced(logits) == [expect, expect]


def test_a_row_behind_replays_and_the_pair_continues():
    key = key_with_roles([EXPERT, EXPERT, NAIVE])
    table = PairTable()
    table.admit(0, member(1, EXPERT, key))
    table.admit(1, member(1, NAIVE, key))
    a, b = rand(1), rand(1)
    table.step([(0, 0, 0)], a)  # naive still prefilling: expert picked at 0, fine
    table.step([(0, 0, 1)], b)  # expert alone again at 1, picked again
    got = table.pairs[1].tokens
    assert got == [int(a.argmax()), int(b.argmax())]
    logits = rand(2)
    table.step([(0, 1, 0), (1, 0, 2)], logits)  # naive replays 0; at 2 the coin wants naive
    assert forced(logits) == [got[0], SENT[EXPERT]]  # ...which is behind: diverge at 2
    assert table.pairs[1].diverged == 2 and table.divergences == 1
    logits = rand(1)
    table.step([(0, 1, 1)], logits)
    assert forced(logits) == [got[1]]
    logits = rand(1)
    table.step([(0, 1, 2)], logits)
    assert forced(logits) == [SENT[NAIVE]]
    assert 1 not in table.pairs  # both requests emitted their last token: forgotten


def test_a_row_ahead_of_the_agreed_history_diverges():
    table = PairTable()
    table.admit(0, member(1, EXPERT))
    table.admit(1, member(1, NAIVE))
    logits = rand(2)
    table.step([(0, 0, 3), (1, 1, 0)], logits)  # state lost: expert claims 3 tokens
    assert forced(logits) == [SENT[EXPERT], SENT[NAIVE]]


def test_solo_requests_sample_at_their_own_position_without_partner():
    table = PairTable()
    table.admit(0, member(1, NAIVE, key=9, lam=1.0, offset=2, solo=True))
    logits = rand(1)
    expect = int(logits.argmax())
    table.step([(0, 0, 5)], logits)
    assert forced(logits) == [expect] and table.divergences == 0


def test_foreign_rows_and_ended_requests_are_left_alone():
    table = PairTable()
    table.admit(0, None)  # warm-up / another user's request
    table.admit(1, member(1, NAIVE, lam=1.0, solo=True, max_tokens=1))
    logits = rand(2)
    before = logits.clone()
    table.step([(0, 0, 0), (1, 1, 0)], logits)
    assert torch.equal(logits[0], before[0]) and 1 not in table.pairs
    again = rand(2)
    before = again.clone()
    table.step([(0, 0, 1), (1, 1, 1)], again)  # a finished request shows up once more (async)
    assert torch.equal(again, before)


def test_slot_reuse_starts_clean():
    key = key_with_roles([EXPERT])
    table = PairTable()
    table.admit(0, member(1, EXPERT, key, max_tokens=1))
    table.admit(1, member(1, NAIVE, key, max_tokens=1))
    table.step([(0, 0, 0), (1, 1, 0)], rand(2))
    assert table.pairs == {} and table.over == {0, 1}
    table.admit(1, member(2, EXPERT, key))  # new pair in old slots, same key
    table.admit(0, member(2, NAIVE, key))
    logits = rand(2)
    expect = int(logits[0].argmax())  # the expert now sits in slot 1, row 0
    table.step([(0, 1, 0), (1, 0, 0)], logits)
    assert forced(logits) == [expect, expect]
    assert table.pairs[2].tokens == [expect] and table.divergences == 0


def test_moves_carry_members_and_end_marks():
    table = PairTable()
    table.admit(0, member(1, EXPERT))
    table.admit(1, member(1, NAIVE))
    table.over.add(1)
    table.move(0, 1, swap=True)
    assert table.slots[1].role == EXPERT and table.slots[0].role == NAIVE and table.over == {0}
    table.move(1, 2, swap=False)
    assert 1 not in table.slots and table.slots[2].role == EXPERT


@pytest.mark.parametrize(
    "change",
    [{"role": 2}, {"lam": 1.5}, {"key": "x"}, {"sentinels": [1]}, {"top_p": 0.0}, {"solo": None}],
)
def test_bad_pair_arguments_are_rejected(change):
    args = Member(1, EXPERT, 7, 0.5, 0, False, GREEDY, SENT).to_dict() | change
    with pytest.raises(ValueError):
        Member.from_dict(args)


def test_the_wire_record_round_trips_and_foreign_requests_are_not_ours():
    sent = Member(3, NAIVE, 2**63 - 1, 0.25, 5, True, Sampling(0.7, 20, 0.9), SENT)
    wire = sent.extra_args()
    assert wire == {
        ARGS_KEY: {
            "pair": 3,
            "role": 1,
            "key": 2**63 - 1,
            "lam": 0.25,
            "offset": 5,
            "solo": True,
            "temperature": 0.7,
            "top_k": 20,
            "top_p": 0.9,
            "sentinels": [15, 14],
        }
    }
    request = SimpleNamespace(extra_args=wire, stop_token_ids=[0, 15], max_tokens=9)
    got = Member.from_params(request)
    assert got == Member(
        3, NAIVE, 2**63 - 1, 0.25, 5, True, Sampling(0.7, 20, 0.9), SENT, frozenset({0, 15}), 9
    )
    assert type(got.role) is Role and Member.from_dict(got.to_dict()) == sent
    assert (
        Member.from_params(SimpleNamespace(extra_args=None, stop_token_ids=[], max_tokens=1))
        is None
    )
