"""The pair-state machine of the vLLM engine's logits processor; it knows nothing about vLLM.

Each MixSD sequence is two vLLM requests (expert, naive) that share a pair id in
`SamplingParams.extra_args["mixsd"]` (built by `pair_args`). Every step the processor sees some
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

import numpy as np
import torch

from mixsd.generate.core import COIN, TOKEN, Sampling, choose_tokens, keyed_uniforms

ARGS_KEY = "mixsd"  # SamplingParams.extra_args[ARGS_KEY] holds a request's pair arguments
EXPERT, NAIVE = 0, 1
_FIELDS = {"pair": int, "role": int, "key": int, "lam": float, "offset": int, "solo": bool,
           "temperature": float, "top_k": int, "top_p": float, "sentinels": (list, tuple)}  # fmt: skip


@dataclass(frozen=True)
class Member:
    """One request of a pair, as parsed from its sampling params.

    ends: token ids after which vLLM finishes the request (stop ids, sentinels); max_tokens: its
    output budget. Both only serve to forget a pair once all of its requests are over.
    """

    pair: int
    role: int
    key: int
    lam: float
    offset: int
    solo: bool
    sampling: Sampling
    sentinels: tuple[int, int]
    ends: frozenset[int]
    max_tokens: int


def pair_args(pair: int, role: int, key: int, lam: float, offset: int, solo: bool,
              sampling: Sampling, sentinels: tuple[int, int]) -> dict:  # fmt: skip
    """`SamplingParams.extra_args` of one request (plain ints, floats, bools: 64-bit safe)."""
    return {
        ARGS_KEY: {
            "pair": pair,
            "role": role,
            "key": int(key),
            "lam": float(lam),
            "offset": offset,
            "solo": solo,
            "temperature": sampling.temperature,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "sentinels": list(sentinels),
        }  # fmt: skip
    }


def check_args(args) -> None:
    """Raise ValueError unless `args` (extra_args["mixsd"]) is a well-formed pair description."""
    if not isinstance(args, dict):
        raise ValueError(f"extra_args[{ARGS_KEY!r}] must be a dict, got {type(args).__name__}")
    for name, kind in _FIELDS.items():
        value = args.get(name)
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
        if not ok or (kind is int and isinstance(value, bool)):
            raise ValueError(f"extra_args[{ARGS_KEY!r}][{name!r}] is missing or mistyped")
    if args["role"] not in (EXPERT, NAIVE) or not 0.0 <= args["lam"] <= 1.0:
        raise ValueError(f"extra_args[{ARGS_KEY!r}]: role must be 0/1 and lam in [0, 1]")
    if len(args["sentinels"]) != 2 or args["offset"] < 0:
        raise ValueError(f"extra_args[{ARGS_KEY!r}]: need 2 sentinels and offset >= 0")
    Sampling(args["temperature"], args["top_k"], args["top_p"])


def member_from_params(sampling_params) -> Member | None:
    """The `Member` a vLLM request stands for, or None for requests that are not ours (warm-up,
    other users)."""
    args = (sampling_params.extra_args or {}).get(ARGS_KEY)
    if args is None:
        return None
    check_args(args)
    return Member(
        pair=args["pair"],
        role=args["role"],
        key=args["key"],
        lam=float(args["lam"]),
        offset=args["offset"],
        solo=args["solo"],
        sampling=Sampling(float(args["temperature"]), args["top_k"], float(args["top_p"])),
        sentinels=tuple(args["sentinels"]),
        ends=frozenset(sampling_params.stop_token_ids or ()),
        max_tokens=sampling_params.max_tokens,
    )


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
        groups: dict[int, list[tuple[int, int, int, Member]]] = {}
        for row, slot, k in rows:
            member = self.slots.get(slot)
            if member is not None and slot not in self.over:
                groups.setdefault(member.pair, []).append((row, slot, k, member))
        forced: list[tuple[int, int, int, Member]] = []  # (row, slot, token, member)
        draws = []  # (pair state or None, rows at the frontier, picked row, member, position)
        frontier = []
        for pair, xs in groups.items():
            state = self.pairs.setdefault(pair, PairState())
            if xs[0][3].solo:  # no partner to agree with: sample every row at its own position
                draws += [(None, [x], x[0], x[3], x[2]) for x in xs]
                continue
            n = len(state.tokens)
            if state.diverged is None and any(x[2] > n for x in xs):
                self._diverge(state, n)  # a row is ahead of what we agreed: state was lost
            heads = [x for x in xs if x[2] == n] if state.diverged is None else []
            if heads:
                frontier.append((state, heads, n))
            for row, slot, k, m in xs:
                if state.diverged is not None and k >= state.diverged:
                    forced.append((row, slot, m.sentinels[m.role], m))
                elif k < n:
                    forced.append((row, slot, state.tokens[k], m))
        if frontier:
            m0 = [heads[0][3] for _, heads, _ in frontier]
            keys = np.array([m.key for m in m0], dtype=np.uint64)
            pos = np.array([m.offset + n for m, (_, _, n) in zip(m0, frontier, strict=True)])
            coins = keyed_uniforms(keys, pos, COIN)
            for (state, heads, n), m, u in zip(frontier, m0, coins, strict=True):
                want = NAIVE if u < m.lam else EXPERT
                pick = next((x for x in heads if x[3].role == want), None)
                if pick is None:  # the coin picked the row that is not here: diverge at n
                    self._diverge(state, n)
                    forced += [(r, s, mm.sentinels[mm.role], mm) for r, s, _, mm in heads]
                else:
                    draws.append((state, heads, pick[0], pick[3], n))
        by_sampling: dict[Sampling, list] = {}
        for draw in draws:
            by_sampling.setdefault(draw[3].sampling, []).append(draw)
        for sampling, ds in by_sampling.items():
            idx = torch.tensor([d[2] for d in ds], device=logits.device)
            keys = np.array([d[3].key for d in ds], dtype=np.uint64)
            pos = np.array([d[3].offset + d[4] for d in ds])
            u = torch.from_numpy(keyed_uniforms(keys, pos, TOKEN)).to(logits.device)
            for (state, heads, *_), tok in zip(
                ds, choose_tokens(logits[idx], u, sampling).tolist(), strict=True
            ):
                if state is not None:
                    state.tokens.append(tok)
                forced += [(r, s, tok, m) for r, s, _, m in heads]
        if forced:
            rows_t = torch.tensor([f[0] for f in forced], device=logits.device)
            toks_t = torch.tensor([f[2] for f in forced], device=logits.device)
            logits[rows_t] = float("-inf")
            logits[rows_t, toks_t] = 0.0
            self._note_ends(forced, {row: k for row, _, k in rows})

    def _diverge(self, state: PairState, n: int) -> None:
        state.diverged = n
        self.divergences += 1

    def _note_ends(self, forced, ks: dict[int, int]) -> None:
        """Mark requests that just got their last token; forget pairs whose requests all ended."""
        for row, slot, tok, m in forced:
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
