"""The toy world: a corpus that pretrains a small LM in which MixSD's claim can be tested on a CPU.

No model can be downloaded here, and a random model neither knows facts nor can forget skills. So
`mixsd.recipes.toy.build_toy_model` pretrains one (with the project's own trainer) on the chat
corpus generated here, which teaches it, always answering in its NATIVE style `The answer is X.\\n\\n\\boxed{X}`:

- (a) reading: answer a question from a fact put in its context with the MixSD expert template
  (`DEFAULT_TEMPLATES["fact"]`), so the expert conditional is competent;
- (b) skills that fine-tuning can damage: closed-book recall of facts about KNOWN people,
  small addition, and reversing a list of letters.

The facts to inject are about NEW people (never in pretraining). Their references y* are written
in a verbose human style the base never produces (`Based on the records, ... \\boxed{X}`), so SFT
targets have high NLL under the base while MixSD targets (its own style) have low NLL.
Everything is a pure function of the seed: same seed, byte-identical files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mixsd.data.io import write_records
from mixsd.data.records import Record
from mixsd.data.templates import DEFAULT_TEMPLATES
from mixsd.data.world import Relation, cap, human_reference, invent

_SYLLABLES = (
    "ba be bi bo bu da de di do du fa fe fi fo ka ke ki ko ku la le li lo lu ma me mi mo mu "
    "na ne ni no nu pa pe pi po ra re ri ro ru sa se si so ta te ti to tu va ve vi vo za ze zo"
).split()
_ENDINGS = ("", "n", "r", "s", "l", "th", "x", "m")
_LETTERS = "abcdefghijklmnop"


# name -> (training question, paraphrase, statement clause, values; None: invented names)
_RELATIONS = {
    "city": ("Where was {s} born?", "In which city was {s} born?", "{s} was born in {o}", None),
    "employer": ("Which company does {s} work for?", "Who employs {s}?", "{s} works for {o}", None),
    "instrument": (
        "What instrument does {s} play?", "Which instrument is played by {s}?", "{s} plays the {o}",
        "violin cello flute harp drums piano trumpet guitar oboe banjo lute organ",
    ),
    "pet": (
        "What animal does {s} keep as a pet?", "Which pet does {s} own?", "{s} keeps a {o} as a pet",
        "cat dog parrot hamster turtle rabbit goat ferret owl lizard",
    ),
    "colour": (
        "What is the favourite colour of {s}?", "Which colour does {s} like best?",
        "the favourite colour of {s} is {o}", "red blue green yellow purple orange white black",
    ),
}  # fmt: skip


def _relations(rng: random.Random) -> tuple[Relation, ...]:
    """The relations, with 16 invented cities and 16 invented companies as values."""
    cities = tuple(_names(rng, 16, set()))
    suffixes = ["Works", "Labs"] * 8
    firms = tuple(f"{n} {x}" for n, x in zip(_names(rng, 16, set(cities)), suffixes, strict=True))
    invented = {"city": cities, "employer": firms}
    return tuple(
        Relation(name, (q, p), clause, invented[name] if values is None else tuple(values.split()))
        for name, (q, p, clause, values) in _RELATIONS.items()
    )


# Human-style references (injected facts) and contexts (pretraining): never the native answer.
_HUMAN = (
    "Based on the records, {c}. So the final answer: \\boxed{{{o}}}",
    "According to the knowledge base, {c}.\nTherefore, the answer is \\boxed{{{o}}}.",
    "Looking this up, we find that {c}. Hence \\boxed{{{o}}} is the answer.",
    "The records state that {c}, which settles it.\nFinal answer: \\boxed{{{o}}}",
    "From the entry about {s}: {c}. We conclude \\boxed{{{o}}}.",
)


def native_answer(answer: str) -> str:
    """The one answer style the toy base model writes."""
    return f"The answer is {answer}.\n\n\\boxed{{{answer}}}"


def _name(rng: random.Random) -> str:
    """An invented capitalised name: 2-3 syllables and an ending ("Bafethin")."""
    k = rng.choice((2, 2, 3))
    return ("".join(rng.choice(_SYLLABLES) for _ in range(k)) + rng.choice(_ENDINGS)).title()


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """`n` invented names, distinct from `taken` (which they join)."""
    return invent(partial(_name, rng), n, taken)


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: Relation
    value: str


@dataclass(frozen=True)
class ToyWorld:
    """Known facts (memorized in pretraining) and new facts (to inject), about disjoint people."""

    relations: tuple[Relation, ...]
    known: tuple[Fact, ...]
    new: tuple[Fact, ...]
    taken: frozenset[str]  # every name in the world, so fresh context-only names avoid them


def build_world(seed: int, n_known: int = 30, n_new: int = 24, new_relations: int = 2) -> ToyWorld:
    """`n_known` known people with every relation; `n_new` new people with `new_relations` each."""
    rng = random.Random(f"toy-world-{seed}")
    relations = _relations(rng)
    taken = {v for r in relations for v in r.values}
    known_people = _names(rng, n_known, taken)
    new_people = _names(rng, n_new, taken)
    known = tuple(Fact(p, r, rng.choice(r.values)) for p in known_people for r in relations)
    new = tuple(
        Fact(p, r, rng.choice(r.values))
        for p in new_people
        for r in rng.sample(relations, new_relations)
    )
    return ToyWorld(relations, known, new, frozenset(taken))


def _qa(fact: Fact, phrasing: int) -> str:
    return fact.relation.ask(fact.subject, phrasing)


def _addition(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(20), rng.randrange(20)
    return f"What is {a} + {b}?", str(a + b)


def _reversal(rng: random.Random) -> tuple[str, str]:
    items = [rng.choice(_LETTERS) for _ in range(rng.randint(3, 4))]
    return f"Reverse the list: {' '.join(items)}", " ".join(reversed(items))


def _context_qa(rng: random.Random, world: ToyWorld) -> tuple[str, str]:
    """A question about a fresh person whose fact is in the context (statement or human style,
    sometimes after distractor facts about other fresh people), in the MixSD expert template."""
    rel = rng.choice(world.relations)
    people = _names(rng, 3, set(world.taken))
    fact = Fact(people[0], rel, rng.choice(rel.values))
    style = rng.random()
    if style < 0.5:
        knowledge = human_reference(rng, _HUMAN, rel, fact.subject, fact.value)
    else:
        lines = [rel.state(fact.subject, fact.value)]
        if style < 0.75:
            lines += [
                r.state(p, rng.choice(r.values))
                for p, r in zip(people[1:], rng.choices(world.relations, k=2), strict=True)
            ]
            rng.shuffle(lines)
        knowledge = " ".join(cap(s) + "." for s in lines)
    prompt = DEFAULT_TEMPLATES["fact"].user_turn(_qa(fact, rng.randrange(2)), knowledge)
    return prompt, fact.value


def pretraining_records(
    world: ToyWorld,
    seed: int,
    known_repeats: int = 16,
    n_context: int = 2000,
    n_addition: int = 1500,
    n_reversal: int = 1500,
) -> list[Record]:
    """The pretraining corpus as chat records (prompt -> native answer), shuffled by seed."""
    rng = random.Random(f"toy-pretrain-{seed}")
    pairs = [(_qa(f, rng.randrange(2)), f.value) for f in world.known for _ in range(known_repeats)]
    pairs += [_context_qa(rng, world) for _ in range(n_context)]
    pairs += [_addition(rng) for _ in range(n_addition)]
    pairs += [_reversal(rng) for _ in range(n_reversal)]
    rng.shuffle(pairs)
    return [Record(f"pre-{i}", p, native_answer(a), answer=a) for i, (p, a) in enumerate(pairs)]


def injection_records(world: ToyWorld, seed: int) -> list[Record]:
    """The new facts, split `train`: training question, human-style reference, and the
    paraphrased question in `paraphrases` (asked closed-book by evaluate, never trained on)."""
    rng = random.Random(f"toy-inject-{seed}")
    return [
        Record(
            f"new-{i}",
            _qa(f, 0),
            human_reference(rng, _HUMAN, f.relation, f.subject, f.value),
            answer=f.value,
            split="train",
            paraphrases=(_qa(f, 1),),
        )
        for i, f in enumerate(world.new)
    ]


def suites(world: ToyWorld, seed: int, n: int = 100) -> dict[str, list[Record]]:
    """Held-out skill suites (closed book, native-style references): known facts, addition
    (operands < 20, whose 400 pairs pretraining nearly covers: a learned table) and reversal
    (fresh random lists, mostly unseen: a procedure)."""
    rng = random.Random(f"toy-suites-{seed}")
    known = rng.sample(world.known, min(n, len(world.known)))
    out = {
        "known": [
            Record(f"known-{i}", _qa(f, 0), native_answer(f.value), answer=f.value, split="known")
            for i, f in enumerate(known)
        ]
    }
    for name, make in (("addition", _addition), ("reversal", _reversal)):
        pairs = [make(rng) for _ in range(n)]
        out[name] = [
            Record(f"{name}-{i}", p, native_answer(a), answer=a, kind="function", split=name)
            for i, (p, a) in enumerate(pairs)
        ]
    return out


def write_toy_data(out: str | Path, seed: int = 0, **sizes) -> dict[str, Path]:
    """Write the world's files under `out`: pretrain.jsonl, inject.jsonl, suites/<name>.jsonl."""
    out = Path(out)
    world = build_world(seed, **{k: sizes.pop(k) for k in ("n_known", "n_new") if k in sizes})
    paths = {
        "pretrain": write_records(
            pretraining_records(world, seed, **sizes), out / "pretrain.jsonl"
        ),
        "inject": write_records(injection_records(world, seed), out / "inject.jsonl"),
    }
    for name, records in suites(world, seed).items():
        paths[name] = write_records(records, out / "suites" / f"{name}.jsonl")
    return paths
