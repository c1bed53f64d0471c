"""The models under evaluation: finding a run's checkpoints, checking they share the base's
tokenizer, loading their weights, and the one seam to decoding (`greedy_answers`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from mixsd.data.models import load_model, load_tokenizer
from mixsd.errors import MixsdError
from mixsd.train.lora import adapter_dir


def greedy_answers(
    model_dir,
    prompts_ids: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    device: str = "cpu",
    dtype: str = "float32",
    allow_pickle: bool = False,
) -> list[str]:
    """Closed-book greedy answers (T=0) of the model in `model_dir`, one text per prompt, in order.

    The one seam between evaluation and decoding: loads the model, then
    `mixsd.generate.greedy.greedy_answers` (shared with the trainer's recall).
    """
    from mixsd.generate import greedy

    tokenizer = load_tokenizer(model_dir)
    model = load_checkpoint(model_dir, device, dtype, allow_pickle)
    return greedy.greedy_answers(
        model, tokenizer, prompts_ids, max_new_tokens, batch_size, f"answers {Path(model_dir).name}"
    )


def resolve_models(paths: list[str]) -> list[tuple[str, str, Path]]:
    """(run label, checkpoint name, HF dir) for every checkpoint, in training order.

    A run dir (holding `exports/` or `model/`) gives `exports/epoch-<k>` by k, then `model` as
    `final` unless its weights equal the last export's; an HF dir (holding `config.json`) gives
    itself with no checkpoint name, and so does a PEFT adapter dir (adapter_config.json: a LoRA
    run's adapter, its base named there). Labels are the dir names.
    """
    out = []
    names = [Path(p).name for p in paths]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise MixsdError(f"two models are named '{twice}' (labels are dir names): rename one dir")
    for p in map(Path, paths):
        exports = sorted(
            (d for d in (p / "exports").glob("epoch-*") if re.fullmatch(r"epoch-\d+", d.name)),
            key=lambda d: int(d.name.split("-")[1]),
        )
        final = p / "model"
        if exports or final.is_dir():
            found = [(p.name, d.name, d) for d in exports]
            if final.is_dir() and not (exports and _same_weights(final, exports[-1])):
                found.append((p.name, "final", final))
            out += found
        elif (p / "config.json").is_file() or adapter_dir(p) is not None:
            out.append((p.name, "", p))
        else:
            raise MixsdError(
                f"{p}: not a run dir (exports/, model/) nor an HF model dir (config.json) "
                "nor a LoRA adapter dir (adapter_config.json)"
            )
    return out


def replaced_share(path: str | Path) -> float | None:
    """The share of a run's MixSD rows that it trained on their reference answers (`--failed
    reference`), from the last `data` line of `RUN/metrics.jsonl`; None for an HF dir or a run
    that records none."""
    metrics = Path(path) / "metrics.jsonl"
    if not metrics.is_file():
        return None
    share = None
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a kill during a write leaves a partial last line
            continue
        if isinstance(record, dict) and record.get("event") == "data":
            share = record.get("replaced_share")
    return share


def check_tokenizers(tokenizer, model_dirs: list[Path], target_sets: list[str]) -> None:
    """Token ids are the truth: every checkpoint and target set must share the base's tokenizer."""
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.reader import read_manifest

    want = tokenizer_fingerprint(tokenizer)
    for d in model_dirs:
        if tokenizer_fingerprint(load_tokenizer(d)) != want:
            raise MixsdError(f"{d}: its tokenizer differs from the base model's")
    for t in target_sets:
        made_with = read_manifest(t)["provenance"].get("tokenizer")
        if made_with != want:
            raise MixsdError(
                f"{t}: made with another tokenizer ({made_with}) than the base's ({want})"
            )


def cpu_params(path, allow_pickle: bool = False) -> dict:
    """`{name: tensor}` of a saved model's parameters, fp32 on CPU (tied weights once)."""
    model = load_checkpoint(path, allow_pickle=allow_pickle)
    return {n: p.detach() for n, p in model.named_parameters()}


def load_checkpoint(path, device: str = "cpu", dtype: str = "float32", allow_pickle: bool = False):
    """The eval-mode model of a checkpoint dir: an HF dir (a LoRA run's merged export is one), or
    an adapter-only export / PEFT adapter dir, its adapter merged into the base its
    adapter_config.json names (`mixsd.train.lora.load_merged`; safetensors only)."""
    import torch

    if not (Path(path) / "config.json").is_file() and adapter_dir(Path(path)) is not None:
        from mixsd.train.lora import load_merged

        model = load_merged(Path(path), allow_pickle)
        return model.to(device=device, dtype=getattr(torch, dtype)).eval()
    return load_model(path, device, dtype, allow_pickle)


def _same_weights(a: Path, b: Path) -> bool:
    """Do two model dirs hold the same weights? A trainer's final `model/` is usually its last
    export linked (the same files: no need to read 2 x 650 MB), else the bytes are compared."""
    files_a, files_b = sorted(a.rglob("*.safetensors")), sorted(b.rglob("*.safetensors"))
    if len(files_a) == len(files_b) and all(map(os.path.samefile, files_a, files_b)):
        return True
    return _weights_digest(a) == _weights_digest(b)


def _weights_digest(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.rglob("*.safetensors")):  # a LoRA export's adapter/ too
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()
