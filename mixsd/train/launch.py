"""`--nproc N`: start N local processes with torchrun, unless a launcher already started us.

Under `torchrun`, `deepspeed` (with `--no_local_rank`) or a cluster scheduler that sets the
torch.distributed variables (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR`), training runs in
place; multi-node runs use those launchers' own options (hostfile, node rank).
"""

from __future__ import annotations

import os
import subprocess
import sys


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that reruns `mixsd <argv>` as `nproc` local processes. `--nproc` is dropped
    from `argv`: torchrun would take it for its own `--nproc-per-node` (argparse abbreviations),
    and the workers, under a launcher, do not need it."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "mixsd",
        *args,
    ]


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run `mixsd <argv>` under torchrun with `nproc` processes; the exit code. On a machine without
    a GPU, DeepSpeed is told to use its CPU accelerator (gloo)."""
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(torchrun_command(nproc, argv), env=env).returncode
