"""Training throughput on SmolLM2-135M-Instruct: mixsd's trainer vs Hugging Face `Trainer` with
`DataCollatorWithFlattening` (its packing: no padding, position ids), side by side.

Same model (fp32 weights, SDPA attention for both), same data (KGFact-style rows written as a
target set, read by mixsd's trainer from the set and by HF `Trainer` as `input_ids` + `labels`
with the prompt masked), the same batches in the same order (mixsd's data order, fed to HF
sequentially), the same number of optimizer steps, AdamW with the same LR, betas, weight decay,
clip and constant schedule, no evaluation and no saving. Precision: fp32, and bf16 as both do it
on CPU (autocast over fp32 weights: HF `bf16=True, use_cpu=True`, mixsd `--dtype bfloat16`).

Throughput = tokens per CPU-second of the optimizer steps after the first (warm-up), counted for
both from the step's start to the end of its update (HF: its step callbacks, so HF's collation is
not counted; mixsd: its metrics, packing included), on `--threads` torch threads. CPU time,
because the machine may be shared: wall time under load says nothing. For each precision the
two run back to back in one process, in ABBA order (HF, mixsd for fp32; mixsd, HF for bf16).
Checkpoints and exports are skipped in mixsd's run as HF saves nothing (they are outside the
timed steps anyway).

    python benchmarks/train_bench.py [--quick] [--steps 4 --batch-size 16 --threads 1]

Prints, per precision, target and total tokens per CPU-second of each, the ratio mixsd / HF
(goal >= 1.5), CPU seconds per step and the last step's loss (equal in fp32: same batches, same
update). The ratio grows with the batch: the flattening collator puts the whole batch in one row,
and SDPA then computes the full [tokens, tokens] score matrix under a block-diagonal mask, while
mixsd's rows are as wide as the longest sequence (at batch 4 the two are even).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import types
from pathlib import Path

import numpy as np

MODEL = Path(__file__).resolve().parents[1] / "data" / "models" / "smollm2"
LR = 1e-5

FIRST = ["Vorlak", "Tessine", "Quillon", "Marabeth", "Ostrin", "Zeluna", "Harkwin", "Ildra"]
LAST = ["Drennick", "Solvaine", "Kurtabel", "Ombreth", "Fayling", "Castrove", "Pellwin"]
PLACES = ["Ondera", "Vashmoor", "Kettleby Reach", "Saint Imbry", "the Corvane Isles", "Lunthe"]
JOBS = ["glass engraver", "river surveyor", "court astronomer", "lute maker", "cartographer"]


def make_rows(n: int, tokenizer, seed: int) -> list[dict]:
    """`n` KGFact-style target rows: an invented person's question through the model's chat
    template (the prompt), and an answer of 100-150 tokens ending in EOS (the target)."""
    from mixsd.data.templates import render_user_turn

    rng = np.random.default_rng(seed)
    eos = tokenizer.eos_token_id
    rows = []
    for i in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        place, job = rng.choice(PLACES), rng.choice(JOBS)
        question = f"Where was {name} born, and what is {name} known for?"
        sentences = [f"{name} was born in {place} and worked as a {job}."]
        while len(sentences) < 12:
            year, other = int(rng.integers(1700, 1990)), rng.choice(PLACES)
            sentences.append(
                f"In {year}, {name} moved to {other}, where the local guild of "
                f"{rng.choice(JOBS)}s awarded {name} its medal for {rng.choice(JOBS)} work."
            )
        text = " ".join(sentences)
        n_target = int(rng.integers(100, 151))
        target = tokenizer.encode(text, add_special_tokens=False)[: n_target - 1] + [eos]
        prompt = list(render_user_turn(tokenizer, question))
        rows.append(
            {
                "id": f"f{i}",
                "sample": 0,
                "attempt": 0,
                "lam": None,
                "kind": "sft",
                "prompt_ids": prompt,
                "expert_prompt_ids": prompt,
                "target_ids": target,
                "target_text": tokenizer.decode(target),
                "source": None,
                "expert_logprob": None,
                "naive_logprob": None,
                "finish_reason": "stop",
                "correct": True,
                "reference": text,
                "answer": place,
            }
        )
    return rows


def step_order(n: int, args) -> list[int]:
    """The row indices of mixsd's first `args.steps` optimizer steps, in order (HF gets them in
    this order, so both train on the same batches)."""
    from mixsd.train import schedule

    return [
        int(i)
        for s in range(args.steps)
        for i in schedule.step_indices(n, args.batch_size, 0, s)[1]
    ]


def bench_mixsd(set_dir: Path, out: Path, dtype: str, args) -> dict:
    """Target and total tokens per CPU-second of mixsd's trainer over steps 2.. (see module doc)."""
    from mixsd.config import load_config
    from mixsd.train import TrainConfig, checkpoint, loop, run

    cfg = load_config(
        TrainConfig,
        None,
        model=str(args.model),
        targets=[str(set_dir)],
        out=out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=LR,
        warmup_steps=0,
        seed=0,
        dtype=dtype,
    )
    save, export = checkpoint.save, loop._export
    # The step timer on the CPU clock; no checkpoint, no export (HF saves nothing either).
    loop.time = types.SimpleNamespace(perf_counter=time.process_time, time=time.time)
    checkpoint.save, loop._export = (lambda *a, **k: None), (lambda *a, **k: None)
    try:
        run(cfg)
    finally:
        loop.time, checkpoint.save, loop._export = time, save, export
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s][1:]
    cpu = sum(s["tokens"] / s["tokens_per_s"] for s in steps)
    return {
        "target": sum(s["target_tokens"] for s in steps) / cpu,
        "total": sum(s["tokens"] for s in steps) / cpu,
        "cpu_s_per_step": cpu / len(steps),
        "loss": steps[-1]["loss"],
    }


def bench_hf(rows: list[dict], order: list[int], out: Path, bf16: bool, args) -> dict:
    """Target and total tokens per CPU-second of HF `Trainer` + `DataCollatorWithFlattening`
    over steps 2.. (see module doc)."""
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
                "input_ids": rows[i]["prompt_ids"] + rows[i]["target_ids"],
                "labels": [-100] * len(rows[i]["prompt_ids"]) + rows[i]["target_ids"],
            }
            for i in order
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa"
    )
    flatten = DataCollatorWithFlattening()
    seen: list[tuple[int, int]] = []  # (target, total) tokens per batch, in step order

    def collate(features):
        seen.append(
            (
                sum(sum(x != -100 for x in f["labels"]) for f in features),
                sum(len(f["input_ids"]) for f in features),
            )
        )
        return flatten(features)

    cpu: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            cpu.append(-time.process_time())

        def on_step_end(self, *a, **k):
            cpu[-1] += time.process_time()

    class Losses(Trainer):
        def training_step(self, *a, **k):
            loss = super().training_step(*a, **k)
            losses.append(float(loss))
            return loss

    targs = TrainingArguments(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=LR,
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        bf16=bf16,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        seed=0,
    )
    Losses(
        model=model, args=targs, train_dataset=data, data_collator=collate, callbacks=[Clock()]
    ).train()
    timed = seen[1 : args.steps]
    seconds = sum(cpu[1:])
    return {
        "target": sum(t for t, _ in timed) / seconds,
        "total": sum(n for _, n in timed) / seconds,
        "cpu_s_per_step": seconds / (args.steps - 1),
        "loss": losses[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps (the first untimed)")
    ap.add_argument("--batch-size", type=int, default=16, help="mixsd's default batch")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--quick", action="store_true", help="2 steps (1 timed)")
    args = ap.parse_args()
    if args.quick:
        args.steps = 2

    import torch
    from transformers import AutoTokenizer

    from mixsd.targets.provenance import tokenizer_fingerprint
    from mixsd.targets.writer import TargetSetWriter

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    rows = make_rows(args.rows, tok, seed=0)
    order = step_order(len(rows), args)
    prompt = np.mean([len(rows[i]["prompt_ids"]) for i in order])
    target = np.mean([len(rows[i]["target_ids"]) for i in order])
    print(
        f"model: {args.model.name}; {args.rows} rows, prompt {prompt:.0f} + target {target:.0f} "
        f"tokens on average; batch {args.batch_size}, {args.steps} steps (the first untimed), "
        f"{torch.get_num_threads()} torch thread(s), tokens per CPU-second"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        provenance = {"tokenizer": tokenizer_fingerprint(tok), "model": {"name": args.model.name}}
        with TargetSetWriter(tmp / "set", provenance) as w:
            w.write(rows)
        for k, dtype in enumerate(args.dtypes.split(",")):
            runs = {
                "hf": lambda d=dtype: bench_hf(rows, order, tmp / f"hf-{d}", d == "bfloat16", args),
                "mixsd": lambda d=dtype: bench_mixsd(tmp / "set", tmp / f"mixsd-{d}", d, args),
            }
            names = ["hf", "mixsd"] if k % 2 == 0 else ["mixsd", "hf"]  # ABBA
            results[dtype] = {name: runs[name]() for name in names}
    print(
        f"{'':10}{'HF target':>10}{'total':>8}{'mixsd target':>14}{'total':>8}"
        f"{'ratio':>7}{'HF s/step':>11}{'mixsd s/step':>14}{'HF loss':>9}{'mixsd loss':>11}"
    )
    for dtype, r in results.items():
        hf, ours = r["hf"], r["mixsd"]
        print(
            f"{dtype:10}{hf['target']:10.0f}{hf['total']:8.0f}{ours['target']:14.0f}"
            f"{ours['total']:8.0f}{ours['total'] / hf['total']:6.2f}x{hf['cpu_s_per_step']:11.1f}"
            f"{ours['cpu_s_per_step']:14.1f}{hf['loss']:9.4f}{ours['loss']:11.4f}"
        )


if __name__ == "__main__":
    main()
