"""Training throughput: mixsd's trainer (packing) vs Hugging Face `Trainer`, side by side.

Same model (a Llama, hidden 256 / 4 layers by default, random init), same data (variable-length
prompt + target sequences with a realistic, long-tailed length spread), same global batch, same
optimizer settings, fp32 on CPU. Throughput = real (non-padding) tokens per second of wall time
between the end of the first optimizer step and the end of the last (warm-up excluded), measured
the same way for both. HF Trainer runs twice: with its usual padding collator (the baseline) and
with `DataCollatorWithFlattening` (its own packing), for reference.

    python benchmarks/train_bench.py [--steps 12 --batch-size 16 --hidden 256 --layers 4]

Prints the real-token fraction of each and, last, the ratio mixsd / HF Trainer (goal >= 1.2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def make_rows(n: int, vocab: int, eos: int, seed: int) -> list[dict]:
    """`n` SFT rows, prompt 20-400 and target 8-600 tokens (log-normal: most short, a long tail)."""
    rng = np.random.default_rng(seed)
    p_len = np.clip(rng.lognormal(4.3, 0.6, n), 20, 400).astype(int)
    t_len = np.clip(rng.lognormal(4.5, 0.8, n), 8, 600).astype(int)
    rows = []
    for i in range(n):
        prompt = rng.integers(10, vocab, p_len[i]).tolist()
        target = rng.integers(10, vocab, t_len[i] - 1).tolist() + [eos]
        rows.append(
            {
                "id": f"r{i}",
                "sample": 0,
                "attempt": 0,
                "lam": None,
                "kind": "sft",
                "prompt_ids": prompt,
                "expert_prompt_ids": prompt,
                "target_ids": target,
                "target_text": "",
                "source": None,
                "expert_logprob": None,
                "naive_logprob": None,
                "finish_reason": "stop",
                "correct": True,
                "reference": "",
                "answer": "",
            }
        )
    return rows


def bench_mixsd(model_dir: Path, set_dir: Path, out: Path, args) -> tuple[float, float, float]:
    """(real tokens per CPU-second, per wall-second, real-token fraction) of mixsd's trainer."""
    import types

    from mixsd.config import load_config
    from mixsd.train import TrainConfig, loop, run

    cfg = load_config(
        TrainConfig,
        None,
        model=str(model_dir),
        targets=[str(set_dir)],
        out=out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=1e-4,
        warmup_steps=2,
        seed=0,
    )
    loop.time = types.SimpleNamespace(
        perf_counter=time.process_time, time=time.time
    )  # step timer: CPU
    try:
        run(cfg)
    finally:
        loop.time = time
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s][1:]
    tokens = sum(s["tokens"] for s in steps)
    cpu = sum(s["tokens"] / s["tokens_per_s"] for s in steps)
    slots = sum(s["tokens"] / s["real_token_fraction"] for s in steps)
    return (
        tokens / cpu,
        tokens / (steps[-1]["time"] - steps[0]["time"] + cpu / len(steps)),
        tokens / slots,
    )


def bench_hf(
    model_dir: Path, rows: list[dict], out: Path, args, flatten: bool
) -> tuple[float, float, float]:
    """(real tokens per CPU-second, per wall-second, real-token fraction) of HF Trainer."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    data = Dataset.from_list(
        [
            {
                "input_ids": r["prompt_ids"] + r["target_ids"],
                "labels": [-100] * len(r["prompt_ids"]) + r["target_ids"],
            }
            for r in rows
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base = DataCollatorWithFlattening() if flatten else _PadCollator()
    seen: list[tuple[int, int]] = []  # (real, fed) tokens per batch, in step order

    def collate(features):
        batch = base(features)
        seen.append((sum(len(f["input_ids"]) for f in features), batch["input_ids"].numel()))
        return batch

    ends: list[float] = []
    cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            cpu.append(-time.process_time())

        def on_step_end(self, *a, **k):
            cpu[-1] += time.process_time()
            ends.append(time.time())

    targs = TrainingArguments(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4,
        warmup_steps=2,
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="constant_with_warmup",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=0,
        dataloader_drop_last=True,
    )
    Trainer(
        model=model, args=targs, train_dataset=data, data_collator=collate, callbacks=[Clock()]
    ).train()
    real = sum(r for r, _ in seen[1 : args.steps])
    fed = sum(f for _, f in seen[1 : args.steps])
    wall = ends[-1] - ends[0] + sum(cpu[1:]) / (args.steps - 1)  # n-1 intervals + one step
    return real / sum(cpu[1:]), real / wall, real / fed


class _PadCollator:
    """What `DataCollatorForSeq2Seq(padding=True)` does: right-pad `input_ids` (0) and `labels`
    (-100) to the batch's longest, with an attention mask."""

    def __call__(self, features):
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros(len(features), width, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros(len(features), width, dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(f["input_ids"]),
                torch.tensor(f["labels"]),
                1,
            )
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU clock needs 1)")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from mixsd.data.models import build_tiny_model
    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.writer import TargetSetWriter

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_model(tmp / "model", hidden=args.hidden, layers=args.layers, heads=4)
        tok = AutoTokenizer.from_pretrained(model_dir)
        rows = make_rows(args.rows, len(tok), tok.eos_token_id, seed=0)
        with TargetSetWriter(tmp / "set", {"tokenizer": tokenizer_fingerprint(tok)}) as w:
            w.write(rows)
        lengths = [len(r["prompt_ids"]) + len(r["target_ids"]) for r in rows]
        print(
            f"model: Llama hidden {args.hidden}, {args.layers} layers, vocab {len(tok)}; {args.rows} sequences, "
            f"length mean {np.mean(lengths):.0f} (min {min(lengths)}, max {max(lengths)}); global batch "
            f"{args.batch_size}, {args.steps} steps, fp32 CPU, {torch.get_num_threads()} torch thread(s)"
        )
        ours = bench_mixsd(model_dir, tmp / "set", tmp / "mixsd", args)
        hf_flat = bench_hf(model_dir, rows, tmp / "hf-flat", args, flatten=True)
        hf = bench_hf(model_dir, rows, tmp / "hf", args, flatten=False)
    print(f"{'':34}{'tok/CPU-s':>10}{'tok/wall-s':>11}  real-token fraction")
    for name, (c, w, f) in [
        ("mixsd trainer (packing)", ours),
        ("HF Trainer + flattening collator", hf_flat),
        ("HF Trainer (padding collator)", hf),
    ]:
        print(f"{name:34}{c:10.0f}{w:11.0f}  {f:.3f}")
    print(
        f"ratio mixsd / HF Trainer + flattening: {ours[0] / hf_flat[0]:.2f}x CPU, {ours[1] / hf_flat[1]:.2f}x wall"
    )
    print(
        f"ratio mixsd / HF Trainer: {ours[0] / hf[0]:.2f}x (CPU clock), {ours[1] / hf[1]:.2f}x (wall clock)"
    )


if __name__ == "__main__":
    main()
