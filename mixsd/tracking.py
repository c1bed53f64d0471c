"""Experiment trackers (`--report-to`): the numbers a stage writes, also sent to TensorBoard,
Weights & Biases or Trackio.

The stage's own files (train's `metrics.jsonl`, evaluate's `metrics.json`) stay the source of
truth; a `Tracker` only copies what they hold. Each tracker is an optional extra
(`pip install 'mixsd[wandb]'`): `check_report_to` refuses a missing one in the config check,
before any work. Names come from the output folder `RUN`: TensorBoard writes `RUN/tensorboard`,
wandb's project is `mixsd` and its run is named after RUN's folder name (files in `RUN/wandb`;
online or offline as wandb is set up, e.g. `WANDB_MODE=offline`), Trackio's project is `mixsd`
in its local store (`TRACKIO_DIR`, default `~/.cache/huggingface/trackio`).
"""

from __future__ import annotations

import atexit
import importlib.util
from pathlib import Path
from typing import Any

REPORT_TO = ("none", "tensorboard", "wandb", "trackio")
PROJECT = "mixsd"
REPORT_TO_HELP = (
    "Also log the metrics to: none | tensorboard (in OUT/tensorboard) | wandb (project mixsd, run "
    "named after the --out folder, files in OUT/wandb) | trackio (project mixsd, run named after "
    "the --out folder, local store: TRACKIO_DIR); repeatable or comma list."
)
# The module each tracker imports (`tensorboard`: torch's SummaryWriter needs the package).
_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def check_report_to(names: list[str]) -> list[str]:
    """The trackers of `--report-to` (comma lists split, `none` and repeats dropped); ValueError
    for an unknown name or a tracker whose extra is not installed."""
    out: list[str] = []
    for name in (n.strip() for item in names for n in item.split(",")):
        if name not in REPORT_TO:
            raise ValueError(
                f"option 'report_to': expected some of {', '.join(REPORT_TO)}, got {name!r}"
            )
        if name != "none" and name not in out:
            if importlib.util.find_spec(_MODULES[name]) is None:
                raise ValueError(
                    f"--report-to {name}: {name} is not installed; pip install 'mixsd[{name}]'"
                )
            out.append(name)
    return out


def numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) record, keys joined by "/" under `prefix`: what a tracker plots.
    Strings, lists, None and booleans are left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


class Tracker:
    """The chosen trackers of one run dir (`names` empty: every call does nothing). `log` fans a
    metrics dict out at a step, `log_images` PNG files, `close` flushes and ends them all."""

    def __init__(self, names: list[str], run_dir: str | Path, config: dict[str, Any]):
        run_dir = Path(run_dir)
        self._tb = self._wandb = self._trackio = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if "wandb" in names:
            import wandb

            self._wandb = wandb.init(
                project=PROJECT, name=run_dir.name, dir=str(run_dir), config=config
            )
        if "trackio" in names:
            import trackio

            # embed=False: no local dashboard is started (`trackio show` opens one); no system
            # metrics: the tracker holds what the stage's files hold.
            self._trackio = trackio.init(
                project=PROJECT,
                name=run_dir.name,
                config=config,
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
            )
        atexit.register(self.close)  # an error ends the run: what was logged is flushed

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log `metrics` (name -> number) at `step`."""
        if not metrics:
            return
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)
        if self._trackio is not None:
            self._trackio.log(metrics, step=step)

    def log_images(self, images: dict[str, Path], step: int) -> None:
        """Log PNG files (name -> path) at `step`."""
        if not images:
            return
        if self._tb is not None:
            import numpy as np
            from PIL import Image

            for key, path in images.items():
                pixels = np.asarray(Image.open(path).convert("RGB"))  # [height, width, 3]
                self._tb.add_image(key, pixels, step, dataformats="HWC")
        if self._wandb is not None:
            import wandb

            self._wandb.log({k: wandb.Image(str(p)) for k, p in images.items()}, step=step)
        if self._trackio is not None:
            import trackio

            self._trackio.log({k: trackio.Image(str(p)) for k, p in images.items()}, step=step)

    def close(self) -> None:
        """Flush and end every tracker (the run's files are complete after this)."""
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._trackio is not None:
            self._trackio.finish()
        self._tb = self._wandb = self._trackio = None


def track_report(names: list[str], out: str | Path, config: dict[str, Any]) -> None:
    """Send an evaluate report (`out/metrics.json`, written) to the trackers `names`, at step 0:
    its numbers (`base/...`, `checkpoints/<run>/<checkpoint>/...`, `nll/...`, `fisher/...`,
    `counts/...`) and its plots as images (`plots/<name>`)."""
    import json

    out = Path(out)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    checkpoints = {
        "/".join(filter(None, (c["run"], c["checkpoint"]))): c for c in metrics["checkpoints"]
    }
    results = {k: v for k, v in metrics.items() if k not in ("config", "checkpoints")}
    tracker = Tracker(names, out, config)
    tracker.log(numbers({**results, "checkpoints": checkpoints}), 0)
    tracker.log_images({f"plots/{k}": out / name for k, name in metrics["plots"].items()}, 0)
    tracker.close()
