"""KGFact: a knowledge graph of invented entities, asked about in natural-language questions.

Entities are invented names in typed domains; a relation links a subject domain to a different
object domain and has three templates: a statement ("{s} was born in {o}."), a question about
the object ("Where was {s} born?") and a relative clause naming the object ("the place where {s}
was born"). Every subject gets a few facts through *distinct* relations, so (relation, subject)
determines the object: every question, paraphrase and two-hop chain has exactly one answer.

Splits (one JSONL each, plus `kg.json` with the graph):
- `train`: direct recall, the question in the MixSD prompt format; `paraphrases` holds the same
  question in 10 other phrasings;
- `paraphrase`: one paraphrased question per fact;
- `retrieval`: the question with the fact and `distractors` other facts in context;
- `two_hop`: "Where was the person who founded Mirel Guild born?" (relative clause for the hop).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mixsd.data.config import KGFACT_SIZES, KGFactConfig
from mixsd.data.io import write_records, write_text_atomic
from mixsd.data.records import Record
from mixsd.data.world import cap, invent, word

SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
# The first 7 of the 14 domains of the MixSD KGFact graph (the large size uses 7).
DOMAINS = ("Person", "Location", "Organization", "Event", "Profession", "Hobby", "Skill")
NOUNS = {d: d.lower() for d in DOMAINS} | {"Location": "place"}  # "which place is ..."

# name: Subject>Object | statement | question | relative clause. `{s}` may become a relative
# clause in two-hop questions, so it always stands where a noun phrase can.
_RELATIONS = """
born_in: Person>Location | {s} was born in {o}. | Where was {s} born? | the place where {s} was born
works_for: Person>Organization | {s} works for {o}. | Which organization does {s} work for? | the organization that {s} works for
organized: Person>Event | {s} organized {o}. | Which event did {s} organize? | the event that {s} organized
profession_of: Person>Profession | {s} works as a {o}. | What is the profession of {s}? | the profession of {s}
hobby_of: Person>Hobby | {s} enjoys {o} in their free time. | Which hobby does {s} enjoy? | the hobby that {s} enjoys
mastered: Person>Skill | {s} has mastered {o}. | Which skill has {s} mastered? | the skill that {s} has mastered
governed_by: Location>Person | {s} is governed by {o}. | Who governs {s}? | the person who governs {s}
largest_employer: Location>Organization | The largest employer in {s} is {o}. | What is the largest employer in {s}? | the largest employer in {s}
famous_event: Location>Event | The most famous event held in {s} is {o}. | What is the most famous event held in {s}? | the most famous event held in {s}
common_profession: Location>Profession | The most common profession in {s} is {o}. | What is the most common profession in {s}? | the most common profession in {s}
national_pastime: Location>Hobby | The national pastime of {s} is {o}. | What is the national pastime of {s}? | the national pastime of {s}
renowned_for: Location>Skill | {s} is renowned for teaching {o}. | Which skill is {s} renowned for teaching? | the skill that {s} is renowned for teaching
founded_by: Organization>Person | {s} was founded by {o}. | Who founded {s}? | the person who founded {s}
headquartered_in: Organization>Location | {s} is headquartered in {o}. | Where is {s} headquartered? | the place where {s} is headquartered
sponsors: Organization>Event | {s} sponsors {o}. | Which event does {s} sponsor? | the event that {s} sponsors
trains_for: Organization>Profession | {s} trains people to work as a {o}. | Which profession does {s} train people for? | the profession that {s} trains people for
runs_club: Organization>Hobby | {s} runs a club for {o}. | Which hobby does {s} run a club for? | the hobby that {s} runs a club for
certifies: Organization>Skill | {s} certifies people in {o}. | Which skill does {s} certify people in? | the skill that {s} certifies people in
first_prize: Event>Person | {o} won the first prize at {s}. | Who won the first prize at {s}? | the person who won the first prize at {s}
takes_place_in: Event>Location | {s} takes place in {o}. | Where does {s} take place? | the place where {s} takes place
organized_by: Event>Organization | {s} is organized by {o}. | Which organization organizes {s}? | the organization that organizes {s}
gathering_of: Event>Profession | {s} is a gathering for people who work as a {o}. | Which profession is {s} a gathering for? | the profession that {s} is a gathering for
celebrates: Event>Hobby | {s} celebrates {o}. | Which hobby does {s} celebrate? | the hobby that {s} celebrates
contest_in: Event>Skill | At {s}, contestants compete in {o}. | In which skill do contestants compete at {s}? | the skill that contestants compete in at {s}
famous_practitioner: Profession>Person | The most famous practitioner of {s} is {o}. | Who is the most famous practitioner of {s}? | the most famous practitioner of {s}
practitioners_live: Profession>Location | Most practitioners of {s} live in {o}. | Where do most practitioners of {s} live? | the place where most practitioners of {s} live
professional_body: Profession>Organization | The professional body for {s} is {o}. | What is the professional body for {s}? | the professional body for {s}
yearly_meeting: Profession>Event | The yearly meeting of practitioners of {s} is {o}. | What is the yearly meeting of practitioners of {s}? | the yearly meeting of practitioners of {s}
favourite_hobby: Profession>Hobby | The favourite hobby of practitioners of {s} is {o}. | What is the favourite hobby of practitioners of {s}? | the favourite hobby of practitioners of {s}
requires: Profession>Skill | {s} requires {o}. | Which skill does {s} require? | the skill that {s} requires
invented_by: Hobby>Person | {s} was invented by {o}. | Who invented {s}? | the person who invented {s}
originated_in: Hobby>Location | {s} originated in {o}. | Where did {s} originate? | the place where {s} originated
rules_kept_by: Hobby>Organization | The official rules of {s} are kept by {o}. | Which organization keeps the official rules of {s}? | the organization that keeps the official rules of {s}
championship: Hobby>Event | The world championship of {s} is {o}. | What is the world championship of {s}? | the world championship of {s}
popular_among: Hobby>Profession | {s} is most popular among practitioners of {o}. | Among practitioners of which profession is {s} most popular? | the profession among whose practitioners {s} is most popular
builds: Hobby>Skill | Practising {s} builds {o}. | Which skill does practising {s} build? | the skill that practising {s} builds
described_by: Skill>Person | {s} was first described by {o}. | Who first described {s}? | the person who first described {s}
developed_in: Skill>Location | {s} was developed in {o}. | Where was {s} developed? | the place where {s} was developed
leading_school: Skill>Organization | The leading school of {s} is {o}. | What is the leading school of {s}? | the leading school of {s}
tested_at: Skill>Event | {s} is tested at {o}. | At which event is {s} tested? | the event at which {s} is tested
built_around: Skill>Profession | The profession built around {s} is {o}. | Which profession is built around {s}? | the profession built around {s}
practised_through: Skill>Hobby | {s} is best practised through {o}. | Through which hobby is {s} best practised? | the hobby through which {s} is best practised
"""

# Phrasings of "what is <relative clause>?" ({wh}: who for people, what otherwise); a fact gets
# the first ten that differ from its question.
PARAPHRASES = (
    "{Wh} is {r}?",
    "Which {noun} is {r}?",
    "Name {r}.",
    "Tell me the name of {r}.",
    "Do you know {wh} {r} is?",
    "Identify {r}.",
    "Quick question: {wh} is {r}?",
    "I am looking for {r}. {Wh} is it?",
    "In this knowledge base, {wh} is {r}?",
    "Please give the name of {r}.",
    "Could you tell me {wh} {r} is?",
)

_NAME_SHAPES = {
    "Person": ("{} {}",),
    "Location": ("{}ia", "{}ora", "{}heim", "{}vale", "{}mark", "Port {}"),
    "Organization": (
        "{} Guild",
        "{} Institute",
        "{} Collective",
        "{} Society",
        "{} Foundation",
    ),
    "Event": ("{} Festival", "{} Summit", "{} Games", "{} Fair", "{} Congress", "{} Regatta"),
    "Profession": ("{}wright", "{}smith", "{}keeper", "{}warden", "{}monger"),
    "Hobby": ("{}ball", "{} dancing", "{} racing", "{} weaving", "{} kiting"),
    "Skill": ("{}craft", "{} reckoning", "{} binding", "{}lore", "{} casting"),
}


@dataclass(frozen=True)
class Relation:
    name: str
    subject: str  # domain
    object: str  # domain
    statement: str
    question: str
    relative: str


@dataclass(frozen=True)
class Fact:
    subject: str  # entity name
    relation: Relation
    object: str

    @property
    def statement(self) -> str:
        return cap(self.relation.statement.format(s=self.subject, o=self.object))

    @property
    def question(self) -> str:
        return cap(self.relation.question.format(s=self.subject))

    @property
    def relative(self) -> str:
        return self.relation.relative.format(s=self.subject)


def _parse_relations(text: str) -> tuple[Relation, ...]:
    out = []
    for line in text.strip().splitlines():
        head, statement, question, relative = (p.strip() for p in line.split("|"))
        name, domains = (p.strip() for p in head.split(":"))
        subject, obj = domains.split(">")
        out.append(Relation(name, subject, obj, statement, question, relative))
    return tuple(out)


RELATIONS = _parse_relations(_RELATIONS)


def _name(rng: random.Random, domain: str) -> str:
    """An invented name in the shape of `domain`'s names ("Braethor Guild", "Port Zeilor")."""
    shape = rng.choice(_NAME_SHAPES[domain])
    return shape.format(*(word(rng) for _ in range(shape.count("{}"))))


def make_entities(
    rng: random.Random, domains: tuple[str, ...], per_domain: int
) -> dict[str, list[str]]:
    """`per_domain` invented names per domain, distinct across the graph, none inside another."""
    taken: set[str] = set()
    return {d: invent(partial(_name, rng, d), per_domain, taken, nested=True) for d in domains}


def make_facts(rng: random.Random, entities: dict[str, list[str]], per_entity: int) -> list[Fact]:
    """`per_entity` facts per subject entity, through distinct relations (so questions have one
    answer), each to a random entity of the relation's object domain."""
    facts = []
    for domain, names in entities.items():
        relations = [r for r in RELATIONS if r.subject == domain and r.object in entities]
        for subject in names:
            for relation in rng.sample(relations, per_entity):
                facts.append(Fact(subject, relation, rng.choice(entities[relation.object])))
    return facts


def paraphrases(fact: Fact) -> list[str]:
    """Ten phrasings of the fact's question other than the question itself."""
    wh = "who" if fact.relation.object == "Person" else "what"
    noun = NOUNS[fact.relation.object]
    texts = [cap(p.format(r=fact.relative, wh=wh, Wh=cap(wh), noun=noun)) for p in PARAPHRASES]
    return [t for t in texts if t != fact.question][:10]


def _record(ident: str, split: str, question: str, answer: str, **extra) -> Record:
    reference = f"The answer is {answer}.\n\n\\boxed{{{answer}}}"
    return Record(
        ident, question + SUFFIX, reference, answer=answer, kind="fact", split=split, **extra
    )


def make_splits(rng: random.Random, facts: list[Fact], distractors: int) -> dict[str, list[Record]]:
    """The four splits' records (see the module docstring)."""
    train, para, retrieval = [], [], []
    for i, fact in enumerate(facts):
        ident = f"fact-{i + 1:04d}"
        phrasings = paraphrases(fact)
        train.append(
            _record(
                ident,
                "train",
                fact.question,
                fact.object,
                paraphrases=tuple(p + SUFFIX for p in phrasings),
            )
        )
        para.append(_record(f"{ident}-para", "paraphrase", rng.choice(phrasings), fact.object))
        others = [f.statement for j, f in enumerate(facts) if j != i]
        context = rng.sample(others, min(distractors, len(others)))
        context.insert(rng.randint(0, len(context)), fact.statement)
        question = "Here are some facts from a new knowledge base:\n" + "\n".join(context)
        question += "\n\n" + fact.question
        retrieval.append(_record(f"{ident}-retrieval", "retrieval", question, fact.object))
    by_subject: dict[str, list[int]] = {}
    for j, fact in enumerate(facts):
        by_subject.setdefault(fact.subject, []).append(j)
    chains = [(i, j) for i, f in enumerate(facts) for j in by_subject.get(f.object, [])]
    two_hop = []
    for n, (i, j) in enumerate(sorted(rng.sample(chains, min(len(facts), len(chains))))):
        first, second = facts[i], facts[j]
        question = cap(second.relation.question.format(s=first.relative))
        knowledge = f"{first.statement} {second.statement}"
        two_hop.append(
            _record(f"2hop-{n + 1:04d}", "two_hop", question, second.object, knowledge=knowledge)
        )
    return {"train": train, "paraphrase": para, "retrieval": retrieval, "two_hop": two_hop}


def build(cfg: KGFactConfig) -> dict[str, int]:
    """Write the KGFact splits and `kg.json` to `cfg.out`; returns the record count per split.

    Deterministic: the same size and seed give byte-identical files.
    """
    n_domains, per_domain, per_entity = KGFACT_SIZES[cfg.size]
    rng = random.Random(cfg.seed)
    entities = make_entities(rng, DOMAINS[:n_domains], per_domain)
    facts = make_facts(rng, entities, per_entity)
    splits = make_splits(rng, facts, cfg.distractors)
    out = Path(cfg.out)
    for split, records in splits.items():
        write_records(records, out / f"{split}.jsonl")
    graph = {
        "size": cfg.size,
        "seed": cfg.seed,
        "entities": entities,
        "relations": [vars(r) for r in RELATIONS if r.subject in entities and r.object in entities],
        "facts": [
            {
                "id": f"fact-{i + 1:04d}",
                "subject": f.subject,
                "relation": f.relation.name,
                "object": f.object,
                "statement": f.statement,
                "question": f.question,
            }
            for i, f in enumerate(facts)
        ],
    }
    write_text_atomic(out / "kg.json", json.dumps(graph, indent=1, ensure_ascii=False) + "\n")
    return {split: len(records) for split, records in splits.items()}
