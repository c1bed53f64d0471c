"""What bf16 changes on a bf16 CPU, in numbers: the target NLL and a training loss curve.

On SmolLM2-135M-Instruct and the demo's 32 facts (configs/demo/facts.jsonl):
  (a) the per-token NLL of the same targets scored by the model in float32 and in bfloat16
      (the demo's SFT targets from the references, and MixSD targets at λ 0.3 generated here in
      float32): mean NLL in each precision, mean and max |difference| per token;
  (b) one short training run (configs/demo/train.yaml, SFT targets, same seed) with
      `--dtype float32` and `--dtype bfloat16` (bf16 autocast over fp32 weights): the two loss
      curves side by side, and each run's CPU seconds (children's user+sys, the load shared).

Every stage is a `mixsd` command, skipped when its output is there (a rerun only rescores).

    python benchmarks/bf16_effect.py [--model data/models/smollm2] [--work build/bf16_effect]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from mixsd.outputs import MANIFEST

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "configs/demo/facts.jsonl"


def mixsd(*args: str) -> float:
    """Run `python -m mixsd *args` (output shown); the CPU seconds it took (user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "mixsd", *args], check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_targets(model: str, work: Path) -> dict[str, Path]:
    """The demo's SFT targets (references) and MixSD targets at λ 0.3 (fp32, no retries)."""
    sets = {"sft": work / "targets/sft", "mixsd": work / "targets/mixsd"}
    if not (sets["sft"] / MANIFEST).is_file():
        mixsd("targets", "from-references", str(FACTS), "--model", model, "--out", str(sets["sft"]))
    if not (sets["mixsd"] / MANIFEST).is_file():
        mixsd(
            "generate", "--config", "configs/demo/generate.yaml", "--model", model,
            "--input", str(FACTS), "--out", str(sets["mixsd"]), "--lam", "0.3",
            "--max-retries", "0", "--dtype", "float32", "--seed", "0",
        )  # fmt: skip
    return sets


def nll_table(model: str, sets: dict[str, Path]) -> list[dict]:
    """Per target label: tokens, mean NLL in fp32 and bf16, mean and max |per-token diff|."""
    from mixsd.data.models import load_model
    from mixsd.evaluate.nll import target_set_nll

    per_dtype = {}
    for dtype in ("float32", "bfloat16"):
        m = load_model(model, "cpu", dtype)
        per_dtype[dtype] = {
            f"{name}/{label}": v
            for name, root in sets.items()
            for label, v in target_set_nll(m, root, batch_size=32).items()
        }
    rows = []
    for label, fp32 in per_dtype["float32"].items():
        bf16 = per_dtype["bfloat16"][label]  # the same rows in the same order
        diff = np.abs(bf16.astype(np.float64) - fp32)
        rows.append(
            {
                "targets": label,
                "tokens": len(fp32),
                "nll_fp32": float(fp32.mean()),
                "nll_bf16": float(bf16.mean()),
                "mean_abs_diff": float(diff.mean()),
                "max_abs_diff": float(diff.max()),
            }
        )
    return rows


def train_curves(model: str, sft: Path, work: Path, steps: int) -> tuple[dict, dict]:
    """{dtype: [loss per step]} and {dtype: CPU seconds} of one run per precision."""
    curves, cpu = {}, {}
    for dtype in ("float32", "bfloat16"):
        run = work / f"runs/{dtype}"
        if not (run / "model").is_dir():
            cpu[dtype] = mixsd(
                "train", "--config", "configs/demo/train.yaml", "--model", model,
                "--targets", str(sft), "--out", str(run), "--dtype", dtype,
                "--steps", str(steps), "--no-export-every-epoch", "--seed", "0",
            )  # fmt: skip
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        curves[dtype] = [x["loss"] for x in lines if "loss" in x and x.get("event") is None]
        assert [x["dtype"] for x in lines if x.get("event") == "data"] == [dtype]
    return curves, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="data/models/smollm2")
    p.add_argument("--work", default="build/bf16_effect")
    p.add_argument("--steps", type=int, default=16)
    a = p.parse_args()
    work = (ROOT / a.work).resolve()
    import torch

    print(f"CPU has AVX-512 BF16: {torch.cpu._is_avx512_bf16_supported()}, "
          f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    sets = make_targets(a.model, work)
    table = nll_table(a.model, sets)
    print("\n(a) per-token NLL (nats) of the same targets, SmolLM2-135M-Instruct in fp32 vs bf16")
    print(f"{'targets':16} {'tokens':>6} {'fp32':>8} {'bf16':>8} {'mean|d|':>8} {'max|d|':>8}")
    for r in table:
        print(f"{r['targets']:16} {r['tokens']:6d} {r['nll_fp32']:8.4f} {r['nll_bf16']:8.4f} "
              f"{r['mean_abs_diff']:8.4f} {r['max_abs_diff']:8.4f}")  # fmt: skip
    curves, cpu = train_curves(a.model, sets["sft"], work, a.steps)
    print(
        f"\n(b) training loss, configs/demo/train.yaml on the SFT targets, {a.steps} steps, seed 0"
    )
    print(f"{'step':>4} {'fp32':>8} {'bf16':>8} {'diff':>8}")
    for i, (f, b) in enumerate(zip(curves["float32"], curves["bfloat16"], strict=True), 1):
        print(f"{i:4d} {f:8.4f} {b:8.4f} {b - f:+8.4f}")
    if cpu:
        print("CPU seconds per run (whole command):", {k: round(v, 1) for k, v in cpu.items()})
    (work / "bf16_effect.json").write_text(
        json.dumps({"nll": table, "loss": curves, "cpu_s": cpu}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
