"""inspect, merge, export, from-references, and the provenance fingerprints."""

from __future__ import annotations

import json

import pytest
from targets_rows import make_rows
from typer.testing import CliRunner

from mixsd.cli.targets import app
from mixsd.data.records import Record
from mixsd.errors import MixsdError
from mixsd.targets.manifest import write_manifest
from mixsd.targets.ops import export, from_references, merge
from mixsd.targets.provenance import (
    check_compatible,
    input_fingerprint,
    model_fingerprint,
    tokenizer_fingerprint,
)
from mixsd.targets.reader import iter_rows, lams, read_manifest
from mixsd.targets.summary import inspect_set
from mixsd.targets.validate import validate
from mixsd.targets.writer import TargetSetWriter

RECORDS = [
    Record("r1", "What is the capital of Zorvia?", "The capital is Mirel.\n\n\\boxed{Mirel}"),
    Record("r2", "Who founded the guild?", "Ana founded it.", answer="Ana", kind="function"),
]


def write_set(root, provenance, rows, **kw):
    with TargetSetWriter(root, provenance, **kw) as w:
        w.write(rows)
    return root


def test_inspect_numbers(tmp_path, provenance):
    rows = make_rows(30, 0.3) + make_rows(12, 1.0, start=100)
    root = write_set(tmp_path / "s", provenance, rows, rows_per_part=7)
    summary = inspect_set(root)
    assert summary["rows"] == 42 and [x["lam"] for x in summary["per_lam"]] == [0.3, 1.0]
    for part, lam in zip(summary["per_lam"], (0.3, 1.0), strict=True):
        sel = [r for r in rows if r["lam"] == lam]
        lengths = sorted(len(r["target_ids"]) for r in sel)
        assert part["rows"] == len(sel)
        assert part["target_len"]["mean"] == pytest.approx(sum(lengths) / len(lengths))
        assert part["target_len"]["max"] == lengths[-1]
        assert part["target_len"]["p50"] == lengths[(len(lengths) + 1) // 2 - 1]  # nearest rank
        naive = sum(sum(r["source"]) for r in sel) / sum(len(r["source"]) for r in sel)
        assert part["naive_fraction"] == pytest.approx(naive)
        scored = [r["correct"] for r in sel if r["correct"] is not None]
        assert part["correct_rate"] == pytest.approx(sum(scored) / len(scored))
        assert sum(part["finish"].values()) == len(sel)
    assert summary["all"]["rows"] == 42 and summary["provenance"]["seed"] == 0
    out = CliRunner().invoke(app, ["inspect", str(root)]).output
    assert "42 rows" in out and "   0.3        30" in out


def test_merge_joins_lams_and_refuses_conflicts(tmp_path, provenance):
    a = write_set(tmp_path / "a", provenance, make_rows(5, 0.3))
    b = write_set(tmp_path / "b", provenance, make_rows(4, 1.0) + make_rows(3, 0.3, start=50))
    result = CliRunner().invoke(app, ["merge", str(a), str(b), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    c = tmp_path / "c"
    assert validate(c) == ([], 12) and lams(c) == [0.3, 1.0]
    assert sorted(r["id"] for r in iter_rows(c)) == sorted(
        r["id"] for s in (a, b) for r in iter_rows(s)
    )
    with pytest.raises(MixsdError, match="not empty"):
        merge([a, b], c)
    other = write_set(tmp_path / "t", {**provenance, "tokenizer": "sha256:x"}, make_rows(2, 0.5))
    with pytest.raises(MixsdError, match="'tokenizer' is"):
        merge([a, other], tmp_path / "d")
    dup = write_set(tmp_path / "dup", provenance, make_rows(1, 0.3, start=4))
    with pytest.raises(MixsdError, match="id 'ex4', sample 0, λ 0.3.*refusing to merge"):
        merge([a, dup], tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_merge_compares_keys_at_each_lam(tmp_path, provenance):
    """A key duplicated at a λ that is not the first part's λ is still found."""
    a = write_set(
        tmp_path / "a", provenance, make_rows(1, 1.0, start=1) + make_rows(1, 0.3, start=1)
    )
    b = write_set(
        tmp_path / "b", provenance, make_rows(1, 1.0, start=2) + make_rows(1, 0.3, start=1)
    )
    assert read_manifest(a)["parts"][0]["lam"] == 1.0  # the λ the check used to take for all
    with pytest.raises(MixsdError, match="id 'ex1', sample 1, λ 0.3.*refusing to merge"):
        merge([a, b], tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_export_jsonl_is_every_column_of_every_row(small_set, tmp_path):
    root, rows = small_set
    out = tmp_path / "rows.jsonl"
    assert export(root, "jsonl", out) == 35
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    with pytest.raises(MixsdError, match="expected jsonl, messages, prompt-completion, authors"):
        export(root, "csv", out)
    with pytest.raises(MixsdError, match="^tiny: model directory not found \\(pass --tokenizer"):
        export(root, "messages", out)


def test_export_cli_creates_folders_and_refuses_a_folder(small_set, tmp_path, monkeypatch, capsys):
    from mixsd.cli import app as mixsd_app
    from mixsd.cli import main

    root, rows = small_set
    out = tmp_path / "new" / "deeper" / "rows.jsonl"
    args = ["targets", "export", str(root), "--format", "jsonl", "--out", str(out)]
    result = CliRunner().invoke(mixsd_app, args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [p.name for p in out.parent.iterdir()] == ["rows.jsonl"]  # no temporary left
    monkeypatch.setattr("sys.argv", ["mixsd", *args[:-1], str(out.parent)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert (
        capsys.readouterr().err == f"error: --out {out.parent}: is a folder; expected a file path\n"
    )


def test_from_references_and_messages_export(tmp_path, tiny_model_dir, tiny_tokenizer):
    from mixsd.data.io import write_records
    from mixsd.data.templates import build_prompt_pair, target_ids

    data = write_records(RECORDS, tmp_path / "in.jsonl")
    root = tmp_path / "sft"
    args = ["from-references", str(data), "--model", str(tiny_model_dir), "--out", str(root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(iter_rows(root))
    assert [r["id"] for r in rows] == ["r1", "r2"] and validate(root) == ([], 2)
    for row, rec in zip(rows, RECORDS, strict=True):
        pair = build_prompt_pair(tiny_tokenizer, rec)
        assert row["prompt_ids"] == pair.naive_ids and row["expert_prompt_ids"] == pair.expert_ids
        assert row["target_ids"] == target_ids(tiny_tokenizer, rec.reference)
        assert row["target_ids"][-1] == tiny_tokenizer.eos_token_id
        assert (row["lam"], row["kind"], row["source"], row["naive_logprob"]) == (
            None,
            "sft",
            None,
            None,
        )
        assert (row["finish_reason"], row["correct"], row["answer"]) == ("stop", True, rec.gold)
    prov = read_manifest(root)["provenance"]
    assert prov["tokenizer"] == tokenizer_fingerprint(tiny_tokenizer)
    assert prov["input"] == input_fingerprint(RECORDS)
    assert from_references(data, tiny_model_dir, root) == 0  # resumable: nothing left to do

    # A crash after a part's rename, before the manifest listed it: rerunning adopts the part and
    # writes none of its rows again.
    manifest = read_manifest(root)
    write_manifest(root, {**manifest, "parts": []})
    assert from_references(data, tiny_model_dir, root) == 0
    assert validate(root) == ([], 2) and [r["id"] for r in iter_rows(root)] == ["r1", "r2"]

    out = tmp_path / "chat.jsonl"
    assert export(root, "messages", out) == 2  # tokenizer found via the provenance's model path
    chats = [json.loads(line)["messages"] for line in out.read_text().splitlines()]
    assert chats == [
        [{"role": "user", "content": r.prompt}, {"role": "assistant", "content": r.reference}]
        for r in RECORDS
    ]


def test_fingerprints(tmp_path, tiny_model_dir, tiny_tokenizer):
    import copy
    import shutil

    fp = tokenizer_fingerprint(tiny_tokenizer)
    assert fp.startswith("sha256:") and fp == tokenizer_fingerprint(copy.deepcopy(tiny_tokenizer))
    changed = copy.deepcopy(tiny_tokenizer)
    changed.chat_template = "{{ messages }}"
    assert tokenizer_fingerprint(changed) != fp

    moved = shutil.copytree(tiny_model_dir, tmp_path / "moved")
    a, b = model_fingerprint(tiny_model_dir), model_fingerprint(moved)
    assert a["weights_sha256"] == b["weights_sha256"] and a["name"] != b["name"]
    check_compatible({"model": a}, {"model": b})  # same weights elsewhere: compatible
    weights = moved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(moved)["weights_sha256"] != a["weights_sha256"]
    with pytest.raises(MixsdError, match="no weight files"):
        model_fingerprint(tmp_path)

    assert input_fingerprint(RECORDS) == input_fingerprint(RECORDS[::-1])
    assert input_fingerprint(RECORDS) != input_fingerprint(RECORDS[:1])


def test_check_compatible_names_the_first_differing_field():
    old = {"created": "t0", "stats": {"a": 1}, "sampling": {"top_k": 0, "top_p": 1.0}, "seed": 1}
    check_compatible(old, {**old, "created": "t1", "stats": {}, "rows": 9})
    with pytest.raises(MixsdError, match="'sampling.top_k' is 0 vs 50"):
        check_compatible(old, {**old, "sampling": {"top_k": 50, "top_p": 0.9}})
    with pytest.raises(MixsdError, match="'seed' is 1 vs \\(not set\\)"):
        check_compatible(old, {k: v for k, v in old.items() if k != "seed"})
