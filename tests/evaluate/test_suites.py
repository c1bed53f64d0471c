"""Suite loaders (each public format from small fixture files), memorization splits, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixsd.data.records import Record
from mixsd.errors import MixsdError
from mixsd.evaluate.suites import BOX_INSTRUCTION, load_input, load_suite, memorization_splits


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k(tmp_path):
    f = _jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {
                "question": "Tom has 3 apples and buys 4. How many?",
                "answer": "3+4=<<3+4=7>>7\n#### 7",
            },
            {"question": "Big?", "answer": "lots\n#### 1,200"},
        ],
    )
    s = load_suite(f"gsm8k={f}")
    assert s.name == "gsm8k" and not s.multiple_choice
    assert [r.gold for r in s.records] == ["7", "1200"]
    assert s.records[0].prompt == "Tom has 3 apples and buys 4. How many?" + BOX_INSTRUCTION
    assert s.records[0].reference.endswith("\\boxed{7}") and "####" not in s.records[0].reference


def test_math500(tmp_path):
    row = {"problem": "What is 1/2+1/2?", "solution": r"It is \boxed{1}.", "answer": "1",
           "unique_id": "test/algebra/1.json"}  # fmt: skip
    f = _jsonl(tmp_path / "math.jsonl", [row, {"problem": "x?", "answer": r"\frac{1}{2}"}])
    s = load_suite(f"math500={f}")
    assert [r.gold for r in s.records] == ["1", r"\frac{1}{2}"]
    assert s.records[0].id == "test/algebra/1.json"
    assert s.records[0].reference == r"It is \boxed{1}."
    assert s.records[1].reference == r"\boxed{\frac{1}{2}}"


def test_mmlu_original_csv_file_and_dir(tmp_path):
    d = tmp_path / "test"
    d.mkdir()
    (d / "anatomy_test.csv").write_text(
        '"Which, of these?",alpha,beta,gamma,delta,C\nSecond?,1,2,3,4,A\n', encoding="utf-8"
    )
    (d / "virology_test.csv").write_text("Third?,w,x,y,z,D\n", encoding="utf-8")
    s = load_suite(f"mmlu={d}")
    assert s.multiple_choice and s.name == "mmlu"
    assert [r.gold for r in s.records] == ["C", "A", "D"]
    first = s.records[0].prompt
    assert first.startswith("Which, of these?\nA. alpha\nB. beta\nC. gamma\nD. delta")
    assert len(load_suite(f"mmlu={d / 'virology_test.csv'}").records) == 1


def test_mmlu_hf_jsonl_and_parquet(tmp_path):
    rows = [
        {"question": "Q1?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 1},
        {"question": "Q2?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 3},
    ]
    s = load_suite(f"mmlu={_jsonl(tmp_path / 'mmlu.jsonl', rows)}")
    assert [r.gold for r in s.records] == ["B", "D"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    s2 = load_suite(f"mmlu={tmp_path / 'test-00000-of-00001.parquet'}")
    assert [r.prompt for r in s2.records] == [r.prompt for r in s.records]
    assert [r.gold for r in s2.records] == ["B", "D"]


def test_generic_jsonl_named_after_its_file(tmp_path):
    f = _jsonl(tmp_path / "capitals.jsonl", [{"prompt": "Capital of France?", "answer": "Paris"},
                                             {"prompt": "2+2?", "answer": 4}])  # fmt: skip
    s = load_suite(f"jsonl={f}")
    assert s.name == "capitals"
    assert [(r.prompt, r.gold) for r in s.records] == [
        ("Capital of France?", "Paris"),
        ("2+2?", "4"),
    ]


def test_builtin_toy_suite_is_deterministic():
    a, b = load_suite("toy-known"), load_suite("toy-known=0")
    assert a.name == "toy-known" and a.records == b.records and len(a.records) > 10
    assert load_suite("toy-known=1").records != a.records
    k = load_suite("kgfunc-heldout")
    assert k.records == load_suite("kgfunc-heldout=0").records and len(k.records) >= 10
    assert all(r.split == "heldout" and r.gold.isdigit() for r in k.records)
    assert load_suite("kgfunc-heldout=1").records != k.records
    with pytest.raises(MixsdError, match="SEED"):
        load_suite("toy-known=x")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"question": "q", "answer": "no hashes"}],
            r"gsm8k\.jsonl:1: field 'answer': expected text ending in '#### N'",
        ),
        ([{"answer": "#### 1"}], r"gsm8k\.jsonl:1: field 'question'"),
    ],
)
def test_bad_rows_name_file_line_field(tmp_path, rows, message):
    f = _jsonl(tmp_path / "gsm8k.jsonl", rows)
    with pytest.raises(MixsdError, match=message):
        load_suite(f"gsm8k={f}")


def test_bad_input_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("q,a,b,c,d,E\n", encoding="utf-8")
    with pytest.raises(MixsdError, match=r"bad\.csv:1: expected 6 columns"):
        load_suite(f"mmlu={tmp_path / 'bad.csv'}")
    (tmp_path / "x.jsonl").write_text('{"prompt": "p"}\nnot json\n', encoding="utf-8")
    with pytest.raises(MixsdError, match=r"x\.jsonl:1: field 'answer'"):
        load_suite(f"jsonl={tmp_path / 'x.jsonl'}")
    with pytest.raises(MixsdError, match="unknown format 'hellaswag'"):
        load_suite("hellaswag=x.jsonl")
    with pytest.raises(MixsdError, match="expected FORMAT=PATH"):
        load_suite("gsm8k")
    with pytest.raises(MixsdError, match="not found"):
        load_suite(f"gsm8k={tmp_path / 'missing.jsonl'}")


def test_missing_suite_is_a_one_line_cli_error(tmp_path):
    missing = tmp_path / "gsm8k_test.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "mixsd", "evaluate", "--base", str(tmp_path), "--out",
         str(tmp_path / "r"), "--suite", f"gsm8k={missing}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {missing}: gsm8k suite file not found (nothing is downloaded: give a local copy)"
    ]
    assert not (tmp_path / "r").exists()


def test_memorization_splits():
    records = [
        Record("a", "Q a?", "A", answer="x", paraphrases=("Qa one?", "Qa two?")),
        Record("b", "Q b?", "B", answer="y", split="train"),
        Record("d", "Q d?", "D", split="two_hop"),
        Record("e", "Q e?", "E", split="retrieval"),
    ]
    splits = memorization_splits(records)
    assert list(splits) == ["train", "paraphrase", "two_hop"]
    assert [r.id for r in splits["train"]] == ["a", "b"]
    assert [(r.id, r.prompt, r.gold) for r in splits["paraphrase"]] == [
        ("a/p0", "Qa one?", "x"), ("a/p1", "Qa two?", "x")
    ]  # fmt: skip
    assert [r.id for r in splits["two_hop"]] == ["d"]
    # an explicit paraphrase split wins over the records' paraphrase lists
    own = memorization_splits(records + [Record("c", "Q c?", "C", split="paraphrase")])
    assert [r.id for r in own["paraphrase"]] == ["c"]


def test_load_input_from_kgfact_dir(tmp_path):
    from mixsd.data.config import KGFactConfig
    from mixsd.data.kgfact import build

    counts = build(KGFactConfig(out=tmp_path / "kg", size="small", seed=0, distractors=3))
    splits = memorization_splits(load_input(tmp_path / "kg"))
    assert list(splits) == ["train", "paraphrase", "two_hop"]
    assert {k: len(v) for k, v in splits.items()} == {k: counts[k] for k in splits}
    assert all(r.knowledge is None or r.split == "two_hop" for r in splits["train"])
    with pytest.raises(MixsdError, match="expected train.jsonl"):
        load_input(tmp_path)


def test_kgfunc_heldout_suite_is_what_the_generator_writes(tmp_path):
    """Built in memory, the suite equals the generator's `heldout.jsonl` read back."""
    from mixsd.data.config import KGFuncConfig
    from mixsd.data.io import load_records
    from mixsd.data.kgfunc import build

    build(KGFuncConfig(out=tmp_path, seed=3))
    assert load_suite("kgfunc-heldout=3").records == load_records(tmp_path / "heldout.jsonl")
