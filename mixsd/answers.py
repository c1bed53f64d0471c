"""Answer extraction and matching, shared by data (default answers), generate (rejection sampling)
and evaluate (scoring).

Methods, tried in the order given (default `("boxed", "number")`):
- `boxed`: the content of the last `\\boxed{...}`, brace-matched (nested braces kept);
- `number`: the last number in the text (sign, thousands separators and decimals understood);
- `contains`: used only by `is_correct`: the expected answer appears in the text as a whole token.
"""

from __future__ import annotations

import re

METHODS = ("boxed", "number", "contains")
# A sign counts only where it cannot be a hyphen or an operator ("3-5", "x-1", "(2)-1"): at the
# start or after a space or punctuation. Thousands groups must be exactly three digits.
_SIGN = r"(?:(?<![\w.)\]}])[-+])?"
_NUMBER = re.compile(_SIGN + r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)")


def check_methods(methods: list[str]) -> list[str]:
    """A config's `answer_methods`, checked (the one check of the generate, train and evaluate
    configs): known names, at least one; a comma list from a flag ("boxed,contains") is split."""
    split = [m for ms in methods for m in ms.split(",") if m]
    if not split or any(m not in METHODS for m in split):
        raise ValueError(
            f"option 'answer_methods': expected some of {', '.join(METHODS)}, got {methods}"
        )
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
        elif method == "contains":
            continue
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


def is_correct(text: str, expected: str, methods: tuple[str, ...] = ("boxed", "number")) -> bool:
    """Does the answer extracted from `text` equal `expected` (after normalisation)?

    With `contains` among the methods, a text that contains the expected answer also counts.
    """
    want = normalize_answer(expected)
    got = extract_answer(text, methods)
    if got is not None and normalize_answer(got) == want:
        return True
    if "contains" not in methods or want == "":
        return False
    # whole-token containment: "5" is not in "15", "cat" is not in "catalog"
    pattern = r"(?<![\w.])" + re.escape(want) + r"(?![\w]|\.\d)"
    return re.search(pattern, " ".join(text.split()).casefold()) is not None
