"""What gets evaluated: the memorization splits of the input set and the held-out suites.

Memorization: the injected facts asked closed-book (no knowledge in context): `train` (the training
questions), `paraphrase` (the paraphrase split, else every `Record.paraphrases`), `two_hop` and
(KGFunc) `compose`.

Retention suites are read from LOCAL files in their usual public formats (nothing downloads):
- `gsm8k=PATH`: JSONL rows `{"question", "answer"}`, the answer ending in `#### N`;
- `math500=PATH`: JSONL rows `{"problem", "answer"}` (`solution` optional);
- `mmlu=PATH`: the original release's header-less CSV rows `question,A,B,C,D,answer` (a file, or a
  directory of them), or HF-style JSONL/Parquet rows `{"question", "choices": [4], "answer": 0-3}`;
- `jsonl=PATH`: generic JSONL rows `{"prompt", "answer"}` (`reference` optional: the full answer
  text, used as the Fisher's label), the prompt used verbatim, the suite named after the file;
plus the built-in data suites `world`, `language`, `arithmetic`, `commonsense` and `translation`
(see `PACKAGED`), and built-in suites made by the synthetic generators at their default sizes
(`NAME` or `NAME=SEED`, see `BUILTINS`): `kgfunc-heldout` (KGFunc questions on operations never
seen in training) and the toy world's held-out skills (`toy-known`: facts the toy base memorized
in pretraining; `toy-addition`, `toy-reversal`).

The data suites hold what a small chat model knows, selected on the base only, before any training
(a fixed protocol, not tuned toward a method): scripts/curate_suites.py answers a fixed candidate
pool with the base SmolLM2-135M-Instruct greedily under the demo's evaluate settings (its chat
template, 32 new tokens, `contains` scoring) in bfloat16 (`dtype: auto` on a bf16 CPU) and in
float32, and keeps the items it answers correctly in BOTH, so the files do not depend on the dtype;
no base-wrong item is kept. Retention is then the share of what the base knew that a model still
knows (the report also scores it only over the items the base gets right at run time).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from mixsd.data.records import Record
from mixsd.errors import MixsdError

BOX_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MC_INSTRUCTION = "\n\nAnswer with the letter of the correct option within \\boxed{}."
LETTERS = "ABCD"
MEMORIZATION_SPLITS = ("train", "paraphrase", "two_hop", "compose")
FORMATS = ("gsm8k", "math500", "mmlu", "jsonl")


@dataclass(frozen=True)
class Suite:
    """A named list of closed-book questions. `multiple_choice`: golds are letters A-D."""

    name: str
    records: list[Record]
    multiple_choice: bool = False


def memorization_splits(records: list[Record]) -> dict[str, list[Record]]:
    """The closed-book memorization splits of an input set, in `MEMORIZATION_SPLITS` order.

    Records without a split count as `train`. The `paraphrase` split is the input's own when it
    has one, else every `Record.paraphrases` of the training records (asked with the record's
    answer). Other splits (e.g. `retrieval`: knowledge in context) are not closed-book: left out.
    """
    out: dict[str, list[Record]] = {name: [] for name in MEMORIZATION_SPLITS}
    for r in records:
        split = r.split or "train"
        if split in out:
            out[split].append(r)
    if not out["paraphrase"]:
        out["paraphrase"] = [
            Record(f"{r.id}/p{k}", text, r.reference, answer=r.gold, split="paraphrase")
            for r in out["train"]
            for k, text in enumerate(r.paraphrases)
        ]
    return {name: rs for name, rs in out.items() if rs}


def load_input(path: str | Path) -> list[Record]:
    """The records of an input file, or of a KGFact/KGFunc dir's `<split>.jsonl` files."""
    from mixsd.data.io import load_records

    path = Path(path)
    if not path.exists():
        raise MixsdError(f"{path}: input set not found")
    if path.is_file():
        return load_records(path, need_reference=False)
    files = [path / f"{s}.jsonl" for s in MEMORIZATION_SPLITS if (path / f"{s}.jsonl").is_file()]
    if not files:
        raise MixsdError(
            f"{path}: expected train.jsonl (and paraphrase, two_hop, compose) in this dir"
        )
    return [
        r if r.split else replace(r, split=f.stem)
        for f in files
        for r in load_records(f, need_reference=False)
    ]


def load_suite(spec: str) -> Suite:
    """A suite from `FORMAT=PATH` or a built-in name (one-line MixsdError on anything wrong)."""
    name, sep, path = spec.partition("=")
    name = name.strip()
    if name in PACKAGED and not sep:
        return Suite(name, load_jsonl(PACKAGED[name]))
    if name in BUILTINS:
        if sep and not path.strip().isdigit():
            raise MixsdError(f"suite '{spec}': expected {name} or {name}=SEED (an integer)")
        return Suite(name, BUILTINS[name](int(path) if sep else 0))
    if not sep:
        raise MixsdError(
            f"suite '{spec}': expected FORMAT=PATH (FORMAT one of {', '.join(FORMATS)}) "
            f"or a built-in suite ({', '.join(PACKAGED)}; {', '.join(BUILTINS)}, optionally =SEED)"
        )
    if name not in FORMATS:
        raise MixsdError(
            f"suite '{spec}': unknown format '{name}' (expected one of {', '.join(FORMATS)})"
        )
    p = Path(path.strip())
    if not p.exists():
        raise MixsdError(
            f"{p}: {name} suite file not found (nothing is downloaded: give a local copy)"
        )
    loader = {"gsm8k": load_gsm8k, "math500": load_math500, "mmlu": load_mmlu, "jsonl": load_jsonl}
    records = loader[name](p)
    if not records:
        raise MixsdError(f"{p}: {name} suite is empty")
    return Suite(p.stem if name == "jsonl" else name, records, multiple_choice=name == "mmlu")


def load_gsm8k(path: Path) -> list[Record]:
    out = []
    for line, row in _jsonl(path):
        question, answer = _str(row, "question", path, line), _str(row, "answer", path, line)
        rationale, sep, final = answer.rpartition("####")
        if not sep or not final.strip():
            raise MixsdError(f"{path}:{line}: field 'answer': expected text ending in '#### N'")
        gold = final.strip().replace(",", "")
        reference = f"{rationale.strip()}\n\n\\boxed{{{gold}}}".lstrip()
        out.append(Record(f"gsm8k-{line}", question + BOX_INSTRUCTION, reference, answer=gold))
    return out


def load_math500(path: Path) -> list[Record]:
    out = []
    for line, row in _jsonl(path):
        problem, answer = _str(row, "problem", path, line), _str(row, "answer", path, line)
        reference = row.get("solution") or f"\\boxed{{{answer}}}"
        rid = str(row.get("unique_id", f"math500-{line}"))
        out.append(Record(rid, problem + BOX_INSTRUCTION, reference, answer=answer))
    return out


def load_jsonl(path: Path) -> list[Record]:
    out = []
    for line, row in _jsonl(path):
        prompt = _str(row, "prompt", path, line)
        answer = row.get("answer")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise MixsdError(
                f"{path}:{line}: field 'answer': expected a non-empty string or number"
            )
        reference = row.get("reference") if isinstance(row.get("reference"), str) else answer
        out.append(Record(str(row.get("id", f"jsonl-{line}")), prompt, reference, answer=answer))
    return out


def load_mmlu(path: Path) -> list[Record]:
    """MMLU: original CSV (file or dir of `*.csv`) or HF rows (`.jsonl`/`.json`/`.parquet`)."""
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise MixsdError(f"{path}: expected MMLU *.csv files in this dir")
        return [r for f in files for r in _mmlu_csv(f)]
    if path.suffix == ".csv":
        return _mmlu_csv(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = enumerate(pq.read_table(path).to_pylist(), start=1)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise MixsdError(f"{path}: cannot read Parquet ({type(e).__name__})") from None
    else:
        rows = _jsonl(path)
    out = []
    for line, row in rows:
        question = _str(row, "question", path, line)
        choices, answer = row.get("choices"), row.get("answer")
        if not isinstance(choices, list) or len(choices) != 4:
            raise MixsdError(f"{path}:{line}: field 'choices': expected a list of 4 options")
        if isinstance(answer, str) and answer.strip() in tuple(LETTERS):
            answer = LETTERS.index(answer.strip())
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < 4:
            raise MixsdError(f"{path}:{line}: field 'answer': expected 0-3 or A-D, got {answer!r}")
        out.append(_mmlu_record(f"{path.stem}-{line}", question, [str(c) for c in choices], answer))
    return out


def _mmlu_csv(path: Path) -> list[Record]:
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if len(row) != 6 or row[5].strip() not in tuple(LETTERS):
                raise MixsdError(
                    f"{path}:{line}: expected 6 columns question,A,B,C,D,answer with answer A-D"
                )
            out.append(
                _mmlu_record(f"{path.stem}-{line}", row[0], row[1:5], LETTERS.index(row[5].strip()))
            )
    return out


def _mmlu_record(rid: str, question: str, choices: list[str], answer: int) -> Record:
    options = "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, choices, strict=True))
    gold = LETTERS[answer]
    prompt = f"{question}\n{options}{MC_INSTRUCTION}"
    return Record(rid, prompt, f"The answer is {gold}.\n\n\\boxed{{{gold}}}", answer=gold)


def _jsonl(path: Path):
    """(line number, dict) per non-blank line of a JSONL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MixsdError(f"{path}: cannot read ({type(e).__name__})") from None
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            raise MixsdError(f"{path}:{line}: not valid JSON") from None
        if not isinstance(row, dict):
            raise MixsdError(f"{path}:{line}: expected a JSON object")
        yield line, row


def _str(row: dict, key: str, path: Path, line: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MixsdError(f"{path}:{line}: field '{key}': expected a non-empty string")
    return value


def _toy(name: str):
    def make(seed: int) -> list[Record]:
        from mixsd.data.toy import build_world, suites

        return suites(build_world(seed), seed)[name]

    return make


def _kgfunc_heldout(seed: int) -> list[Record]:
    from mixsd.data.config import KGFuncConfig
    from mixsd.data.kgfunc import make_splits

    return make_splits(KGFuncConfig(seed=seed))[2]["heldout"]


# Built-in suites shipped as data files (`mixsd/evaluate/data/`, curated as the module docstring
# says; per suite: candidates -> base-correct in bf16 / fp32 -> kept; 308 items in all). Plain
# questions (SmolLM2 answers in a sentence), golds of a word or two: score them with `contains`.
# - `world` (234 -> 148 / 154 -> 146): capitals, countries of cities, currencies, languages,
#   authors, inventors, planets, common science;
# - `language` (147 -> 67 / 68 -> 65): opposites, irregular plurals and past tenses, the month or
#   day after, units of time;
# - `arithmetic` (200 -> 35 / 40 -> 31): "What is 23 + 15?" (sums and differences of numbers up
#   to 60, products up to 12 x 12, drawn with a fixed seed; mostly products survive);
# - `commonsense` (111 -> 26 / 26 -> 24): everyday objects, animals and their young, jobs, senses;
# - `translation` (157 -> 45 / 52 -> 42): single words, Spanish/French/German -> English, and a
#   few greetings English -> Spanish/French/German/Italian.
# (Short format-following requests, "say only yes", were tried too: SmolLM2 followed 1 of 12.)
PACKAGED = {
    name: Path(__file__).parent / "data" / f"{name}.jsonl"
    for name in ("world", "language", "arithmetic", "commonsense", "translation")
}

# Built-in suites: name -> records as a function of the generator's seed (default sizes).
BUILTINS = {
    "kgfunc-heldout": _kgfunc_heldout,
    **{f"toy-{name}": _toy(name) for name in ("known", "addition", "reversal")},
}
