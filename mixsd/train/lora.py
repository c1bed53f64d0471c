"""LoRA with PEFT: the model wrapped for training, its exports, and the base it adapts.

`wrap` freezes the base weights and adds a trainable rank-r update `W + (alpha / r) B A` on each
target module (`LoRAConfig`); the optimizer then sees only A and B (the loop builds it from the
parameters that require a gradient), so the backends (plain, DDP, DeepSpeed ZeRO 0-3) and the
checkpoints work unchanged. An export (`export`) writes the adapter in PEFT's own layout,
`<dir>/adapter/{adapter_model.safetensors,adapter_config.json}` (the config names the base model:
`PeftModel.from_pretrained` and vLLM's LoRA loading read it), and with `merge` the merged full model
at `<dir>/` itself, so evaluate, vLLM and `from_pretrained` read it as any model. The adapter sits
in a subfolder so that `from_pretrained(<dir>)` never mistakes the merged model for an adapter.

OPSD's frozen teacher under LoRA is the same model with its adapter disabled (`base_weights`):
exactly the base model, with no second copy of the weights in memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mixsd.train.config import LoRAConfig

ADAPTER = "adapter"  # subfolder of an export holding the PEFT adapter


def wrap(model, cfg: LoRAConfig, base: str):
    """`model` (loaded from `base`) as a PEFT model with fresh LoRA adapters (A random, B zero:
    it starts as the base); only the adapters require a gradient. Seeded by the caller's torch
    seed. The adapter config names the base by absolute path, so the adapter loads from anywhere."""
    from mixsd.errors import MixsdError

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MixsdError("LoRA needs peft: pip install 'mixsd[lora]'") from None

    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as e:  # e.g. no module of the model has a target's name
        raise MixsdError(f"option 'lora_target_modules': {str(e).splitlines()[0]}") from None
    model.peft_config["default"].base_model_name_or_path = (
        str(Path(base).resolve()) if Path(base).is_dir() else base
    )
    return model


def base_weights(model):
    """Context in which the PEFT `model` computes with its base weights alone (adapters off)."""
    return model.disable_adapter()


def merged_state(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA update merged in: from a PEFT model's full
    `state` (`base_model.model.<name>.base_layer.weight`, `....lora_A.default.weight` [r, in],
    `....lora_B.default.weight` [out, r]), `<name>.weight = W + scaling * B @ A`; other keys lose
    the PEFT prefix. `scaling` is alpha / r."""
    prefix = "base_model.model."
    out = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        name = key.removeprefix(prefix).replace(".base_layer.", ".")
        stem = key.removesuffix(".base_layer.weight")
        if stem != key and f"{stem}.lora_A.default.weight" in state:
            a = state[f"{stem}.lora_A.default.weight"].float()
            b = state[f"{stem}.lora_B.default.weight"].float()
            value = (value.float() + scaling * (b @ a)).to(value.dtype)
        out[name] = value
    return out


def export(backend, tokenizer, out: Path, rank: int, merge: bool) -> None:
    """The adapter at `out/adapter/` and, with `merge`, the merged model at `out/` (with the
    tokenizer in both cases), through `checkpoint.export_dir` (every process calls it)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from mixsd.train.checkpoint import export_dir

    module = backend.module

    def write(tmp: Path, state: dict) -> None:
        adapter = get_peft_model_state_dict(module, state_dict=state)
        (tmp / ADAPTER).mkdir(parents=True)
        save_file(
            {k: v.contiguous() for k, v in adapter.items()},
            tmp / ADAPTER / "adapter_model.safetensors",
            metadata={"format": "pt"},
        )
        config = module.peft_config["default"]
        config.save_pretrained(tmp / ADAPTER)
        if merge:
            base = module.get_base_model()
            merged = merged_state(state, config.lora_alpha / config.r)
            # tied weights once (named_parameters lists a shared tensor under its first name)
            names = {n.replace(".base_layer.", ".") for n, _ in base.named_parameters()}
            names |= {n for n, _ in base.named_buffers()}
            base.save_pretrained(tmp, state_dict={k: v for k, v in merged.items() if k in names})
        tokenizer.save_pretrained(tmp)

    export_dir(backend, out, rank, write)


def adapter_dir(path: Path) -> Path | None:
    """The PEFT adapter directory of an export or adapter dir `path` (holding
    adapter_config.json, itself or in `adapter/`), or None."""
    for d in (path, path / ADAPTER):
        if (d / "adapter_config.json").is_file():
            return d
    return None


def load_merged(path: Path, allow_pickle: bool = False):
    """The fp32 model of an adapter-only export (no merged weights at `path`): the base named in
    its adapter_config.json, loaded without pickle unless `allow_pickle`, with the adapter
    (safetensors) merged in."""
    import json

    from peft import PeftModel

    from mixsd.data.models import load_model
    from mixsd.errors import MixsdError

    adapter = adapter_dir(path)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise MixsdError(
            f"{adapter / 'adapter_config.json'}: base_model_name_or_path {base!r} is not a "
            "model directory here (train with --merge-lora, or point it at the base)"
        )
    if not (adapter / "adapter_model.safetensors").is_file():
        raise MixsdError(f"{adapter}: no adapter_model.safetensors (pickled adapters are refused)")
    model = PeftModel.from_pretrained(load_model(base, allow_pickle=allow_pickle), adapter)
    return model.merge_and_unload().eval()
