"""The pair-state machine of the vLLM engine's logits processor; it knows nothing about vLLM.

Each MixSD sequence is two vLLM requests (expert, naive) that share a pair id in
`SamplingParams.extra_args["mixsd"]` (a `Member`, `Member.to_dict`). Every step the processor sees some
rows of some requests, in any order, each at its own output index k (requests are not in
lockstep). `PairTable` keeps per pair the agreed tokens and, per present row:

    k <  agreed            replay agreed[k] (the row is behind)
    k == agreed            toss the keyed coin at absolute position offset + k; if the picked
                           role's row is present, sample from it with the mixing core and force
                           the token on every row of the pair at k; otherwise diverge at k
    k >= d (diverged at d) force the role's sentinel stop token

Forcing = fill the row with -inf and set the chosen token to 0.0, so vLLM's (greedy) sampler
can only emit it, while vLLM still reports raw log-probs of each request's own conditional.
A diverged pair ends as `y[:d] + [sentinel]` on both requests; the engine resubmits it from the
prefix at absolute offset d, and since every uniform is keyed on (key, absolute position) the
result equals perfect lockstep. Solo requests (single-conditional jobs) need no partner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from mixsd.generate.core import (
    COIN,
    TOKEN,
    Role,
    Sampling,
    choose_tokens,
    keyed_uniforms,
    naive_picked,
)

ARGS_KEY = "mixsd"  # SamplingParams.extra_args[ARGS_KEY] holds a request's `Member.to_dict()`


@dataclass(frozen=True)
class Member:
    """One request of a pair: what travels in `extra_args[ARGS_KEY]` (plain ints, floats, bools
    and a list: 64-bit safe), spelled once by `to_dict` / `from_dict`.

    pair: the pair id shared by the two requests; role: the conditional it decodes; key, lam,
    sampling: the job's; offset: the absolute output position of its output index 0 (a resumed
    pair starts past 0); solo: a single-conditional request (no partner); sentinels: the stop
    tokens (expert's, naive's) that end a diverged pair. Not on the wire, from the request's own
    params (`from_params`): ends, the token ids after which vLLM finishes it (stop ids,
    sentinels), and max_tokens, its output budget; both only serve to forget a pair once all of
    its requests are over.
    """

    pair: int
    role: Role
    key: int
    lam: float
    offset: int
    solo: bool
    sampling: Sampling
    sentinels: tuple[int, int]
    ends: frozenset[int] = frozenset()
    max_tokens: int | None = None

    def to_dict(self) -> dict:
        return {
            "pair": self.pair,
            "role": int(self.role),
            "key": int(self.key),
            "lam": float(self.lam),
            "offset": self.offset,
            "solo": self.solo,
            "temperature": self.sampling.temperature,
            "top_k": self.sampling.top_k,
            "top_p": self.sampling.top_p,
            "sentinels": list(self.sentinels),
        }

    def extra_args(self) -> dict:
        """`SamplingParams.extra_args` of this request."""
        return {ARGS_KEY: self.to_dict()}

    @classmethod
    def from_dict(cls, args, ends=frozenset(), max_tokens: int | None = None) -> Member:
        """The member `args` (a `to_dict()`) describes; ValueError naming the first bad field."""
        if not isinstance(args, dict):
            raise ValueError(f"extra_args[{ARGS_KEY!r}] must be a dict, got {type(args).__name__}")

        def get(name: str, kind: type):
            value = args.get(name)
            ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
            if not ok or (kind is int and isinstance(value, bool)):
                raise ValueError(f"extra_args[{ARGS_KEY!r}][{name!r}] is missing or mistyped")
            return float(value) if kind is float else value

        role, lam, offset = get("role", int), get("lam", float), get("offset", int)
        sentinels = get("sentinels", (list, tuple))
        if role not in tuple(Role) or not 0.0 <= lam <= 1.0:
            raise ValueError(f"extra_args[{ARGS_KEY!r}]: role must be 0/1 and lam in [0, 1]")
        if len(sentinels) != 2 or offset < 0:
            raise ValueError(f"extra_args[{ARGS_KEY!r}]: need 2 sentinels and offset >= 0")
        return cls(
            pair=get("pair", int),
            role=Role(role),
            key=get("key", int),
            lam=lam,
            offset=offset,
            solo=get("solo", bool),
            sampling=Sampling(get("temperature", float), get("top_k", int), get("top_p", float)),
            sentinels=tuple(sentinels),
            ends=frozenset(ends),
            max_tokens=max_tokens,
        )

    @classmethod
    def from_params(cls, sampling_params) -> Member | None:
        """The member a vLLM request stands for, or None for requests that are not ours (warm-up,
        other users); ValueError for malformed arguments."""
        args = (sampling_params.extra_args or {}).get(ARGS_KEY)
        if args is None:
            return None
        ends = sampling_params.stop_token_ids or ()
        return cls.from_dict(args, ends, sampling_params.max_tokens)


class Force(NamedTuple):
    """Token `token` forced on logits row `row` (the request in `slot`, member `member`)."""

    row: int
    slot: int
    token: int
    member: Member


class Row(NamedTuple):
    """A logits row of ours this step: it emits output index k of the request in `slot`."""

    row: int
    slot: int
    k: int
    member: Member

    def force(self, token: int) -> Force:
        return Force(self.row, self.slot, token, self.member)


class Draw(NamedTuple):
    """A token to sample from row `pick` at output index k and force on `heads`; `state` is the
    pair's (None for a solo request, which keeps no agreed history)."""

    state: PairState | None
    heads: list[Row]
    pick: Row
    k: int


@dataclass
class PairState:
    """The agreed tokens of one submitted pair (output indices 0.. of its requests) and, once it
    diverged, the index d from which its requests emit their sentinels."""

    tokens: list[int] = field(default_factory=list)
    diverged: int | None = None
    done: set[int] = field(default_factory=set)  # roles whose request has emitted its last token


class PairTable:
    """Per-slot members and per-pair states. Slots are whatever the adapter indexes requests by.

    `divergences` counts pairs this table stopped with sentinels (for tests and logs; the engine
    counts them on its own side from the outputs).
    """

    def __init__(self) -> None:
        self.slots: dict[int, Member] = {}
        self.over: set[int] = set()  # slots whose request has emitted its last token
        self.pairs: dict[int, PairState] = {}
        self.divergences = 0

    def admit(self, slot: int, member: Member | None) -> None:
        """A request (new, or back after preemption) now occupies `slot`; None = not ours."""
        self.over.discard(slot)
        self.slots.pop(slot, None)
        if member is not None:
            self.slots[slot] = member
            self.pairs.setdefault(member.pair, PairState())

    def release(self, slot: int) -> None:
        """The request left `slot` (finished, or unscheduled and coming back later)."""
        self.slots.pop(slot, None)
        self.over.discard(slot)

    def move(self, a: int, b: int, swap: bool) -> None:
        """Slot a's request moves to b (and b's to a when `swap`)."""
        move_entry(self.slots, a, b, swap)
        over_a, over_b = a in self.over, b in self.over
        self.over -= {a, b}
        self.over |= {b} if over_a else set()
        self.over |= {a} if over_b and swap else set()

    def step(self, rows, logits: torch.Tensor) -> None:
        """Force one token on every row of ours. rows: (row, slot, k) for each logits row that
        emits output index k of the request in `slot`; logits `[rows, vocab]`, edited in place."""
        groups: dict[int, list[Row]] = {}
        for row, slot, k in rows:
            member = self.slots.get(slot)
            if member is not None and slot not in self.over:
                groups.setdefault(member.pair, []).append(Row(row, slot, k, member))
        forced: list[Force] = []
        draws: list[Draw] = []
        frontier: list[tuple[PairState, list[Row], int]] = []  # (state, rows at k == n, n)
        for pair, xs in groups.items():
            state = self.pairs.setdefault(pair, PairState())
            if xs[0].member.solo:  # no partner to agree with: sample every row at its own k
                draws += [Draw(None, [x], x, x.k) for x in xs]
                continue
            n = len(state.tokens)
            if state.diverged is None and any(x.k > n for x in xs):
                self._diverge(state, n)  # a row is ahead of what we agreed: state was lost
            heads = [x for x in xs if x.k == n] if state.diverged is None else []
            if heads:
                frontier.append((state, heads, n))
            for x in xs:
                if state.diverged is not None and x.k >= state.diverged:
                    forced.append(x.force(x.member.sentinels[x.member.role]))
                elif x.k < n:
                    forced.append(x.force(state.tokens[x.k]))
        if frontier:
            lead = [heads[0].member for _, heads, _ in frontier]
            keys = np.array([m.key for m in lead], dtype=np.uint64)
            pos = np.array([m.offset + n for m, (_, _, n) in zip(lead, frontier, strict=True)])
            naive = naive_picked(keyed_uniforms(keys, pos, COIN), np.array([m.lam for m in lead]))
            for (state, heads, n), naive_row in zip(frontier, naive, strict=True):
                want = Role.NAIVE if naive_row else Role.EXPERT
                pick = next((x for x in heads if x.member.role == want), None)
                if pick is None:  # the coin picked the row that is not here: diverge at n
                    self._diverge(state, n)
                    forced += [x.force(x.member.sentinels[x.member.role]) for x in heads]
                else:
                    draws.append(Draw(state, heads, pick, n))
        by_sampling: dict[Sampling, list[Draw]] = {}
        for draw in draws:
            by_sampling.setdefault(draw.pick.member.sampling, []).append(draw)
        for sampling, ds in by_sampling.items():
            idx = torch.tensor([d.pick.row for d in ds], device=logits.device)
            keys = np.array([d.pick.member.key for d in ds], dtype=np.uint64)
            pos = np.array([d.pick.member.offset + d.k for d in ds])
            u = torch.from_numpy(keyed_uniforms(keys, pos, TOKEN)).to(logits.device)
            for d, tok in zip(ds, choose_tokens(logits[idx], u, sampling).tolist(), strict=True):
                if d.state is not None:
                    d.state.tokens.append(tok)
                forced += [x.force(tok) for x in d.heads]
        if forced:
            rows_t = torch.tensor([f.row for f in forced], device=logits.device)
            toks_t = torch.tensor([f.token for f in forced], device=logits.device)
            if len(forced) == logits.shape[0]:  # every row (the usual case): one plain fill
                logits.fill_(float("-inf"))
            else:
                logits[rows_t] = float("-inf")
            logits[rows_t, toks_t] = 0.0
            self._note_ends(forced, {row: k for row, _, k in rows})

    def _diverge(self, state: PairState, n: int) -> None:
        state.diverged = n
        self.divergences += 1

    def _note_ends(self, forced, ks: dict[int, int]) -> None:
        """Mark requests that just got their last token; forget pairs whose requests all ended."""
        for row, slot, tok, m in forced:  # Force records
            if tok in m.ends or ks[row] + 1 >= m.max_tokens:
                self.over.add(slot)
                state = self.pairs.get(m.pair)
                if state is not None:
                    state.done.add(m.role)
                    if len(state.done) == (1 if m.solo else 2):
                        del self.pairs[m.pair]


def move_entry(d: dict, a: int, b: int, swap: bool) -> None:
    """Move d[a] to d[b] (exchange them when `swap`), for slot-keyed dicts."""
    va, vb = d.pop(a, None), d.pop(b, None)
    if va is not None:
        d[b] = va
    if swap and vb is not None:
        d[a] = vb
