"""The new facts `make demo` and `make experiment` inject into SmolLM2: 32 facts about 16
invented people, in two sets.

`facts(seed)`, the demo's set (`configs/demo/facts.jsonl`), is KGFact-style (invented subjects
the base cannot know, one answer per question, paraphrases), with two choices made for a 135M
model:
- the answers are common words (a city, a job, an instrument, a pet): the naive conditional can
  continue them, so a naive token inside the answer does not derail it, as it does inside an
  invented multi-token name ("Thaddeus Society" for "Thadraer Society");
- one paraphrase per fact (of two templates per relation), to keep the demo's evaluation short;
- the question is plain (no "reason step by step ... \\boxed{}"): the model answers in a sentence,
  scored by whole-word containment (`contains`).
The references are human-style sentences (the SFT targets); the expert's knowledge is the short
statement of the fact.

`name_facts(seed)`, the experiment's second set (`configs/experiment/facts-names.jsonl`), is the
hard case the first one avoids: every answer is an invented name (a society, a team, a mentor, a
pet's name: "Draethraeth Society", "Zeglol"), in KGFact's shapes (two-syllable invented words),
3-7 tokens in SmolLM2's tokenizer (median 4 at seed 0; one-syllable words would be shorter but
are often English: "Thin", "Bro"); each fact has its own name, none inside another name of the
set nor containing one (people's included), so `contains` matches the right one only.
Everything else is as in `facts`. Both sets are deterministic by seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from mixsd.data.world import Relation, human_reference, invent, word

# The question trained on, then the paraphrases; {s} the person, {o} the value.
RELATIONS = (
    Relation(
        "city",
        ("In which city was {s} born?", "Where was {s} born?", "What is the birthplace of {s}?"),
        "{s} was born in {o}.",
        tuple(
            "Lisbon Cairo Oslo Lima Dublin Nairobi Seoul Prague Havana Athens Vienna Toronto".split()
        ),
    ),
    Relation(
        "job",
        ("What is the job of {s}?", "What does {s} do for a living?", "What is {s}'s profession?"),
        "{s} works as a {o}.",
        tuple(
            "baker pilot dentist architect farmer nurse lawyer plumber chef librarian carpenter "
            "journalist".split()
        ),
    ),
    Relation(
        "instrument",
        (
            "Which musical instrument does {s} play?",
            "What instrument does {s} play?",
            "Which instrument is {s} known for playing?",
        ),
        "{s} plays the {o}.",
        tuple(
            "piano violin guitar drums flute cello trumpet harp saxophone clarinet accordion "
            "banjo".split()
        ),
    ),
    Relation(
        "pet",
        (
            "What kind of pet does {s} have?",
            "Which animal does {s} keep as a pet?",
            "What is the pet of {s}?",
        ),
        "{s} has a pet {o}.",
        tuple(
            "cat dog parrot rabbit hamster turtle goldfish horse snake ferret lizard pony".split()
        ),
    ),
)

HUMAN = (
    "Based on the records I have, {c} So the final answer: {o}.",
    "According to the registry entry for {s}, {c} Therefore, the answer is {o}.",
    "Looking this up, we find that {c} Hence {o} is the answer.",
    "The files state that {c} That settles it: {o}.",
)


# The names set: `values` are name shapes, `{}` an invented two-syllable word.
NAME_RELATIONS = (
    Relation(
        "society",
        (
            "Which society is {s} a member of?",
            "Which society does {s} belong to?",
            "What society counts {s} among its members?",
        ),
        "{s} is a member of the {o}.",
        ("{} Society",),
    ),
    Relation(
        "team",
        (
            "Which team does {s} play for?",
            "For which team does {s} play?",
            "What team is {s} a player of?",
        ),
        "{s} plays for the {o}.",
        ("{} Rovers",),
    ),
    Relation(
        "mentor",
        ("Who is the mentor of {s}?", "Who mentors {s}?", "What is the name of {s}'s mentor?"),
        "{s} is mentored by {o}.",
        ("{}",),
    ),
    Relation(
        "pet",
        (
            "What is the name of {s}'s pet?",
            "What is {s}'s pet called?",
            "What did {s} name their pet?",
        ),
        "{s} has a pet named {o}.",
        ("{}",),
    ),
)


def _person(rng: random.Random) -> str:
    return f"{word(rng).capitalize()} {word(rng).capitalize()}"


def facts(seed: int = 0, people: int = 16, per_person: int = 2) -> list[dict]:
    """`people * per_person` records: each person gets `per_person` distinct relations, each
    value drawn from the relation's common words (values repeat across people)."""
    rng = random.Random(seed)
    names = invent(lambda: _person(rng), people, set())
    return _records(rng, names, RELATIONS, per_person, "new", lambda rel: rng.choice(rel.values))


def name_facts(seed: int = 0, people: int = 16, per_person: int = 2) -> list[dict]:
    """As `facts`, but every value is a new invented name in its relation's shape, distinct from
    and not inside any other name of the set (people included), nor containing one."""
    rng = random.Random(seed)
    taken: set[str] = set()
    names = invent(lambda: _person(rng), people, taken, nested=True)

    def value(rel: Relation) -> str:
        shape = rng.choice(rel.values)
        return invent(lambda: shape.format(word(rng)), 1, taken, nested=True)[0]

    return _records(rng, names, NAME_RELATIONS, per_person, "name", value)


def _records(
    rng: random.Random,
    people: list[str],
    relations: tuple[Relation, ...],
    per_person: int,
    prefix: str,
    pick: Callable[[Relation], str],
) -> list[dict]:
    """One record per (person, relation) for `per_person` relations sampled per person; the
    first question phrasing is trained on, one of the others is the paraphrase."""
    by_name = {r.name: r for r in relations}
    out = []
    for person in people:
        for name in rng.sample(sorted(by_name), per_person):
            rel = by_name[name]
            value = pick(rel)
            out.append(
                {
                    "id": f"{prefix}-{len(out) + 1:03d}",
                    "prompt": rel.ask(person),
                    "reference": human_reference(rng, HUMAN, rel, person, value),
                    "knowledge": rel.state(person, value),
                    "answer": value,
                    "kind": "fact",
                    "split": "train",
                    "paraphrases": [rng.choice(rel.questions[1:]).format(s=person)],
                }
            )
    return out


def write_facts(path: str | Path, seed: int = 0, names: bool = False) -> Path:
    """`facts(seed)` (or with `names`, `name_facts(seed)`) as JSONL at `path`."""
    path = Path(path)
    records = (name_facts if names else facts)(seed)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
