"""Resume state without pickle: the RNG state round-trips bit for bit through JSON, and an older
checkpoint's pickled RNG file (or a crafted `state.pt`) is refused without running anything."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pickles import write_crafted

from mixsd.errors import MixsdError
from mixsd.train import checkpoint


def _draws() -> list:
    """Numbers from every generator the checkpoint restores (including the cached Gaussians)."""
    return [
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.standard_normal(),
        torch.rand(4).tolist(),
    ]


def test_rng_state_round_trips_through_json_exactly():
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached second Gaussian in each
    saved = json.loads(json.dumps(checkpoint.rng_state()))
    want = _draws()
    checkpoint.set_rng_state(saved)
    assert _draws() == want


class _Backend:
    def __init__(self):
        self.loaded = None

    def save(self, tag):
        pass

    def load(self, tag):
        self.loaded = tag


def _old_checkpoint(run: Path, rng_file) -> Path:
    """A run whose latest checkpoint has the older layout: `rng-rank0.pt`, no JSON."""
    tag = run / "checkpoints" / "step-2"
    tag.mkdir(parents=True)
    (tag / "trainer.json").write_text('{"step": 2}')
    (run / "checkpoints" / "latest").write_text("step-2")
    rng_file(tag / "rng-rank0.pt")
    return tag


def test_save_then_load_restores_step_and_rng(tmp_path):
    torch.manual_seed(5)
    checkpoint.save(tmp_path, 3, _Backend(), rank=0)
    assert (tmp_path / "checkpoints" / "step-3" / "rng-rank0.json").is_file()
    want = torch.rand(5)
    backend = _Backend()
    assert checkpoint.load(tmp_path, backend, rank=0) == 3
    assert backend.loaded == tmp_path / "checkpoints" / "step-3"
    assert torch.equal(torch.rand(5), want)


def test_a_crafted_pickled_rng_file_is_refused_and_never_loaded(tmp_path):
    tag = _old_checkpoint(tmp_path / "run", lambda p: write_crafted(p, tmp_path / "marker"))
    backend = _Backend()
    want = r"rng-rank0.pt: an older checkpoint's RNG state, a pickle .* refused; if you trust"
    with pytest.raises(MixsdError, match=want + " this run, convert it by hand") as e:
        checkpoint.load(tmp_path / "run", backend, rank=0)
    assert "\n" not in str(e.value) and f"c('{tag}')" in str(e.value)
    assert backend.loaded is None  # nothing of the checkpoint was read
    assert not (tmp_path / "marker").exists()


def test_convert_pickled_rng_resumes_a_trusted_old_checkpoint(tmp_path):
    """What the refusal tells the user to run: the old pickle becomes JSON with the same state."""
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    # what the former `rng_state()` returned and `torch.save` wrote
    old = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    want = _draws()
    tag = _old_checkpoint(tmp_path / "run", lambda p: torch.save(old, p))
    torch.manual_seed(0)
    cmd = f"from mixsd.train.checkpoint import convert_pickled_rng as c; c('{tag}')"
    subprocess.run([sys.executable, "-c", cmd], check=True, timeout=120)
    assert checkpoint.load(tmp_path / "run", _Backend(), rank=0) == 2
    assert _draws() == want


def test_plain_backend_refuses_a_crafted_state_file(tmp_path):
    from mixsd.train.backends import Plain

    write_crafted(tmp_path / "state.pt", tmp_path / "marker")
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    plain = Plain(model, opt, sched, 1.0, torch.device("cpu"), bf16=False)
    with pytest.raises(MixsdError, match="state.pt: holds more than tensors"):
        plain.load(tmp_path)
    assert not (tmp_path / "marker").exists()


def test_cli_refuses_to_resume_a_crafted_rng_file(tiny_model_dir, sft_set, tmp_path):
    _old_checkpoint(tmp_path / "run", lambda p: write_crafted(p, tmp_path / "marker"))
    args = [
        "--model",
        tiny_model_dir,
        "--targets",
        sft_set,
        "--out",
        tmp_path / "run",
        "--batch-size",
        4,
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "mixsd", "train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "rng-rank0.pt: an older checkpoint's RNG state" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "marker").exists()
