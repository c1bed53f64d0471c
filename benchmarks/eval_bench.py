"""Evaluation cost per checkpoint: CPU seconds to load, greedily decode and score the closed-book
questions of one checkpoint (the demo's 64 memorization questions: 32 facts and a paraphrase
each, plus the built-in suites' items, cycled to `--suite-items`), fp32 and bf16.

    PYTHONPATH=$PWD python benchmarks/eval_bench.py --threads 1
    PYTHONPATH=$PWD python benchmarks/eval_bench.py --threads 1 --compare /work/old

`--compare ROOT` runs the same measurement with `PYTHONPATH=ROOT` in alternating subprocesses
(new, old, new, old): CPU time (`time.process_time`) per phase, so a shared machine distorts it
less than wall clock. The answers' digest shows whether both decode the same texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

MODEL = "data/models/smollm2"
FACTS = "configs/demo/facts.jsonl"


def measure(args) -> dict:
    """One checkpoint's load / decode / scoring CPU seconds per dtype (the code on sys.path)."""
    import torch

    from mixsd.data.models import load_tokenizer
    from mixsd.data.templates import render_user_turn
    from mixsd.evaluate.checkpoints import load_checkpoint
    from mixsd.evaluate.scoring import score
    from mixsd.evaluate.suites import load_input, load_suite, memorization_splits
    from mixsd.generate import greedy

    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.model)
    memo = [r for rs in memorization_splits(load_input(args.facts)).values() for r in rs]
    pool = [r for s in args.suites for r in load_suite(s).records]
    suite = [pool[i % len(pool)] for i in range(args.suite_items)]
    records = memo[: args.questions] + suite
    prompts = [render_user_turn(tok, r.prompt) for r in records]
    out = {"prompts": len(prompts), "threads": args.threads}
    for dtype in args.dtypes:
        t = time.process_time()
        model = load_checkpoint(args.model, "cpu", dtype)
        load = time.process_time() - t
        t = time.process_time()
        texts = greedy.greedy_answers(model, tok, prompts, args.max_new_tokens, args.batch_size)
        decode = time.process_time() - t
        t = time.process_time()
        flags = score(texts, [r.gold for r in records], ("contains",))
        scoring = time.process_time() - t
        out[dtype] = {
            "load_s": round(load, 2),
            "decode_s": round(decode, 2),
            "scoring_s": round(scoring, 3),
            "total_s": round(load + decode + scoring, 2),
            "correct": sum(flags),
            "answers_digest": hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12],
        }
        del model
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--facts", default=FACTS)
    ap.add_argument("--suites", nargs="+", default=["world", "language"])
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--suite-items", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", help="another checkout's root (e.g. /work/old): run both")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if not args.compare:
        print(json.dumps(measure(args)))
        return
    argv = [a for a in sys.argv[1:] if a not in ("--compare", args.compare)]
    for _ in range(args.rounds):
        for root in (os.getcwd(), args.compare):
            env = {**os.environ, "PYTHONPATH": root}
            res = subprocess.run(
                [sys.executable, __file__, *argv], env=env, capture_output=True, text=True
            )
            print(root, res.stdout.strip() or res.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
