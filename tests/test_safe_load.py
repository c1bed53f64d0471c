"""No pickle on a model load: crafted `pytorch_model.bin` files are refused and never run, a trusted
pickled model loads with --allow-pickle, and the CLI refuses in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pickles import pickled_model_dir, write_crafted
from safetensors.torch import load_file

from mixsd.data.models import load_model
from mixsd.errors import MixsdError
from mixsd.safe_load import load_tensors, safetensors_only


def test_the_crafted_pickle_runs_when_unpickled(tmp_path):
    """The payload is live: plain `torch.load` creates the marker (so its absence below means
    nothing unpickled it)."""
    path = write_crafted(tmp_path / "x.pt", tmp_path / "marker")
    torch.load(path, weights_only=False)
    assert (tmp_path / "marker").exists()


def test_a_model_dir_with_only_pickled_weights_is_refused(tiny_model_dir, tmp_path):
    d = pickled_model_dir(tiny_model_dir, tmp_path / "m")
    with pytest.raises(
        MixsdError,
        match=r"m: its weights are pickled \(pytorch_model.bin\).*"
        r"--allow-pickle",
    ):
        load_model(d)
    assert not (tmp_path / "marker").exists()
    # even when allowed, transformers reads .bin with torch's weights_only unpickler
    with pytest.raises(MixsdError, match="pickled weights hold more than tensors; refused"):
        load_model(d, allow_pickle=True)
    assert not (tmp_path / "marker").exists()


def test_allow_pickle_loads_a_trusted_pickled_model(tiny_model_dir, tmp_path):
    weights = load_file(tiny_model_dir / "model.safetensors")
    d = pickled_model_dir(tiny_model_dir, tmp_path / "m", weights)
    state = load_model(d, allow_pickle=True).state_dict()
    assert weights.keys() <= state.keys()
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name


def test_safetensors_only_rule(tiny_model_dir, tmp_path):
    assert safetensors_only(tiny_model_dir) is True
    assert safetensors_only("someone/model") is True  # hub id: the loader asks for safetensors
    assert safetensors_only(pickled_model_dir(tiny_model_dir, tmp_path / "m"), True) is False
    both = tmp_path / "both"
    both.mkdir()
    (both / "model.safetensors").write_bytes(b"")
    (both / "pytorch_model.bin").write_bytes(b"")
    assert safetensors_only(both) is True  # safetensors present: only they are read


def test_vllm_engine_refuses_pickled_weights_before_vllm(tiny_model_dir, tmp_path):
    from mixsd.generate.vllm_engine import open_llm

    d = pickled_model_dir(tiny_model_dir, tmp_path / "m")
    with pytest.raises(MixsdError, match="its weights are pickled"):
        open_llm(str(d))
    assert not (tmp_path / "marker").exists()


def test_load_tensors_refuses_a_crafted_file(tmp_path):
    path = write_crafted(tmp_path / "state.pt", tmp_path / "marker")
    with pytest.raises(MixsdError, match=r"state.pt: holds more than tensors.*refused"):
        load_tensors(path)
    assert not (tmp_path / "marker").exists()
    torch.save({"w": torch.arange(3), "step": 4, "betas": (0.9, 0.95)}, tmp_path / "ok.pt")
    ok = load_tensors(tmp_path / "ok.pt")
    assert torch.equal(ok["w"], torch.arange(3)) and ok["step"] == 4 and ok["betas"] == (0.9, 0.95)


@pytest.mark.parametrize("command", ["generate", "train", "evaluate"])
def test_cli_refuses_a_pickled_model_in_one_line(command, tiny_model_dir, tmp_path):
    d = pickled_model_dir(tiny_model_dir, tmp_path / "m")
    records = tmp_path / "in.jsonl"
    records.write_text('{"id": "a", "prompt": "Q?", "reference": "\\\\boxed{A}"}\n')
    args = {
        "generate": ["--model", d, "--input", records, "--out", tmp_path / "set"],
        "train": ["--model", d, "--method", "opsd", "--input", records, "--out", tmp_path / "run"],
        "evaluate": ["--base", d, "--input", records, "--out", tmp_path / "report"],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-m", "mixsd", command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {d}: its weights are pickled")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "marker").exists()


def test_deepspeed_checkpoints_are_read_weights_only(tmp_path):
    """DeepSpeed's own loader unpickles (`weights_only=False`): ours refuses the crafted file and
    still reads what a ZeRO optimizer saves (its loss scaler, stage enum, fragment addresses)."""
    from types import SimpleNamespace

    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from mixsd.safe_load import weights_only_checkpoints

    engine = SimpleNamespace(
        checkpoint_engine=TorchCheckpointEngine(), load_universal_checkpoint=lambda: False
    )
    crafted = write_crafted(
        tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt", tmp_path / "marker"
    )
    engine.checkpoint_engine.load(crafted)  # DeepSpeed as installed: the payload runs
    assert (tmp_path / "marker").exists()
    (tmp_path / "marker").unlink()
    weights_only_checkpoints(engine)
    with pytest.raises(
        MixsdError,
        match="optim_states.pt: holds more than tensors and "
        "DeepSpeed's own state; refused.*--allow-pickle",
    ):
        engine.checkpoint_engine.load(crafted)
    assert not (tmp_path / "marker").exists()
    state = {
        "loss_scaler": LossScaler(1.0),
        "zero_stage": ZeroStageEnum.gradients,
        "param_slice_mappings": [{"w": fragment_address(numel=4, start=2)}],
        "fp32": torch.ones(3),
    }
    torch.save(state, tmp_path / "optim.pt")
    back = engine.checkpoint_engine.load(tmp_path / "optim.pt", map_location="cpu")
    assert back["loss_scaler"].cur_scale == 1.0 and back["zero_stage"] is ZeroStageEnum.gradients
    assert back["param_slice_mappings"][0]["w"] == fragment_address(numel=4, start=2)
    assert torch.equal(back["fp32"], torch.ones(3))
    universal = SimpleNamespace(load_universal_checkpoint=lambda: True)
    with pytest.raises(MixsdError, match="checkpoint.load_universal makes DeepSpeed unpickle"):
        weights_only_checkpoints(universal)


def test_a_tokenizer_pointing_at_its_own_code_never_runs_it(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    """Tokenizers load from JSON / SentencePiece files; a config that points at Python code in
    the directory (`auto_map`) is not trusted: transformers' own class loads, the code never
    runs (without a class of its own, transformers refuses: one line through `_load`)."""
    import json
    import shutil

    from mixsd.data.models import load_tokenizer

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / "evil.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w')\n")
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(d)
    assert type(tok).__module__.startswith("transformers.")
    assert tok.get_vocab() == tiny_tokenizer.get_vocab()
    assert not (tmp_path / "marker").exists()
