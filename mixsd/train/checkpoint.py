"""Checkpoints (resume state) and exports (consolidated Hugging Face directories).

Layout: `RUN/checkpoints/step-<k>/` holds the backend's state (model, optimizer, scheduler: a
`state.pt`, or DeepSpeed's sharded files), `trainer.json` (the step reached) and one
`rng-rank<r>.pt` per process; `RUN/checkpoints/latest` names the newest COMPLETE checkpoint and is
replaced atomically after every process has written, so a kill at any moment leaves a resumable
run. The data order is a function of (seed, step) and needs no saving.
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

from mixsd.io import write_atomic


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


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
    torch.save(rng_state(), tag / f"rng-rank{rank}.pt")
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
    backend.load(tag)
    set_rng_state(torch.load(tag / f"rng-rank{rank}.pt", weights_only=False))
    return json.loads((tag / "trainer.json").read_text(encoding="utf-8"))["step"]


def export(backend, tokenizer, out: Path, rank: int) -> None:
    """A consolidated HF directory at `out` (from_pretrained loads it), written to a temporary
    name then renamed. ZeRO-3 shards are gathered first; tied embeddings stay tied (the module's
    own `save_pretrained` writes one copy)."""
    tmp = out.with_name(out.name + ".tmp")
    with backend.full_weights():
        if rank == 0:
            if tmp.exists():
                shutil.rmtree(tmp)
            state = {k: v.detach().cpu().clone() for k, v in backend.module.state_dict().items()}
            backend.module.save_pretrained(tmp, state_dict=state)
            tokenizer.save_pretrained(tmp)
    if rank == 0:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    _barrier()


def trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resumed run starts from) and
    any line that does not parse (a kill during its write leaves it partial)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            keep.append(line)
    write_atomic(path, "".join(line + "\n" for line in keep))
