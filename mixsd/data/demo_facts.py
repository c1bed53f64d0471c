"""The new facts `make demo` injects into SmolLM2: 32 facts about 16 invented people.

KGFact-style (invented subjects the base cannot know, one answer per question, paraphrases), with
two choices made for a 135M model:
- the answers are common words (a city, a job, an instrument, a pet): the naive conditional can
  continue them, so a naive token inside the answer does not derail it, as it does inside an
  invented multi-token name ("Thaddeus Society" for "Thadraer Society");
- one paraphrase per fact (of two templates per relation), to keep the demo's evaluation short;
- the question is plain (no "reason step by step ... \\boxed{}"): the model answers in a sentence,
  scored by whole-word containment (`contains`).
The references are human-style sentences (the SFT targets); the expert's knowledge is the short
statement of the fact. `facts(seed)` is deterministic; `configs/demo/facts.jsonl` is its output.
"""

from __future__ import annotations

import json
import random
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


def facts(seed: int = 0, people: int = 16, per_person: int = 2) -> list[dict]:
    """`people * per_person` records: each person gets `per_person` distinct relations."""
    rng = random.Random(seed)
    names = invent(lambda: f"{word(rng).capitalize()} {word(rng).capitalize()}", people, set())
    by_name = {r.name: r for r in RELATIONS}
    out = []
    for person in names:
        for name in rng.sample(sorted(by_name), per_person):
            rel = by_name[name]
            value = rng.choice(rel.values)
            out.append(
                {
                    "id": f"new-{len(out) + 1:03d}",
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


def write_facts(path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in facts(seed)), encoding="utf-8")
    return path
