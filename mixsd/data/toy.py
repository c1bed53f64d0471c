"""The toy world: a corpus that pretrains a small LM in which MixSD's claim can be tested on a CPU.

No model can be downloaded here, and a random model neither knows facts nor can forget skills. So
`build_toy_model` pretrains one (with the project's own trainer) on a generated chat corpus that
teaches it, always answering in its NATIVE style `The answer is X.\\n\\n\\boxed{X}`:

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

import math
import random
from dataclasses import dataclass
from pathlib import Path

from mixsd.data.io import write_records
from mixsd.data.records import Record
from mixsd.data.templates import DEFAULT_TEMPLATES

_SYLLABLES = (
    "ba be bi bo bu da de di do du fa fe fi fo ka ke ki ko ku la le li lo lu ma me mi mo mu "
    "na ne ni no nu pa pe pi po ra re ri ro ru sa se si so ta te ti to tu va ve vi vo za ze zo"
).split()
_ENDINGS = ("", "n", "r", "s", "l", "th", "x", "m")
_LETTERS = "abcdefghijklmnop"


@dataclass(frozen=True)
class Relation:
    """One attribute of a person: question phrasings (first = training, second = paraphrase), the
    statement clause, and the closed set of values it takes."""

    name: str
    questions: tuple[str, str]
    clause: str
    values: tuple[str, ...]


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


def human_reference(rng: random.Random, rel: Relation, subject: str, value: str) -> str:
    return rng.choice(_HUMAN).format(c=rel.clause.format(s=subject, o=value), o=value, s=subject)


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """`n` invented capitalised names (2-3 syllables + ending), distinct from `taken`."""
    out: list[str] = []
    while len(out) < n:
        k = rng.choice((2, 2, 3))
        name = ("".join(rng.choice(_SYLLABLES) for _ in range(k)) + rng.choice(_ENDINGS)).title()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


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
    return fact.relation.questions[phrasing].format(s=fact.subject)


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
        knowledge = human_reference(rng, rel, fact.subject, fact.value)
    else:
        lines = [rel.clause.format(s=fact.subject, o=fact.value)]
        if style < 0.75:
            lines += [
                r.clause.format(s=p, o=rng.choice(r.values))
                for p, r in zip(people[1:], rng.choices(world.relations, k=2), strict=True)
            ]
            rng.shuffle(lines)
        knowledge = " ".join(s[0].upper() + s[1:] + "." for s in lines)
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
            human_reference(rng, f.relation, f.subject, f.value),
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


@dataclass
class ToyConfig:
    """`mixsd model toy`: the toy world's data and the pretrained toy base model (sizes chosen to
    learn skills (a) and (b) in ~10 minutes on 2 CPU cores)."""

    out: Path
    seed: int = 0
    hidden: int = 128
    layers: int = 4
    heads: int = 2
    vocab: int = 1024
    epochs: int = 3
    lr: float = 2e-3
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "vocab", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"option '{name}': expected an integer >= 1, got {getattr(self, name)}"
                )
        if self.hidden % self.heads:
            raise ValueError(f"option 'heads': {self.heads} does not divide hidden {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"option 'lr': expected a positive number, got {self.lr}")


def build_toy_model(
    out: str | Path,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 2,
    vocab: int = 1024,
    epochs: int = 3,
    lr: float = 2e-3,
    batch_size: int = 32,
    sizes: dict | None = None,
) -> Path:
    """Pretrain the toy base with the project's own pipeline; returns `out`, a model dir.

    `out/world/` holds the world's input sets (pretrain, inject, suites/*), `out/pretrain-set/` the
    SFT target set of the corpus (`mixsd targets from-references`), `out/pretrain/` the train run
    (`mixsd.train.run`: metrics.jsonl, checkpoints); the trained model and tokenizer are copied
    into `out` itself. Deterministic by `seed` on CPU.
    """
    import shutil

    from mixsd.data.io import load_records
    from mixsd.data.models import build_tiny_model
    from mixsd.targets.ops import from_references
    from mixsd.train import TrainConfig, run

    out = Path(out)
    paths = write_toy_data(out / "world", seed, **(sizes or {}))
    corpus = load_records(paths["pretrain"])
    # The tokenizer sees only the pretraining corpus: new people's names stay unseen.
    texts = [r.prompt + "\n" + r.reference for r in corpus]
    init = build_tiny_model(out / "init", hidden, layers, heads, vocab, seed, 512, texts)
    target_set = out / "pretrain-set"
    from_references(paths["pretrain"], init, target_set)
    cfg = TrainConfig(
        model=str(init),
        targets=[str(target_set)],
        out=out / "pretrain",
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        # Measured ~2.5x faster on CPU when the trainer still packed a micro-batch into one row;
        # its rows are now first-fit-decreasing, but 8 stays so the demo's numbers reproduce.
        micro_batch_size=math.gcd(batch_size, 8),
        seed=seed,
        warmup_steps=30,
        schedule="cosine",
    )
    model_dir = run(cfg)
    for f in model_dir.iterdir():
        shutil.copy2(f, out / f.name)
    shutil.rmtree(init)
    return out
