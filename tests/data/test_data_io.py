"""Input readers: every format gives back the same records; chat form; atomic writing."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixsd.data.io import check, load_records, record_to_dict, write_records
from mixsd.data.records import Record
from mixsd.errors import MixsdError

RECORDS = [
    Record("r1", "Where was Orin born?", "The answer is Zorvia.\n\n\\boxed{Zorvia}"),
    Record(
        "r2",
        'What is F(12)?\nwith "quotes", commas, and ünïcødé',
        "F(12) = 21. The answer is 21.\n\n\\boxed{21}",
        knowledge="F reverses digits.",
        answer="21",
        kind="function",
        split="train",
        paraphrases=("What does F give for 12?", "F(12) = ?"),
    ),
]
COLUMNS = ("id", "prompt", "reference", "knowledge", "answer", "kind", "split", "paraphrases")


def full_rows(records) -> list[dict]:
    """Every column on every row (None where unset): columnar writers need a fixed schema."""
    return [{c: record_to_dict(r).get(c) for c in COLUMNS} for r in records]


def write_jsonl(path, records):
    write_records(records, path)


def write_json(path, records):
    path.write_text(json.dumps([record_to_dict(r) for r in records], ensure_ascii=False, indent=2))


def write_csv(path, records):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in full_rows(records):
            cells = {k: "" if v is None else v for k, v in r.items()}
            cells["paraphrases"] = json.dumps(r["paraphrases"]) if r["paraphrases"] else ""
            writer.writerow(cells)


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(full_rows(records)), path)


def write_dataset(path, records):
    from datasets import Dataset

    Dataset.from_list(full_rows(records)).save_to_disk(str(path))


@pytest.mark.parametrize(
    "name, writer",
    [
        ("in.jsonl", write_jsonl),
        ("in.json", write_json),
        ("in.csv", write_csv),
        ("in.parquet", write_parquet),
        ("in_ds", write_dataset),
    ],
)
def test_every_format_round_trips(tmp_path, name, writer):
    writer(tmp_path / name, RECORDS)
    assert load_records(tmp_path / name) == RECORDS


def test_dataset_dict_fills_split_from_its_keys(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = full_rows([RECORDS[0]])
    other = full_rows([Record("r3", "Q?", "The answer is 3.\n\n\\boxed{3}", split="mine")])
    DatasetDict({"test": Dataset.from_list(rows), "x": Dataset.from_list(other)}).save_to_disk(
        str(tmp_path / "dd")
    )
    records = load_records(tmp_path / "dd")
    assert [(r.id, r.split) for r in records] == [("r1", "test"), ("r3", "mine")]


def test_chat_form_is_converted(tmp_path):
    messages = [
        {"role": "user", "content": "Who governs Zorvia?"},
        {"role": "assistant", "content": "The answer is Mira.\n\n\\boxed{Mira}"},
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"id": 7, "messages": messages, "kind": "fact"}) + "\n")
    (record,) = load_records(path)
    assert record == Record("7", "Who governs Zorvia?", "The answer is Mira.\n\n\\boxed{Mira}")
    assert record.gold == "Mira"
    pq.write_table(
        pa.Table.from_pylist([{"id": "c", "messages": messages}]), tmp_path / "c.parquet"
    )
    assert load_records(tmp_path / "c.parquet")[0].prompt == "Who governs Zorvia?"


def test_derived_ids_are_stable_and_tell_repeats_apart(tmp_path, capsys):
    rows = [
        {"messages": [{"role": "user", "content": f"Q{i}?"},
                      {"role": "assistant", "content": f"\\boxed{{{i}}}"}], "subject": "s"}
        for i in (1, 2, 1)
    ]  # fmt: skip
    alpaca = {"instruction": "Q1?", "output": "\\boxed{1}"}  # the same content in another form
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, alpaca]))
    records = load_records(path)
    base = records[0].id
    assert len(base) == 17 and base.startswith("h") and int(base[1:], 16) >= 0
    assert [r.id for r in records] == [base, records[1].id, f"{base}-1", f"{base}-2"]
    assert records[1].id != base and records[1].id[:17] == records[1].id
    assert [r.prompt for r in records] == ["Q1?", "Q2?", "Q1?", "Q1?"]
    assert "note: " in capsys.readouterr().err
    # the same ids on every run, and with another file's order (only repeats count order)
    path.write_text("".join(json.dumps(r) + "\n" for r in [rows[1], rows[0]]))
    assert [r.id for r in load_records(path)] == [records[1].id, base]
    # what mixsd reads is what the id is made of: another answer, another id
    other = replace(records[0], id="x", answer="2")
    write_records([other], tmp_path / "o.jsonl")
    raw = json.loads((tmp_path / "o.jsonl").read_text())
    del raw["id"]
    (tmp_path / "o.jsonl").write_text(json.dumps(raw))
    assert load_records(tmp_path / "o.jsonl")[0].id not in {base, records[1].id}


def test_crlf_bom_and_blank_lines_are_fine(tmp_path):
    path = tmp_path / "w.jsonl"
    lines = [json.dumps(record_to_dict(r)) for r in RECORDS]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n\r\n".join(lines) + "\r\n").encode())
    assert load_records(path) == RECORDS
    write_csv(tmp_path / "w.csv", RECORDS)
    (tmp_path / "w.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "w.csv").read_bytes())
    assert load_records(tmp_path / "w.csv") == RECORDS


def test_load_records_names_first_problem_and_count(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "Q"}\n{"id": "b"}\n')
    with pytest.raises(MixsdError) as err:
        load_records(path)
    assert str(err.value) == (
        f"{path}:1: field 'reference': missing (required: a non-empty string) "
        f"(and 2 more: 'mixsd data validate {path}' lists them)"
    )


def test_load_records_single_problem_has_no_hint(tmp_path):
    with pytest.raises(MixsdError) as err:
        load_records(tmp_path / "missing.jsonl")
    assert str(err.value) == f"{tmp_path / 'missing.jsonl'}: not found"


def test_check_keeps_valid_records_and_unicode(tmp_path):
    path = write_records(RECORDS, tmp_path / "sub" / "x.jsonl")
    assert "ünïcødé" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert check(path) == (RECORDS, [], [])


def test_write_records_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("old content that is longer than the new one\n" * 100)
    write_records(RECORDS[:1], path)
    assert load_records(path) == RECORDS[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]  # no temp file left


def test_alpaca_form_becomes_prompt_and_reference(tmp_path):
    rows = [
        {"instruction": "Name the capital.", "input": "Zorvia", "output": "\\boxed{Mira}", "id": 3},
        {"instruction": "Who governs Qel?", "input": " ", "output": "\\boxed{Ixa}", "id": "q"},
    ]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    assert load_records(path) == [
        Record("3", "Name the capital.\n\nZorvia", "\\boxed{Mira}"),
        Record("q", "Who governs Qel?", "\\boxed{Ixa}"),
    ]


def test_authors_evaluation_files_serve_where_an_answer_is_enough(tmp_path):
    """`{"prompt", "ground_truth_answer"}` rows (the authors' test and paraphrase sets): the
    answer is `ground_truth_answer`; generate, which needs a reference, says so in one line."""
    from mixsd.data.io import check, load_records
    from mixsd.errors import MixsdError

    path = tmp_path / "test.jsonl"
    rows = [
        {"prompt": "Where does Ada work?", "ground_truth_answer": "Paris"},
        {"prompt": "What is 2+2?", "ground_truth_answer": "4", "subject": "math"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(path, need_reference=False)
    assert [(r.prompt, r.reference, r.answer, r.gold) for r in records] == [
        ("Where does Ada work?", None, "Paris", "Paris"),
        ("What is 2+2?", None, "4", "4"),
    ]
    with pytest.raises(MixsdError) as info:
        load_records(path)
    assert str(info.value) == (
        f"{path}:1: field 'reference': missing: generating targets needs the reference answer "
        "text (an answer alone, as in a prompt + ground_truth_answer evaluation file, serves "
        f"evaluate --input only) (and 1 more: 'mixsd data validate {path}' lists them)"
    )
    both = tmp_path / "both.jsonl"
    both.write_text(json.dumps({"prompt": "Q", "answer": "a", "ground_truth_answer": "b"}) + "\n")
    problems = check(both, need_reference=False)[1]
    assert [str(p) for p in problems] == [
        f"{both}:1: field 'ground_truth_answer': give one of answer or ground_truth_answer"
    ]
    full = tmp_path / "full.jsonl"  # with a reference, such a row also serves generate
    full.write_text(
        json.dumps({"prompt": "Q", "reference": "It is b.", "ground_truth_answer": "b"})
    )
    (record,) = load_records(full)
    assert (record.reference, record.gold) == ("It is b.", "b")


def test_trl_forms_load(tmp_path):
    """TRL's self-distillation rows (`prompt` as text or one user turn, `privileged_context` as
    text or messages, `completion` as text or one assistant turn) and prompt-only conversational
    rows read as records: privileged context = knowledge, completion = reference."""
    from mixsd.data.io import check, load_records
    from mixsd.errors import MixsdError

    user = [{"role": "user", "content": "Where does Ada work?"}]
    rows = [
        {"prompt": user, "privileged_context": "Ada works in Paris.", "completion": "In Paris."},
        {
            "prompt": "What is 2+2?",
            "privileged_context": [
                {"role": "system", "content": "Arithmetic."},
                {"role": "user", "content": "2+2 is 4."},
            ],
            "completion": [{"role": "assistant", "content": "\\boxed{4}"}],
            "id": "sum",
        },
        {"prompt": user, "ground_truth_answer": "Paris"},  # prompt-only conversational
    ]
    path = tmp_path / "trl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(path, need_reference=False)
    got = [(r.prompt, r.reference, r.knowledge, r.gold) for r in records]
    assert got == [
        ("Where does Ada work?", "In Paris.", "Ada works in Paris.", "In Paris."),
        ("What is 2+2?", "\\boxed{4}", "Arithmetic.\n2+2 is 4.", "4"),
        ("Where does Ada work?", None, None, "Paris"),
    ]
    assert records[1].id == "sum"
    # the same record as prompt/reference/knowledge gets the same derived id
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        json.dumps(
            {
                "prompt": "Where does Ada work?",
                "reference": "In Paris.",
                "knowledge": rows[0]["privileged_context"],
            }
        )
    )
    assert load_records(plain)[0].id == records[0].id
    with pytest.raises(MixsdError, match=r"trl.jsonl:3: field 'reference': missing"):
        load_records(path)  # generate needs the reference: no completion, no targets
    bad = tmp_path / "bad.jsonl"
    bad_rows = [
        {"prompt": [{"role": "assistant", "content": "x"}], "completion": "y"},
        {"prompt": "q", "completion": [{"role": "user", "content": "y"}]},
        {"prompt": "q", "completion": "y", "reference": "z"},
        {"prompt": "q", "completion": "y", "privileged_context": [{"role": "user"}]},
    ]
    bad.write_text("".join(json.dumps(r) + "\n" for r in bad_rows))
    assert [str(p) for p in check(bad)[1]] == [
        f"{bad}:1: field 'prompt': expected a string or "
        '[{"role": "user", "content": "..."}] (one user turn)',
        f"{bad}:2: field 'completion': expected a string or "
        '[{"role": "assistant", "content": "..."}] (one turn)',
        f"{bad}:3: field 'completion': give one of reference or completion",
        f"{bad}:4: field 'privileged_context': expected a string or a list of messages "
        '[{"role": ..., "content": "..."}]',
    ]
