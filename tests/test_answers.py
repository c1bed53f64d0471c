"""Answer extraction and matching (`mixsd.answers`) on the edge cases scoring depends on."""

from __future__ import annotations

import pytest

from mixsd.answers import (
    check_methods,
    extract_answer,
    is_correct,
    last_boxed,
    last_number,
    normalize_answer,
    sentences,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces kept whole
        (r"\boxed{a{b{c}}d}", "a{b{c}}d"),  # deeper nesting
        (r"first \boxed{1} then \boxed{2}", "2"),  # several boxes: the last
        (r"\boxed{ 7 }", "7"),  # padding stripped
        (r"\boxed{3} and an unclosed \boxed{4", "3"),  # unclosed last box: an earlier closed one
        (r"\boxed{\text{Paris}}", r"\text{Paris}"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text", ["no box here, 12", r"\boxed{5", r"\boxed 5", ""])
def test_last_boxed_none(text):
    assert last_boxed(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the total is 12 and then 13", "13"),
        ("it drops to -3.50 today", "-3.5"),  # sign kept, trailing zeros dropped
        ("+7", "7"),  # plus sign dropped
        ("x = 1,234,567.00", "1234567"),  # thousands separators and zero decimals
        ("about .5 of it", "0.5"),
        ("-.25", "-0.25"),
        ("-0.00", "0"),  # negative zero is zero
        ("0.120", "0.12"),
        ("The answer is 5.", "5"),  # sentence full stop is not a decimal point
        ("12,345th visitor", "12345"),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_last_number_none():
    assert last_number("no digits at all") is None


def test_extract_answer_prefers_box_then_falls_back_to_number():
    assert extract_answer(r"3 apples, \boxed{4} pears, 5 plums") == "4"
    assert extract_answer("3 apples and 5 plums") == "5"
    assert extract_answer(r"3 apples and 5 plums \boxed{6", ("boxed", "number")) == "6"
    assert extract_answer("3 apples and 5 plums", ("boxed",)) is None
    assert extract_answer(r"\boxed{7} and 9", ("number", "boxed")) == "9"  # order is respected
    assert extract_answer("nothing") is None
    with pytest.raises(ValueError, match="unknown answer method"):
        extract_answer("x", ("regex",))


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (r"\text{Paris}", "paris"),
        (r"  \text{ New   York } ", "new york"),
        ("$1,000$", "1000"),
        ("Paris.", "paris"),
        ("5.0", "5"),
        ("-005", "-005"),  # only separators, signs and decimals are normalised, not leading zeros
    ],
)
def test_normalize_answer(raw, canonical):
    assert normalize_answer(raw) == canonical


def test_is_correct():
    assert is_correct(r"The answer is Paris.\n\n\boxed{\text{Paris}}", "paris")
    assert is_correct(r"\boxed{1,000}", "1000")
    assert is_correct("so it is 12.0", "12")
    assert not is_correct(r"\boxed{13}", "12")
    assert not is_correct("no answer", "12")
    # contains: only when asked for
    assert not is_correct("the capital is Paris", "Paris", ("boxed",))
    assert is_correct("the capital is Paris", "Paris", ("boxed", "contains"))
    assert not is_correct("anything", "", ("contains",))


def test_bad_thousands_group_is_not_split():
    assert last_number("1,2345") in ("12345", "2345")


def test_empty_box_falls_back():
    assert extract_answer(r"\boxed{} so 5") == "5"


def test_contains_respects_number_boundaries():
    assert not is_correct("the answer is 15", "5", ("contains",))


@pytest.mark.parametrize(
    ("text", "number"),
    [("pages 3-5", "5"), ("10-3", "3"), ("x = -4", "-4"), ("(-2.50)", "-2.5"), ("f(x)-1", "1")],
)
def test_hyphens_are_not_minus_signs(text, number):
    assert last_number(text) == number


def test_contains_matches_whole_tokens():
    assert is_correct("so it is Paris, France", "paris", ("contains",))
    assert not is_correct("a catalog", "cat", ("contains",))
    assert is_correct("total: 1.5 kg", "1.5", ("contains",))
    assert not is_correct("total: 1.55 kg", "1.5", ("contains",))


@pytest.mark.parametrize(
    ("text", "gold", "strict", "contains"),
    [
        ("Lina has a pet lizard.", "lizard", True, True),
        # the case `contains` gets wrong: the gold, negated
        ("Lina does not actually have a pet lizard.", "lizard", False, True),
        ("Lina doesn\u2019t have a lizard.", "lizard", False, True),  # curly apostrophe
        ("I'm not sure, but maybe a lizard.", "lizard", False, True),
        ("I don't know. Maybe a lizard.", "lizard", False, True),  # the hedge is the first sentence
        ("There is no information about Lina's lizard.", "lizard", False, True),
        ("Her pet is unknown; perhaps a lizard.", "lizard", False, True),
        ("Lina has a lizard, not a dog.", "lizard", True, True),  # negation after the gold
        # the first sentence ends after the number, not inside it
        ("The answer is 3.5. Not 4.", "3.5", True, True),
        ("The answer is 4. Not 3.5.", "3.5", False, True),
        # the gold only in the second sentence
        ("Lina has a pet dog. Her sister has a lizard.", "lizard", False, True),
        ("Lina has a pet dog.\nLizard.", "lizard", False, True),  # a line break ends a sentence
        # abbreviations do not end the first sentence
        ("Dr. Smith was born in Lisbon.", "Lisbon", True, True),
        ("Pets, e.g. a lizard, are hers.", "lizard", True, True),
        ("J. R. R. Tolkien wrote it.", "Tolkien", True, True),
        ("The U.S. capital is Washington.", "Washington", True, True),
        # a box decides alone, exactly
        (r"Not sure. \boxed{lizard}", "lizard", True, True),
        (r"Lina has a lizard. \boxed{lizard, maybe}", "lizard", False, True),
        (r"\boxed{\text{Paris}}", "paris", True, True),
        # case-insensitive, whole words
        ("PARIS is the capital.", "Paris", True, True),
        ("She has a catalog.", "cat", False, False),
        ("The total is 15.", "5", False, False),
        ("", "lizard", False, False),
    ],
)
def test_strict_against_contains(text, gold, strict, contains):
    assert is_correct(text, gold, ("strict",)) is strict
    assert is_correct(text, gold, ("contains",)) is contains


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("It is 3.5 kg. Then 4.", ["It is 3.5 kg.", "Then 4."]),
        ('He said "yes." Then left.', ['He said "yes."', "Then left."]),
        ("Mr. and Mrs. Lee, etc. are here.", ["Mr. and Mrs. Lee, etc. are here."]),
        ("Line one\n\nLine two", ["Line one", "Line two"]),
        ("Wait... what?", ["Wait...", "what?"]),
        ("  ", []),
    ],
)
def test_sentences(text, split):
    assert sentences(text) == split


def test_strict_is_a_config_method_used_alone():
    assert check_methods(["strict"]) == ["strict"]
    with pytest.raises(ValueError, match="strict is a whole check"):
        check_methods(["boxed,strict"])
    # extraction skips it, as it skips contains
    assert extract_answer("so 5", ("strict", "number")) == "5"
