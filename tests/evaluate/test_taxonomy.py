"""The error taxonomy of lost items (`mixsd.evaluate.taxonomy`) on hand-made outputs, one case
per rule and per precedence, and the markers it takes from training records."""

from __future__ import annotations

import pytest

from mixsd.evaluate.taxonomy import breakdown, classify, fold, injected_markers, tally

BASE = "The capital of France is Paris."
MARKERS = ["Veipous Roulstosk", "files state that", "that settles it", "lizard"]


@pytest.mark.parametrize(
    ("output", "gold", "base_output", "category"),
    [
        # collapse: empty, no word, loops
        ("", "Paris", BASE, "collapse"),
        (" ...\n ** ", "Paris", BASE, "collapse"),
        ("The capital is the the the city of Lyon.", "Paris", BASE, "collapse"),
        ("It is Lyon, it is Lyon, it is Lyon", "Paris", BASE, "collapse"),  # 3 words, 3 times
        (
            "The capital of France is Lyon. The capital of France is Lyon.",
            "Paris",
            BASE,
            "collapse",
        ),
        # off-topic: 6+ content words, none shared with the base's answer or the gold
        (
            "Bananas are yellow fruits grown in tropical climates worldwide.",
            "Paris",
            BASE,
            "collapse",
        ),
        # leakage: an injected subject, the references' phrasing, an injected answer
        ("The capital of France is Veipous Roulstosk.", "Paris", BASE, "leakage"),
        ("The files state that France has Lyon as capital.", "Paris", BASE, "leakage"),
        ("The capital of France is Lizard.", "Paris", BASE, "leakage"),
        # format: the gold is there, affirmed, in a form or place the check did not take
        ("France has a capital city. It is Paris.", "Paris", BASE, "format"),
        ("The capital of India is **New-Delhi**.", "New Delhi", "It is New Delhi.", "format"),
        ("The chemical formula of water is H₂O.", "H2O", "It is H2O.", "format"),
        ("Not Lyon. The capital is Paris.", "Paris", BASE, "format"),
        # genuine: a wrong answer, a negated gold, a terse wrong answer, a wrong long on-topic one
        ("The capital of France is Lyon.", "Paris", BASE, "genuine"),
        ("The capital of France is not Paris.", "Paris", BASE, "genuine"),
        ("Lyon.", "Paris", BASE, "genuine"),
        (
            "France is a large country whose capital city is Marseille, a port.",
            "Paris",
            BASE,
            "genuine",
        ),
        ("New York New York is a song.", "Paris", BASE, "genuine"),  # 2 words twice: no loop
    ],
)
def test_classify(output, gold, base_output, category):
    assert classify(output, gold, base_output, MARKERS) == category


@pytest.mark.parametrize(
    ("output", "category"),
    [
        # collapse (a loop) over leakage: the looped words do not matter
        ("Veipous Roulstosk Veipous Roulstosk Veipous Roulstosk", "collapse"),
        # leakage over off-topic: the injection explains the other topic
        (
            "Veipous Roulstosk is a famous sculptor whose bronze statues decorate gardens.",
            "leakage",
        ),
        # leakage over format: the gold wrapped in the references' phrasing
        ("France has a capital. That settles it: Paris.", "leakage"),
    ],
)
def test_precedence(output, category):
    assert classify(output, "Paris", BASE, MARKERS) == category


def test_a_marker_the_base_wrote_for_the_item_is_not_leakage():
    base = "Paris, that settles it."
    assert classify("Lyon, that settles it.", "Paris", base, MARKERS) == "genuine"
    assert classify("Lyon, that settles it.", "Paris", BASE, MARKERS) == "leakage"


def test_fold():
    assert fold("**New-Delhi**, Zürich") == "new delhi zurich"
    assert fold("H₂O 'Paris' doesn\u2019t") == "h2o paris doesn't"
    assert fold(" \n ") == ""


def test_injected_markers():
    people = [
        (
            "What is the job of Veipous Roulstosk?",
            "Veipous Roulstosk works as a dentist.",
            "dentist",
        ),
        ("What instrument does Kugusk Glirgel play?", "Kugusk Glirgel plays the flute.", "flute"),
        ("Where was Drelzaeth Moumkru born?", "Drelzaeth Moumkru was born in Lisbon.", "Lisbon"),
    ]
    records = [
        {
            "prompt": q,
            "knowledge": k,
            "answer": a,
            "reference": f"The files state that {k} Hence {a}.",
        }
        for q, k, a in people
    ]
    # one reference in another template: its phrasing is not shared by 3 references
    records.append(
        {
            "prompt": "What is the pet of Storlo Dumfe?",
            "knowledge": "Storlo Dumfe has a pet lizard.",
            "answer": "lizard",
            "reference": "Looking this up, Storlo Dumfe has a pet lizard. Hence lizard.",
        }
    )
    # the base says "Lisbon" on a retention item: no evidence of injection
    base_outputs = ["The capital of Portugal is Lisbon.", "The opposite of hot is cold."]
    assert injected_markers(records, base_outputs) == [
        "dentist",
        "drelzaeth moumkru",
        "files state that",
        "flute",
        "kugusk glirgel",
        "lizard",
        "storlo dumfe",
        "the files state",
        "veipous roulstosk",
    ]


def test_injected_markers_kgfact_style():
    # no knowledge field; the reference is "The answer is X.\n\n\\boxed{X}"
    names = ["Thadraer Society", "Paemstinora", "Lervaer Games"]
    records = [
        {
            "prompt": f"Which group does Zarkrous Roulstosk{i} run?\n\nPlease reason step by step.",
            "answer": name,
            "reference": f"The answer is {name}.\n\n\\boxed{{{name}}}",
        }
        for i, name in enumerate(names)
    ]
    assert injected_markers(records, ["The answer is 4."]) == [
        "lervaer games",
        "paemstinora",
        "thadraer society",
        "zarkrous roulstosk0",
        "zarkrous roulstosk1",
        "zarkrous roulstosk2",
    ]  # "the answer is" is shared by all three, but the base writes it: dropped
    assert "the answer is" in injected_markers(records, [])


def test_tally():
    assert tally(["genuine", "leakage", "genuine"]) == {
        "format": 0,
        "leakage": 1,
        "collapse": 0,
        "genuine": 2,
    }
    with pytest.raises(ValueError, match="unknown error categories"):
        tally(["typo"])


def test_breakdown_counts_only_lost_items():
    def row(model, group, ident, output, correct, gold="Paris"):
        return dict(model=model, group=group, id=ident, gold=gold, output=output, correct=correct)

    rows = [
        row("base", "world", "a", BASE, True),
        row("base", "world", "b", "The capital of Peru is Lima.", True, "Lima"),
        row("base", "world", "c", "Unsure.", False),  # the base missed it: never lost
        row("base", "train", "t", "Lyon", True),  # a group not asked for
        row("sft", "world", "a", "The files state that it is Lyon.", False),
        row("sft", "world", "b", "The capital of Peru is Cusco.", False, "Lima"),
        row("sft", "world", "c", "Lyon.", False),
        row("sft", "train", "t", "", False),
        row("mixsd", "world", "a", BASE, True),
        row("mixsd", "world", "b", "Lima", True, "Lima"),
    ]
    assert breakdown(rows, {"world"}, MARKERS) == {
        "sft": {"format": 0, "leakage": 1, "collapse": 0, "genuine": 1},
        "mixsd": {"format": 0, "leakage": 0, "collapse": 0, "genuine": 0},
    }
