"""`mixsd model tiny`: builds offline, loads with the Auto classes, renders ChatML, seeded."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mixsd.cli import app
from mixsd.errors import MixsdError


def test_tiny_model_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "m"
    args = ["model", "tiny", "--out", str(out), "--hidden", "32", "--layers", "1", "--heads", "2"]
    result = CliRunner().invoke(app, [*args, "--vocab", "400", "--seed", "5"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == f"{out}: tiny model (hidden 32, 1 layers, 2 heads)"
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (
        "llama",
        32,
        1,
        2,
    )
    assert cfg.vocab_size == len(tok) <= 400
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert model.generation_config.eos_token_id == tok.eos_token_id
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level BPE round-trips, specials stay single tokens
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), cfg.vocab_size)


def test_cli_defaults_match_the_fixture_model(tmp_path, tiny_model):
    """Same seed and defaults, same weights: the build is deterministic."""
    from transformers import AutoModelForCausalLM

    result = CliRunner().invoke(app, ["model", "tiny", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype="float32")
    theirs = tiny_model.state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hidden", "30", "--heads", "4"], "option 'hidden': 30 is not divisible by heads (4)"),
        (["--vocab", "100"], "option 'vocab': expected >= 300, got 100"),
        (["--layers", "0"], "option 'layers': expected >= 1, got 0"),
    ],
)
def test_bad_sizes_are_one_line_errors(tmp_path, flags, message):
    result = CliRunner().invoke(app, ["model", "tiny", "--out", str(tmp_path / "m"), *flags])
    assert result.exit_code == 1
    assert isinstance(result.exception, MixsdError)  # main() prints it as `error: ...`
    assert str(result.exception) == f"command line: {message}"
    assert not (tmp_path / "m").exists()
