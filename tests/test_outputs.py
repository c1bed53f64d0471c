"""Output paths are checked before any work: nothing an output could damage is accepted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mixsd.errors import MixsdError
from mixsd.outputs import check_output


def one_line_error(kind, path, inputs=()) -> str:
    with pytest.raises(MixsdError) as info:
        check_output(path, kind, inputs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_new_empty_and_same_kind_outputs_are_accepted(tmp_path):
    assert check_output(tmp_path / "new" / "set", "target set") == tmp_path / "new" / "set"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "run")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / ".manifest.json").write_text("{}")
    check_output(tmp_path / "set", "target set")  # a resumable set
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("x: 1\n")
    check_output(tmp_path / "run", "run")
    (tmp_path / "out.jsonl").write_text("old\n")
    check_output(tmp_path / "out.jsonl", "file")  # a file output may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out.jsonl", "run", "set"]


def test_inputs_and_target_sets_are_never_outputs(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("{}\n")
    assert one_line_error("target set", data, [data]) == (
        f"--out {data}: is also an input ({data}): choose another path"
    )
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / ".manifest.json").write_text("{}")
    manifest = tmp_path / "set" / ".manifest.json"
    assert one_line_error("file", manifest) == (
        f"--out {manifest}: inside the target set {tmp_path / 'set'}: write somewhere else"
    )
    assert "inside the target set" in one_line_error("target set", tmp_path / "set" / "sub")
    assert "inside the target set" in one_line_error("run", tmp_path / "set")


def test_folders_that_belong_to_something_else(tmp_path):
    orphans = tmp_path / "orphans"
    (orphans / "lam=0.5").mkdir(parents=True)
    (orphans / "lam=0.5" / "part-0-of-1-00000.parquet").write_bytes(b"PAR1")
    assert one_line_error("target set", orphans) == (
        f"--out {orphans}: holds Parquet files but no .manifest.json (e.g. "
        "part-0-of-1-00000.parquet): not a target set; readers would mix them in: remove them "
        "or choose another folder"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.jsonl").write_text("{}\n")
    assert one_line_error("target set", corpus) == (
        f"--out {corpus}: not empty and not a target set (holds train.jsonl): choose a new or "
        "empty folder"
    )
    check_output(corpus, "corpus")  # a data builder may rewrite its own corpus
    assert "not empty and not a run" in one_line_error("run", corpus)


def test_files_folders_and_unwritable_places(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert one_line_error("run", f) == f"--out {f}: exists and is a file; expected a folder (run)"
    assert (
        one_line_error("report", f / "sub")
        == f"--out {f / 'sub'}: cannot be created: {f} is a file"
    )
    assert (
        one_line_error("file", tmp_path) == f"--out {tmp_path}: is a folder; expected a file path"
    )
    assert one_line_error("target set", "/proc/x").startswith(
        "--out /proc/x: cannot write in /proc ("
    )


def mixsd(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixsd", *map(str, args)], capture_output=True, text=True
    )


def refused(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode == 1 and p.stderr.splitlines() == [f"error: {text}"], p.stderr


def test_commands_refuse_bad_outputs_before_any_work(tiny_model_dir, tmp_path):
    from mixsd.data.io import write_records
    from mixsd.data.records import Record
    from mixsd.targets.ops import from_references

    data = write_records([Record("q0", "Who?", "Ada.")], tmp_path / "in.jsonl")
    before = data.read_bytes()
    gen = ["generate", "--model", tiny_model_dir, "--input", data, "--max-new-tokens", "2"]
    refused(
        mixsd(*gen, "--out", data), f"--out {data}: is also an input ({data}): choose another path"
    )
    assert data.read_bytes() == before
    refused(
        mixsd(*gen, "--out", "/proc/x"),
        "--out /proc/x: cannot write in /proc (No such file or directory)",
    )
    s = tmp_path / "s"
    from_references(data, tiny_model_dir, s)
    manifest = (s / ".manifest.json").read_bytes()
    p = mixsd("targets", "export", s, "--format", "jsonl", "--out", s / ".manifest.json")
    refused(p, f"--out {s / '.manifest.json'}: inside the target set {s}: write somewhere else")
    assert (s / ".manifest.json").read_bytes() == manifest
    assert mixsd("targets", "validate", s).returncode == 0
    f = tmp_path / "file"
    f.write_text("keep")
    train = ["train", "--model", tiny_model_dir, "--targets", s, "--steps", "1"]
    refused(mixsd(*train, "--out", f), f"--out {f}: exists and is a file; expected a folder (run)")
    ev = ["evaluate", "--base", tiny_model_dir, "--targets", s, "--out", f]
    refused(mixsd(*ev), f"--out {f}: exists and is a file; expected a folder (report)")
    refused(
        mixsd(*gen, "--out", f), f"--out {f}: exists and is a file; expected a folder (target set)"
    )
    assert f.read_text() == "keep"
    refused(
        mixsd(*train, "--out", s), f"--out {s}: inside the target set {s}: write somewhere else"
    )
    refused(
        mixsd("data", "kgfact", "--out", f),
        f"--out {f}: exists and is a file; expected a folder (corpus)",
    )
    assert json.loads(manifest)["rows"] == 1
