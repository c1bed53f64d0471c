"""KGFunc: opaque digit operations named by letters, learnt from few-shot Input/Output examples.

Each operation maps a whole number to a whole number through its decimal digits (reverse them,
sum their triangular numbers, ...). A seeded shuffle names them with letters and holds some out.
Every question shows `shots` Input/Output examples of each letter it uses, then asks for one value.

Splits (one JSONL each, plus `functions.json` with the letter -> operation key):
- `train`: `per_op` single-operation questions per seen operation, e.g. `What is E(40712)?`;
- `compose`: chains of seen operations with offsets, e.g. `B(E(G(12345) + 500) - 200)`, whose
  reference works the chain out step by step;
- `heldout`: `per_op` single-operation questions per operation never seen in the other splits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from mixsd.data.config import KGFuncConfig
from mixsd.data.io import write_records, write_text_atomic
from mixsd.data.records import Record

SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: they read like digits
MAX_INPUT = 99_999


def _digits(n: int) -> list[int]:
    return [int(c) for c in str(n)]


def _from_digits(digits: list[int]) -> int:
    return int("".join(map(str, digits)))


def reverse(n: int) -> int:
    """Digits in reverse order (leading zeros drop): 12340 -> 4321."""
    return _from_digits(_digits(n)[::-1])


def digit_sum(n: int) -> int:
    """Sum of the digits: 12345 -> 15."""
    return sum(_digits(n))


def digit_square_sum(n: int) -> int:
    """Sum of the squared digits: 123 -> 14."""
    return sum(d * d for d in _digits(n))


def digit_triangular_sum(n: int) -> int:
    """Sum of the digits' triangular numbers d(d+1)/2: 123 -> 1 + 3 + 6 = 10."""
    return sum(d * (d + 1) // 2 for d in _digits(n))


def cumulative_max_sum(n: int) -> int:
    """Sum of the running maximum of the digits: 31415 -> 3 + 3 + 4 + 4 + 5 = 19."""
    total, best = 0, 0
    for d in _digits(n):
        best = max(best, d)
        total += best
    return total


def digit_convolution_dot(n: int) -> int:
    """Dot product of the digits with themselves reversed: 123 -> 1*3 + 2*2 + 3*1 = 10."""
    digits = _digits(n)
    return sum(a * b for a, b in zip(digits, reversed(digits), strict=True))


def position_weighted_sum(n: int) -> int:
    """Sum of each digit times its position from the left (from 1): 123 -> 1 + 4 + 9 = 14."""
    return sum(i * d for i, d in enumerate(_digits(n), start=1))


def sort_descending(n: int) -> int:
    """Digits sorted from largest to smallest: 31415 -> 54311."""
    return _from_digits(sorted(_digits(n), reverse=True))


def sort_ascending(n: int) -> int:
    """Digits sorted from smallest to largest (leading zeros drop): 30415 -> 1345."""
    return _from_digits(sorted(_digits(n)))


def rotate_left(n: int) -> int:
    """First digit moved to the end: 12345 -> 23451, 105 -> 51."""
    digits = _digits(n)
    return _from_digits(digits[1:] + digits[:1])


def complement(n: int) -> int:
    """Each digit d replaced by 9 - d: 12345 -> 87654, 90 -> 9."""
    return _from_digits([9 - d for d in _digits(n)])


def swap_pairs(n: int) -> int:
    """Adjacent digits swapped in pairs from the left: 12345 -> 21435."""
    digits = _digits(n)
    for i in range(0, len(digits) - 1, 2):
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    return _from_digits(digits)


OPERATIONS: dict[str, Callable[[int], int]] = {
    f.__name__: f
    for f in (
        reverse,
        digit_sum,
        digit_square_sum,
        digit_triangular_sum,
        cumulative_max_sum,
        digit_convolution_dot,
        position_weighted_sum,
        sort_descending,
        sort_ascending,
        rotate_left,
        complement,
        swap_pairs,
    )
}


def assign_letters(rng: random.Random, heldout: int) -> tuple[dict[str, str], list[str]]:
    """(letter -> operation name, held-out letters): a seeded naming and hold-out."""
    names = list(OPERATIONS)
    rng.shuffle(names)
    letters = sorted(rng.sample(LETTERS, len(names)))
    key = dict(zip(letters, names, strict=True))
    return key, sorted(rng.sample(letters, heldout))


def examples(rng: random.Random, op: Callable[[int], int], shots: int, avoid: int) -> list[str]:
    """`shots` Input/Output pairs of `op` on distinct random inputs other than `avoid`."""
    inputs = [x for x in rng.sample(range(MAX_INPUT + 1), shots + 1) if x != avoid][:shots]
    return [f"Input: {x}\nOutput: {op(x)}" for x in inputs]


def prompt(
    rng: random.Random,
    key: dict[str, str],
    letters: list[str],
    question: str,
    shots: int,
    avoid: int,
) -> str:
    """The few-shot prompt: examples of each letter in `letters`, then `question`."""
    named = letters[0] if len(letters) == 1 else ", ".join(letters[:-1]) + " and " + letters[-1]
    verb = "is an unknown operation" if len(letters) == 1 else "are unknown operations"
    blocks = [f"{named} {verb} on whole numbers."]
    for letter in letters:
        shown = examples(rng, OPERATIONS[key[letter]], shots, avoid)
        blocks.append(f"Examples of {letter}:\n" + "\n".join(shown))
    return "\n\n".join(blocks) + f"\n\nWhat is {question}?" + SUFFIX


def chain(
    rng: random.Random, key: dict[str, str], letters: list[str], x: int
) -> tuple[str, int, str]:
    """Apply `letters` innermost first, with a +/- offset between steps, to `x`.

    Returns (expression, value, worked steps), e.g. ("B(E(G(12345) + 500) - 200)", 23,
    "G(12345) = 54321. 54321 + 500 = 54821. ...") Offsets never make a value negative.
    """
    expr, value = f"{letters[0]}({x})", OPERATIONS[key[letters[0]]](x)
    steps = [f"{expr} = {value}."]
    for letter in letters[1:]:
        offset = rng.randrange(100, 1000, 100)
        sign = rng.choice("+-") if value >= offset else "+"
        shifted = value + offset if sign == "+" else value - offset
        steps.append(f"{value} {sign} {offset} = {shifted}.")
        value = OPERATIONS[key[letter]](shifted)
        steps.append(f"{letter}({shifted}) = {value}.")
        expr = f"{letter}({expr} {sign} {offset})"
    return expr, value, " ".join(steps)


def _reference(answer: int, worked: str = "") -> str:
    lead = worked + " " if worked else ""
    return f"{lead}The answer is {answer}.\n\n\\boxed{{{answer}}}"


def single_questions(
    rng: random.Random, key: dict[str, str], letters: list[str], cfg: KGFuncConfig, split: str
) -> list[Record]:
    """`cfg.per_op` questions on each letter, on distinct random inputs."""
    records = []
    for letter in letters:
        for k, x in enumerate(rng.sample(range(MAX_INPUT + 1), cfg.per_op), start=1):
            answer = OPERATIONS[key[letter]](x)
            text = prompt(rng, key, [letter], f"{letter}({x})", cfg.shots, x)
            ident = f"func-{letter}-{k:03d}"
            records.append(
                Record(
                    ident,
                    text,
                    _reference(answer),
                    answer=str(answer),
                    kind="function",
                    split=split,
                )
            )
    return records


def chain_questions(
    rng: random.Random, key: dict[str, str], letters: list[str], cfg: KGFuncConfig
) -> list[Record]:
    """`cfg.compositions` chains of 2 or 3 distinct letters on random inputs."""
    records = []
    for n in range(1, cfg.compositions + 1):
        used = rng.sample(letters, min(rng.choice((2, 3)), len(letters)))
        x = rng.randrange(MAX_INPUT + 1)
        expr, answer, worked = chain(rng, key, used, x)
        text = prompt(rng, key, sorted(used), expr, cfg.shots, x)
        records.append(
            Record(
                f"chain-{n:04d}",
                text,
                _reference(answer, worked),
                answer=str(answer),
                kind="function",
                split="compose",
            )
        )
    return records


def make_splits(cfg: KGFuncConfig) -> tuple[dict[str, str], list[str], dict[str, list[Record]]]:
    """The letter -> operation key, the held-out letters, and the records of each split (in
    memory: `build` writes them; evaluate's `kgfunc-heldout` suite reads them from here)."""
    rng = random.Random(cfg.seed)
    key, heldout = assign_letters(rng, cfg.heldout_ops)
    seen = [letter for letter in key if letter not in heldout]
    splits = {
        "train": single_questions(rng, key, seen, cfg, "train"),
        "compose": chain_questions(rng, key, seen, cfg),
        "heldout": single_questions(rng, key, heldout, cfg, "heldout"),
    }
    return key, heldout, splits


def build(cfg: KGFuncConfig) -> dict[str, int]:
    """Write the KGFunc splits and `functions.json` to `cfg.out`; returns the count per split.

    Deterministic: the same config gives byte-identical files.
    """
    key, heldout, splits = make_splits(cfg)
    out = Path(cfg.out)
    for split, records in splits.items():
        write_records(records, out / f"{split}.jsonl")
    functions = {
        letter: {
            "operation": name,
            "heldout": letter in heldout,
            "description": OPERATIONS[name].__doc__,
        }
        for letter, name in key.items()
    }
    write_text_atomic(out / "functions.json", json.dumps(functions, indent=1) + "\n")
    return {split: len(records) for split, records in splits.items()}
