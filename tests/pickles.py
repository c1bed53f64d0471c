"""Crafted pickles: files that would run code (create a marker file) if anything unpickled them."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


class WritesMarker:
    """Unpickling this calls `open(marker, "w")`: the file appears only if the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_crafted(path: Path, marker: Path) -> Path:
    """A `torch.save` file at `path` whose loading with pickle creates `marker`."""
    torch.save({"weights": torch.zeros(2), "payload": WritesMarker(marker)}, path)
    return path


def pickled_model_dir(tiny_model_dir: Path, out: Path, weights: dict | None = None) -> Path:
    """A copy of the tiny model with `pytorch_model.bin` (the `weights` state dict, else a crafted
    pickle creating `out/../marker`) instead of its safetensors."""
    shutil.copytree(tiny_model_dir, out)
    (out / "model.safetensors").unlink()
    if weights is None:
        write_crafted(out / "pytorch_model.bin", out.parent / "marker")
    else:
        torch.save(weights, out / "pytorch_model.bin")
    return out
