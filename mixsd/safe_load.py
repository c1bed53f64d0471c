"""Nothing executable from a shared model or run: the one rule every load path follows.

Pickle (`torch.load(weights_only=False)`, `pytorch_model.bin` read by a permissive loader) can run
any code while it loads, and teams pass models and run directories to each other. So models are
read from safetensors only (`use_safetensors=True` for transformers, `load_format="safetensors"`
for vLLM); a directory whose weights are only pickled is refused in one line unless the user
passes `--allow-pickle` for a model they trust (even then transformers and vLLM read `.bin` with
torch's restricted `weights_only` unpickler). Resume state is JSON or tensors read through
`load_tensors`; DeepSpeed's checkpoint files go through `weights_only_checkpoints`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from mixsd.errors import MixsdError

# Weight files that are pickles (transformers' pytorch_model*.bin, vLLM's *.pt fallback, ...).
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def safetensors_only(model, allow_pickle: bool = False) -> bool:
    """Must loading `model` (a local directory or a hub id) read safetensors only? True unless
    `allow_pickle`; a local directory with pickled weights and no `*.safetensors` is refused in
    one line (a hub id without safetensors is refused by the loader itself)."""
    if allow_pickle:
        return False
    d = Path(str(model)).expanduser()
    if d.is_dir() and not any(d.glob("*.safetensors")):
        pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in d.glob(pattern))
        if pickled:
            raise MixsdError(
                f"{model}: its weights are pickled ({pickled[0]}), which can run code when "
                "loaded; convert them to safetensors, or pass --allow-pickle if you trust "
                "this model"
            )
    return True


def load_tensors(
    path: Path, map_location=None, held: str = "tensors and plain numbers", hint: str = ""
):
    """`torch.load` of tensors, containers and plain numbers only (`weights_only=True`: no code
    runs; classes allowed by an enclosing `torch.serialization.safe_globals` too); a file holding
    anything else is refused in one line naming it (`held`: what it may hold; `hint`: what to do)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise MixsdError(
            f"{path}: holds more than {held}; refused, since loading it could run code{hint}"
        ) from None


def deepspeed_globals() -> list:
    """The classes DeepSpeed pickles into a ZeRO checkpoint besides tensors and plain containers
    (`torch.serialization.get_unsafe_globals_in_checkpoint` on ZeRO 0-3 runs): data holders whose
    construction runs no code of the file's choosing."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def weights_only_checkpoints(engine) -> None:
    """Make `engine.load_checkpoint` read its files with torch's `weights_only` unpickler,
    allowing only `deepspeed_globals()`: DeepSpeed's own `TorchCheckpointEngine` unpickles them
    with `weights_only=False`, so a crafted run directory would run code on resume. Every file
    it reads goes through `engine.checkpoint_engine.load`, except universal checkpoints
    (`"checkpoint": {"load_universal": true}`), which DeepSpeed unpickles itself: refused."""
    import torch

    if engine.load_universal_checkpoint():
        raise MixsdError(
            "DeepSpeed config: checkpoint.load_universal makes DeepSpeed unpickle the checkpoint "
            "(code could run); pass --allow-pickle to resume a universal checkpoint you trust"
        )

    def load(path, map_location=None):
        with torch.serialization.safe_globals(deepspeed_globals()):
            held, hint = (
                "tensors and DeepSpeed's own state",
                " (--allow-pickle resumes a run you trust)",
            )
            return load_tensors(path, map_location, held, hint)

    engine.checkpoint_engine.load = load
