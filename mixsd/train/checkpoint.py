"""Checkpoints (resume state) and exports (consolidated Hugging Face directories).

Layout: `RUN/checkpoints/step-<k>/` holds the backend's state (model, optimizer, scheduler: a
`state.pt`, or DeepSpeed's sharded files), `trainer.json` (the step reached) and one
`rng-rank<r>.json` per process; `RUN/checkpoints/latest` names the newest COMPLETE checkpoint and
is replaced atomically after every process has written, so a kill at any moment leaves a resumable
run. The data order is a function of (seed, step) and needs no saving.

Nothing here is read with pickle (a run directory may come from someone else): the RNG state is
JSON, `state.pt` is read with `weights_only=True` (`mixsd.safe_load`). Checkpoints written before
this (`rng-rank<r>.pt`, a pickle) are refused; `convert_pickled_rng` converts one by hand.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mixsd.errors import MixsdError
from mixsd.io import write_atomic


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict:
    """This process's RNG state as JSON-ready plain values (ints, floats, hex strings): Python's
    Mersenne Twister, NumPy's legacy global one, torch's CPU and (current) CUDA generators."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return _plain(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)


def _plain(python: tuple, numpy: tuple, cpu: torch.Tensor, cuda: torch.Tensor | None) -> dict:
    version, words, gauss = python
    kind, keys, pos, has_gauss, cached = numpy
    state = {
        "python": [version, list(words), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": cpu.numpy().tobytes().hex(),  # uint8 [5056]
    }
    if cuda is not None:
        state["cuda"] = cuda.numpy().tobytes().hex()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`'s values exactly (JSON floats round-trip bit for bit)."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if "cuda" in state:
        torch.cuda.set_rng_state(_bytes_tensor(state["cuda"]))


def _bytes_tensor(hex_text: str) -> torch.Tensor:
    return torch.tensor(list(bytes.fromhex(hex_text)), dtype=torch.uint8)


def save(run: Path, step: int, backend, rank: int) -> None:
    """Write checkpoint `step` (all processes call this), then point `latest` at it and remove
    the previous one."""
    root = run / "checkpoints"
    tag = root / f"step-{step}"
    if rank == 0:
        if tag.exists():  # left by a kill during a save of this very step
            shutil.rmtree(tag)
        tag.mkdir(parents=True)
    _barrier()
    backend.save(tag)
    write_atomic(tag / f"rng-rank{rank}.json", json.dumps(rng_state()))
    _barrier()
    if rank == 0:
        previous = latest(run)
        (tag / "trainer.json").write_text(json.dumps({"step": step}), encoding="utf-8")
        write_atomic(root / "latest", tag.name)
        if previous is not None and previous != tag:
            shutil.rmtree(previous, ignore_errors=True)
    _barrier()


def latest(run: Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    pointer = run / "checkpoints" / "latest"
    return (
        run / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
        if pointer.is_file()
        else None
    )


def load(run: Path, backend, rank: int) -> int:
    """Restore the latest checkpoint into `backend` and this process's RNG; the step reached
    (0 when there is none)."""
    tag = latest(run)
    if tag is None:
        return 0
    rng = tag / f"rng-rank{rank}.json"
    if not rng.is_file() and (tag / f"rng-rank{rank}.pt").is_file():
        raise MixsdError(
            f"{tag / f'rng-rank{rank}.pt'}: an older checkpoint's RNG state, a pickle that could "
            "run code when loaded, refused; if you trust this run, convert it by hand with "
            'python -c "from mixsd.train.checkpoint import convert_pickled_rng as c; '
            f"c('{tag}')\" and run again"
        )
    backend.load(tag)
    set_rng_state(json.loads(rng.read_text(encoding="utf-8")))
    return json.loads((tag / "trainer.json").read_text(encoding="utf-8"))["step"]


def convert_pickled_rng(tag: str | Path) -> None:
    """Rewrite an older checkpoint's pickled `rng-rank<r>.pt` files as `rng-rank<r>.json`.

    UNPICKLES them (`weights_only=False`: they may run code): only for a run you trust.
    """
    for old in sorted(Path(tag).glob("rng-rank*.pt")):
        state = torch.load(old, weights_only=False)  # the user vouched for this run
        plain = _plain(state["python"], state["numpy"], state["torch"], state.get("cuda"))
        write_atomic(old.with_suffix(".json"), json.dumps(plain))


def export(backend, tokenizer, out: Path, rank: int) -> None:
    """A consolidated HF directory at `out` (from_pretrained loads it). Tied embeddings stay tied
    (the module's own `save_pretrained` writes one copy)."""

    def write(tmp: Path, state: dict) -> None:
        backend.module.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)

    export_dir(backend, out, rank, write)


def export_dir(backend, out: Path, rank: int, write) -> None:
    """Every process calls it: ZeRO-3 shards are gathered first, then process 0 calls
    `write(tmp, state)` (state: the full CPU state dict) into a fresh temporary directory, which
    replaces `out` whole, so a kill never leaves a half-written export under its name."""
    tmp = out.with_name(out.name + ".tmp")
    with backend.full_weights():
        if rank == 0:
            if tmp.exists():
                shutil.rmtree(tmp)
            write(
                tmp, {k: v.detach().cpu().clone() for k, v in backend.module.state_dict().items()}
            )
    if rank == 0:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    _barrier()


def link_dir(src: Path, out: Path) -> None:
    """`out` as a copy of the directory `src` made of hard links (no bytes copied), written to a
    temporary name and renamed like an export, so a kill never leaves half of it under `out`."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, copy_function=os.link)
    os.replace(tmp, out)


def trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resumed run starts from) and
    any line that does not parse (a kill during its write leaves it partial). At step 0 (no
    checkpoint: a killed run without resume state starts over) every line goes, its data line
    included, so the file never holds two runs' lines."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if step > 0 and isinstance(record, dict) and record.get("step", 0) <= step:
            keep.append(line)
    write_atomic(path, "".join(line + "\n" for line in keep))
