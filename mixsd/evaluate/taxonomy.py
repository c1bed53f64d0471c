"""Why a retention item was lost: an error taxonomy, after the authors' `eval/error_analysis.py`.

A lost item is one the base answered correctly and a checkpoint does not. Each gets one of four
categories, by the first rule that holds:

1. `collapse` (broken): the output is empty (no letter or digit) or loops: a unit of 1-3 words
   said three times back to back, or of 4-8 words twice ("is a dog is a dog is a dog").
2. `leakage`: the output carries an injected marker (below) that the base's own output for the
   item does not: the training facts leaking into a question about something else.
3. `collapse` (off-topic): at least 6 content words and none shared with the base's output or
   the gold: a text about something else, not a terse wrong answer ("Sydney." stays genuine).
4. `format`: the gold is in the output, affirmed (`mixsd.answers.affirms`: not negated) in some
   sentence, once both are folded (case, accents, punctuation and markup dropped: "New-Delhi",
   "**Paris**", "H₂O" for "H2O"); lost anyway, the answer was there but not in the form or place
   the check wants (no box for `boxed`, past the first sentence for `strict`).
5. `genuine`: a plain wrong answer.

Why this order: a loop or an empty output is a decoding failure whatever words it holds; a leak
explains an off-topic text or a changed form (a gold wrapped in the references' phrasing is the
references' doing), so it comes before both; off-topic and format cannot both hold (off-topic
shares no word with the gold).

How it differs from the authors': their held-out benchmarks want `\\boxed{}` after reasoning, so
their `format` is "no parseable box" (checked first: nothing else can be read from such a row)
and their `collapse` is "a box with no reasoning". mixsd's suites are short closed-book answers
in a sentence, so `format` is the gold present in the wrong form, and `collapse` is a broken or
off-topic output. Their leakage matches the training facts' subjects and answers of at least two
words (a filter against common words); `injected_markers` takes the subjects, the answers and
the references' phrasing, and filters common words by the base: a marker the base itself writes
on the retention suites is no evidence of injection (the demo's answers are single common words
by design, "Lisbon", "dentist", which the two-word filter would drop).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from mixsd.answers import affirms, sentences

CATEGORIES = ("format", "leakage", "collapse", "genuine")
# Content words for the off-topic rule: 4+ letters, outside these function words, compared by
# their first 4 letters (a crude stem that errs toward "on topic": "hours" meets "hour").
_STOP = frozenset(
    "that this with from have what which there their they been were also into than then them "
    "these those some such when where will would about your more very only just here".split()
)
_OFF_TOPIC_WORDS = 6
# A subject: a run of capitalised words after a lowercase word or a comma (not a question's
# first word): "What is the job of Veipous Roulstosk?" -> "Veipous Roulstosk".
_SUBJECT = re.compile(r"(?<=[a-z,] )[A-Z][\w-]*(?: [A-Z][\w-]*)*")
_STYLE_N = 3  # style markers are word trigrams of the references' template text ...
_STYLE_MIN_REFERENCES = 3  # ... found in at least this many references


def fold(text: str) -> str:
    """`text` lowercased with accents, punctuation and markup dropped (apostrophes inside a word
    kept, for "n't"), words single-spaced: "**New-Delhi**, Zürich" -> "new delhi zurich",
    "H₂O" -> "h2o", "'Paris'" -> "paris"."""
    text = unicodedata.normalize("NFKD", text).replace("\u2019", "'")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w']|_|(?<!\w)'|'(?!\w)", " ", text).split())


def _has(folded: str, marker: str) -> bool:
    """Does `marker` occur in `folded` text as whole words?"""
    marker = fold(marker)
    return (
        bool(marker) and re.search(rf"(?<![\w']){re.escape(marker)}(?![\w'])", folded) is not None
    )


def _loops(words: list[str]) -> bool:
    """Does a unit of n words repeat back to back: three times for n <= 3, twice for 4 <= n <= 8?"""
    for n in range(1, 9):
        copies = 3 if n <= 3 else 2
        for i in range(len(words) - copies * n + 1):
            unit = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == unit for k in range(1, copies)):
                return True
    return False


def _stems(folded: str) -> set[str]:
    return {w[:4] for w in folded.split() if len(w) >= 4 and w.isalpha() and w not in _STOP}


def _off_topic(folded: str, base_output: str, gold: str) -> bool:
    """At least `_OFF_TOPIC_WORDS` content words, none shared with the base's output or the gold."""
    mine = _stems(folded)
    return len(mine) >= _OFF_TOPIC_WORDS and not mine & _stems(fold(f"{base_output} {gold}"))


def classify(output: str, gold: str, base_output: str, injected: Sequence[str]) -> str:
    """The category (one of `CATEGORIES`) of a lost item: a checkpoint's `output` for a question
    with answer `gold` that the base answered correctly with `base_output`; `injected` are the
    markers of what training put in (`injected_markers`). The rules, in order, are in the module
    docstring."""
    folded = fold(output)
    words = folded.split()
    if not words or _loops(words):
        return "collapse"
    base = fold(base_output)
    if any(_has(folded, m) and not _has(base, m) for m in injected):
        return "leakage"
    if _off_topic(folded, base_output, gold):
        return "collapse"
    want = fold(gold)
    if want and any(affirms(fold(s), want) for s in sentences(output)):
        return "format"
    return "genuine"


def _ngrams(words: list[str]) -> list[str]:
    return [" ".join(words[i : i + _STYLE_N]) for i in range(len(words) - _STYLE_N + 1)]


def injected_markers(records: Iterable[Mapping], base_outputs: Iterable[str]) -> list[str]:
    """What training put in, as markers for `classify`, from the training records (`prompt`,
    `reference`, `answer`, optional `knowledge`):
    - the answers (KGFact's invented names, the demo's words);
    - the subjects: capitalised runs in the prompts (`_SUBJECT`), the invented people;
    - the references' phrasing: word trigrams of each reference with its knowledge, answer and
      subjects cut out ("The files state that {c} That settles it: {o}." -> "the files state",
      "files state that", "that settles it"), kept when at least 3 references share them (the
      template, not one fact's words).
    A marker the base writes in any of `base_outputs` (its answers on the retention suites) is
    dropped: the base says it unprompted by training. Folded (`fold`), sorted, each once."""
    markers: set[str] = set()
    style: Counter[str] = Counter()
    for record in records:
        subjects = _SUBJECT.findall(record["prompt"])
        markers.update([record["answer"], *subjects])
        cut = [record.get("knowledge", ""), record["answer"], *subjects]
        template = record["reference"]
        for part in sorted(filter(None, cut), key=len, reverse=True):
            template = template.replace(part, "\n")
        style.update({g for piece in template.split("\n") for g in _ngrams(fold(piece).split())})
    markers.update(g for g, n in style.items() if n >= _STYLE_MIN_REFERENCES)
    base = [fold(o) for o in base_outputs]
    kept = {fold(m) for m in markers} - {""}
    return sorted(m for m in kept if not any(_has(b, m) for b in base))


def tally(labels: Iterable[str]) -> dict[str, int]:
    """Counts per category, every category present (0 when none), in `CATEGORIES` order."""
    counts = Counter(labels)
    unknown = set(counts) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown error categories {sorted(unknown)} (expected {CATEGORIES})")
    return {c: counts[c] for c in CATEGORIES}


def breakdown(
    rows: Iterable[Mapping], groups: Collection[str], injected: Sequence[str], base: str = "base"
) -> dict[str, dict[str, int]]:
    """Per model other than `base`: the tally of its lost items on `groups`. `rows` are
    `predictions.jsonl` rows (`model`, `group`, `id`, `gold`, `output`, `correct`); a lost item
    is one the base has correct and the model not."""
    rows = [r for r in rows if r["group"] in groups]
    right = {
        (r["group"], r["id"]): r["output"] for r in rows if r["model"] == base and r["correct"]
    }
    labels: dict[str, list[str]] = {}
    for r in rows:
        if r["model"] == base:
            continue
        mine = labels.setdefault(r["model"], [])
        key = (r["group"], r["id"])
        if key in right and not r["correct"]:
            mine.append(classify(r["output"], r["gold"], right[key], injected))
    return {model: tally(found) for model, found in labels.items()}
