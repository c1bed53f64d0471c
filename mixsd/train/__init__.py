"""The train stage: fine-tune a causal LM on target sets (plain PyTorch or DeepSpeed ZeRO 0-3).

Entry: `run(cfg: TrainConfig) -> RUN/model`. Heavy imports happen inside, so importing the config
stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from mixsd.train.config import TrainConfig


def run(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Train as `cfg` says (resuming RUN's latest checkpoint); returns the exported `RUN/model`."""
    from mixsd.train.loop import run as _run

    return _run(cfg, stop_after)


__all__ = ["TrainConfig", "run"]
