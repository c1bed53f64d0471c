"""The toy recipe: its config's checks, and a pretraining smoke run whose loss goes down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixsd.data.io import validate
from mixsd.recipes.toy import ToyConfig, build_toy_model

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(n_known=6, n_new=4, known_repeats=2, n_context=40, n_addition=20, n_reversal=20)


@pytest.mark.slow
def test_build_toy_model_smoke_loss_goes_down(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = dict(hidden=32, layers=1, heads=2, vocab=300, epochs=4, lr=3e-3, batch_size=16)
    cfg = ToyConfig(tmp_path / "toy", seed=0, **model)
    out = build_toy_model(cfg, sizes=SMALL)
    assert out == cfg.out
    losses = [
        json.loads(x)["loss"] for x in (out / "pretrain" / "metrics.jsonl").open() if '"loss"' in x
    ]
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|im_end|>"
    assert validate(out / "world" / "inject.jsonl") == []


def test_toy_config_checks():
    from mixsd.config import load_config
    from mixsd.errors import MixsdError

    cfg = load_config(ToyConfig, ROOT / "configs" / "toy.yaml", out="m", epochs="2")
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.epochs) == (128, 4, 2, 2)
    with pytest.raises(MixsdError, match="heads"):
        load_config(ToyConfig, None, out="m", hidden=30, heads=4)
    with pytest.raises(MixsdError, match="lr"):
        load_config(ToyConfig, None, out="m", lr=0)
