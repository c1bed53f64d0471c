"""Answer extraction and matching, shared by data (default answers), generate (rejection sampling)
and evaluate (scoring).

Methods, tried in the order given (default `("boxed", "number")`):
- `boxed`: the content of the last `\\boxed{...}`, brace-matched (nested braces kept);
- `number`: the last number in the text (sign, thousands separators and decimals understood);
- `contains`: used only by `is_correct`: the expected answer appears in the text as a whole token;
- `strict`: used only by `is_correct`, and alone: the content of the last `\\boxed{}` when the text
  has one (exact after `normalize_answer`), else the expected answer as a whole token in the FIRST
  sentence with no negation cue before it there (`strict_match`).

Why `strict`: `contains` is lenient on purpose (a small chat model answers in a sentence), so it
also counts "Lina does not actually have a pet lizard" and "I'm not sure, but maybe a lizard" for
"lizard", and an answer buried after a wrong one. A model that knows a fact states it up front:
the first sentence is where a direct answer sits, and a negation or hedge before the gold there
("not", "n't", "no", "never", "neither", "nor", "none", "nothing", "cannot", "unknown",
"unsure", "uncertain", "unclear"; "I don't know", "I'm not sure" and "there is no information"
contain one) turns it into a non-answer. A box, when the model writes one, is its own statement of
the answer and is taken as exact. The check errs toward "wrong": a cue anywhere before the gold
in that sentence counts ("Although not famous, Lina has a pet lizard" fails), and a negation
after the gold is not seen ("a lizard, not a dog" passes, as it should; "a lizard is not what she
has" passes too). Sentences end at `.`, `!` or `?` followed by a space, and at line breaks; a
period inside a number ("3.5") or after an abbreviation ("Dr.", "e.g.", "U.S.", an initial "J.")
does not end one.
"""

from __future__ import annotations

import re

METHODS = ("boxed", "number", "contains", "strict")
# A sign counts only where it cannot be a hyphen or an operator ("3-5", "x-1", "(2)-1"): at the
# start or after a space or punctuation. Thousands groups must be exactly three digits.
_SIGN = r"(?:(?<![\w.)\]}])[-+])?"
_NUMBER = re.compile(_SIGN + r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)")
# A candidate sentence end: terminal punctuation (closing quotes or brackets kept with it) and the
# space after it, or a line break. `sentences` skips the ones after an abbreviation.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\s*\n\s*")
_TITLES = frozenset("dr mr mrs ms prof st jr sr mt vs etc approx".split())
_NEGATION = re.compile(
    r"\b(?:not|no|never|neither|nor|none|nothing|cannot|unknown|unsure|uncertain|unclear)\b"
    r"|n['\u2019]t\b"
)


def check_methods(methods: list[str]) -> list[str]:
    """A config's `answer_methods`, checked (the one check of the generate, train and evaluate
    configs): known names, at least one; a comma list from a flag ("boxed,contains") is split."""
    split = [m for ms in methods for m in ms.split(",") if m]
    if not split or any(m not in METHODS for m in split):
        raise ValueError(
            f"option 'answer_methods': expected some of {', '.join(METHODS)}, got {methods}"
        )
    if "strict" in split and len(split) > 1:
        # any other method would accept what strict refuses ("I'm not sure, maybe 4": number)
        raise ValueError(f"option 'answer_methods': strict is a whole check, use it alone: {split}")
    return split


def last_boxed(text: str) -> str | None:
    """Content of the last non-empty `\\boxed{...}` with balanced braces, or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i = start + len("\\boxed{")
        depth = 1
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    found = text[i:j].strip()
                    return found or None  # an empty box says nothing: let `number` try
        start = text.rfind("\\boxed{", 0, start)  # unclosed: try an earlier box
    return None


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised (`1,234.50` -> `1234.5`, `+3` -> `3`), or None."""
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def normalize_number(s: str) -> str:
    s = s.replace(",", "").lstrip("+")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
        if s.startswith("-."):
            s = "-0" + s[1:]
        elif s.startswith("."):
            s = "0" + s
    if s in ("-0", ""):
        s = "0"
    return s


def extract_answer(text: str, methods: tuple[str, ...] = ("boxed", "number")) -> str | None:
    """The answer in `text` by the first method that finds one, or None."""
    for method in methods:
        if method == "boxed":
            found = last_boxed(text)
        elif method == "number":
            found = last_number(text)
        elif method in ("contains", "strict"):
            continue  # checks, not extractors: see `is_correct`
        else:
            raise ValueError(f"unknown answer method {method!r} (expected one of {METHODS})")
        if found is not None:
            return found
    return None


def normalize_answer(s: str) -> str:
    """Canonical form for comparison: whitespace collapsed, case folded, outer `$`/`.` dropped,
    `\\text{...}` unwrapped, and numbers normalised."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = " ".join(s.split()).rstrip(".").casefold()
    return normalize_number(s) if _NUMBER.fullmatch(s) else s


def sentences(text: str) -> list[str]:
    """`text` split into sentences (stripped, none empty): see the module docstring for where a
    sentence ends."""
    out, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if text[end.start()] == "." and _abbreviation(text[start : end.start()]):
            continue
        out.append(text[start : end.end()].strip())
        start = end.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _abbreviation(before: str) -> bool:
    """Is the word before a period an abbreviation: a title ("Dr"), an initial ("J") or dotted
    letters ("e.g", "U.S"; not "3.5")?"""
    words = before.split()
    word = words[-1].lstrip("(\"'") if words else ""
    return word.casefold() in _TITLES or re.fullmatch(r"[a-z](?:\.[a-z])*", word, re.I) is not None


def _find(text: str, want: str) -> re.Match | None:
    """The first whole-token occurrence of `want` (already normalised) in `text`, compared with
    whitespace collapsed and case folded: "5" is not in "15", "cat" is not in "catalog", "1.5" is
    not in "1.55"."""
    if want == "":
        return None
    pattern = r"(?<![\w.])" + re.escape(want) + r"(?![\w]|\.\d)"
    return re.search(pattern, " ".join(text.split()).casefold())


def affirms(sentence: str, want: str) -> bool:
    """Does `sentence` state `want` (normalised): as a whole token, with no negation cue before it
    in the sentence?"""
    found = _find(sentence, want)
    if found is None:
        return False
    before = " ".join(sentence.split()).casefold()[: found.start()]
    return _NEGATION.search(before) is None


def strict_match(text: str, expected: str) -> bool:
    """The `strict` check: the last `\\boxed{}` equals `expected` when there is one, else the first
    sentence affirms it (the module docstring says why)."""
    want = normalize_answer(expected)
    boxed = last_boxed(text)
    if boxed is not None:
        return normalize_answer(boxed) == want
    first = sentences(text)
    return bool(first) and affirms(first[0], want)


def is_correct(text: str, expected: str, methods: tuple[str, ...] = ("boxed", "number")) -> bool:
    """Does the answer extracted from `text` equal `expected` (after normalisation)?

    With `contains` among the methods, a text that contains the expected answer also counts. With
    `strict`, `strict_match` alone decides.
    """
    if "strict" in methods:
        return strict_match(text, expected)
    want = normalize_answer(expected)
    got = extract_answer(text, methods)
    if got is not None and normalize_answer(got) == want:
        return True
    return "contains" in methods and _find(text, want) is not None
