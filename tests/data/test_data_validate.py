"""`mixsd data validate`: each kind of malformed input gives an exact file:line: field: message
and exit code 1; a valid file gives "N records OK" and exit code 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mixsd.cli import app

GOOD = {"id": "a", "prompt": "Q?", "reference": "The answer is 1.\n\n\\boxed{1}"}


def row(**changes) -> dict:
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.fixture
def validate(tmp_path, monkeypatch):
    """Write `content` to `name` in a temp dir, run the CLI there: (exit code, output lines)."""
    monkeypatch.chdir(tmp_path)

    def run(name: str, content: str | bytes):
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        result = CliRunner().invoke(app, ["data", "validate", name])
        return result.exit_code, result.output.splitlines()

    return run


def test_valid_file_passes(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD, row(id="b")))
    assert (code, lines) == (0, ["2 records OK"])


def test_malformed_json_line(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD, '{"id": "b", "prompt": '))
    assert code == 1
    assert lines[0].startswith("f.jsonl:2: malformed JSON: Expecting value")
    assert lines[-1] == "1 problem in f.jsonl"


def test_missing_field(validate):
    code, lines = validate("f.jsonl", jsonl(row(reference=...)))
    assert code == 1
    assert lines[0] == "f.jsonl:1: field 'reference': missing (required: a non-empty string)"


def test_mistyped_field(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD, row(id="b", prompt=5)))
    assert code == 1
    assert lines[0] == "f.jsonl:2: field 'prompt': expected a non-empty string, got 5"


def test_empty_string(validate):
    code, lines = validate("f.jsonl", jsonl(row(reference="  ")))
    assert code == 1
    assert lines[0] == "f.jsonl:1: field 'reference': expected a non-empty string, got \"  \""


def test_empty_optional_field(validate):
    code, lines = validate("f.jsonl", jsonl(row(knowledge="")))
    assert (code, lines[0]) == (
        1,
        "f.jsonl:1: field 'knowledge': expected a non-empty string, got \"\"",
    )


def test_duplicate_ids(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD, row(id="b"), GOOD))
    assert code == 1
    assert lines[0] == "f.jsonl:3: field 'id': duplicate id 'a' (first at line 1)"


def test_bad_utf8_names_its_line(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD).encode() + b'{"id": "\xff"}\n')
    assert code == 1
    assert lines[0] == "f.jsonl:2: invalid UTF-8 (byte 9 of the line)"


def test_empty_file(validate):
    assert validate("f.jsonl", "") == (
        1,
        ["f.jsonl: empty file: no records", "1 problem in f.jsonl"],
    )


def test_blank_lines_only_is_empty(validate):
    assert validate("f.jsonl", "\n  \n")[1][0] == "f.jsonl: empty file: no records"


def test_unknown_kind(validate):
    code, lines = validate("f.jsonl", jsonl(row(kind="poem")))
    assert (code, lines[0]) == (
        1,
        "f.jsonl:1: field 'kind': unknown kind \"poem\" (expected one of: fact, function)",
    )


@pytest.mark.parametrize("value", ["one", ["ok", 3], [""]])
def test_paraphrases_not_a_list_of_strings(validate, value):
    code, lines = validate("f.jsonl", jsonl(row(paraphrases=value)))
    assert code == 1
    assert lines[0].startswith(
        "f.jsonl:1: field 'paraphrases': expected a list of non-empty strings"
    )


def test_line_not_an_object(validate):
    code, lines = validate("f.jsonl", jsonl(GOOD, "[1, 2]"))
    assert (code, lines[0]) == (1, "f.jsonl:2: expected a JSON object, got list")


def test_bad_chat_messages(validate):
    messages = [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
    code, lines = validate("f.jsonl", jsonl({"id": "a", "messages": messages}))
    assert code == 1
    assert lines[0].startswith("f.jsonl:1: field 'messages': expected [{role: user, content}")
    assert len(lines) == 2  # no extra "prompt missing" noise


def test_messages_and_prompt_together(validate):
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    code, lines = validate("f.jsonl", jsonl(row(messages=messages)))
    assert (code, lines[0]) == (
        1,
        "f.jsonl:1: field 'messages': give one of messages, prompt/reference or "
        "instruction/input/output",
    )


def test_every_problem_is_reported(validate):
    code, lines = validate("f.jsonl", jsonl(row(prompt=""), "{oops", row(id="a", kind="x")))
    assert code == 1
    assert [line.split(" ")[0] for line in lines[:-1]] == [
        "f.jsonl:1:",
        "f.jsonl:2:",
        "f.jsonl:3:",
        "f.jsonl:3:",
    ]
    assert lines[-1] == "4 problems in f.jsonl"


def test_json_not_a_list(validate):
    code, lines = validate("f.json", json.dumps(GOOD))
    assert code == 1
    assert (
        lines[0] == "f.json: expected a JSON list of records (use .jsonl for one record per line)"
    )


def test_json_malformed_names_line(validate):
    code, lines = validate("f.json", "[\n" + json.dumps(GOOD) + ",\n}\n")
    assert (code, lines[0].split(" malformed")[0]) == (1, "f.json:3:")


def test_json_record_problem_names_record(validate):
    code, lines = validate("f.json", json.dumps([GOOD, row(id="b", prompt=None, reference=[])]))
    assert code == 1
    assert lines[0] == "f.json: record 2: field 'prompt': missing (required: a non-empty string)"
    assert lines[1] == "f.json: record 2: field 'reference': expected a non-empty string, got []"


def test_csv_problems_name_file_lines(validate):
    text = "id,prompt,reference,paraphrases\na,Q?,R,\nb,,R,\nc,Q,R,not json\n"
    code, lines = validate("f.csv", text)
    assert code == 1
    assert lines[0] == "f.csv:3: field 'prompt': missing (required: a non-empty string)"
    assert (
        lines[1]
        == "f.csv:4: field 'paraphrases': expected a list of non-empty strings, got \"not json\""
    )


def test_csv_extra_cells(validate):
    code, lines = validate("f.csv", "id,prompt,reference\na,Q,R,surplus\n")
    assert (code, lines[0]) == (1, "f.csv:2: more cells than header columns")


def parquet_bytes(rows: list[dict]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue().to_pybytes()


def test_parquet_mistyped_column(validate):
    content = parquet_bytes([row(prompt=7), row(id="b", prompt=8)])
    code, lines = validate("x.parquet", content)
    assert code == 1
    assert lines[:2] == [
        "x.parquet: row 1: field 'prompt': expected a non-empty string, got 7",
        "x.parquet: row 2: field 'prompt': expected a non-empty string, got 8",
    ]


def test_parquet_null_required_field(validate):
    code, lines = validate("x.parquet", parquet_bytes([GOOD, row(id="b", reference=None)]))
    assert (code, lines[0]) == (
        1,
        "x.parquet: row 2: field 'reference': missing (required: a non-empty string)",
    )


def test_corrupt_parquet(validate):
    code, lines = validate("f.parquet", b"not parquet at all")
    assert code == 1 and lines[0].startswith("f.parquet: cannot read Parquet")


def test_unknown_format(validate):
    code, lines = validate("f.txt", "hello")
    assert (code, lines[0]) == (
        1,
        "f.txt: unknown format (expected .jsonl, .json, .parquet, .csv or a datasets save_to_disk folder)",
    )


def test_folder_without_dataset_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(app, ["data", "validate", "d"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("d: not a datasets save_to_disk folder")


def test_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "validate", "nope.jsonl"])
    assert (result.exit_code, result.output.splitlines()[0]) == (1, "nope.jsonl: not found")


def test_cli_errors_have_no_traceback(tmp_path):
    """Through the real entry point: one-line errors, exit 1, never a traceback."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl(row(prompt=1)))
    run = [sys.executable, "-m", "mixsd", "data", "validate", str(bad)]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 1
    assert (
        done.stdout.splitlines()[0]
        == f"{bad}:1: field 'prompt': expected a non-empty string, got 1"
    )
    assert "Traceback" not in done.stdout + done.stderr
    run = [
        sys.executable,
        "-m",
        "mixsd",
        "data",
        "kgfact",
        "--size",
        "huge",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "error: command line: option 'size': expected one of small, large, got 'huge'"
    )


def test_unknown_field(validate):
    """A misspelt optional field would silently change what the expert sees: it is an error."""
    code, lines = validate("f.jsonl", jsonl(row(knowlege="c")))
    assert code == 1
    assert lines[0] == (
        "f.jsonl:1: field 'knowlege': unknown field (did you mean 'knowledge'? expected: answer, "
        "completion, id, input, instruction, kind, knowledge, messages, output, paraphrases, "
        "privileged_context, prompt, reference, split)"
    )


AUTHORS = [  # as the paper's data builder writes them: chat form, no id, extra fields
    {"messages": [{"role": "user", "content": "Who governs Zorvia?"},
                  {"role": "assistant", "content": "Mira governs it. \\boxed{Mira}"}],
     "clear_answer": "Mira", "subject": "Zorvia", "mix_meta": {"source": "kg", "hop": 1}},
    {"messages": [{"role": "user", "content": "Where is Qel?"},
                  {"role": "assistant", "content": "In Vont. \\boxed{Vont}"}],
     "clear_answer": "Vont", "subject": "Qel"},
]  # fmt: skip


def test_the_authors_chat_files_load_with_derived_ids(validate):
    code, lines = validate("a.jsonl", jsonl(*AUTHORS, AUTHORS[0]))  # the first one twice
    assert code == 0
    assert lines == [
        "note: a.jsonl: 3 records without an id: derived from the content (h + 16 hex digits; "
        "1 repeat of a content get -1, -2, ...)",
        "note: a.jsonl: ignored fields that mean nothing to mixsd: clear_answer (3 records), "
        "mix_meta (2 records), subject (3 records)",
        "3 records OK",
    ]


def test_alpaca_form(validate):
    alpaca = [
        {"instruction": "Name the capital.", "input": "Zorvia", "output": "\\boxed{Mira}"},
        {"instruction": "Who governs Zorvia?", "input": "", "output": "\\boxed{Mira}"},
        {"instruction": "Who governs Qel?", "output": "\\boxed{Ixa}", "id": 3},
    ]
    code, lines = validate("al.json", json.dumps(alpaca))
    assert (code, lines[-1]) == (0, "3 records OK")
    bad = [
        {"instruction": "", "output": "x"},
        {"instruction": "q", "input": 5, "output": "x"},
        {"instruction": "q", "output": "x", "prompt": "q"},
        {"instrucion": "q", "output": "x"},
        {"messages": AUTHORS[1]["messages"], "clear_anwser": "Vont"},
    ]
    code, lines = validate("bad.jsonl", jsonl(*bad))
    assert code == 1
    assert lines[:4] == [
        "bad.jsonl:1: field 'instruction': expected a non-empty string, got \"\"",
        "bad.jsonl:2: field 'input': expected a string, got 5",
        "bad.jsonl:3: field 'instruction': give one of messages, prompt/reference or "
        "instruction/input/output",
        "bad.jsonl:4: field 'instruction': missing (required: a non-empty string)",
    ]
    assert "bad.jsonl:4: field 'instrucion': unknown field (did you mean 'instruction'?" in lines[4]
    assert (
        "bad.jsonl:5: field 'clear_anwser': unknown field (did you mean 'clear_answer'?"
        in (lines[5])
    )
