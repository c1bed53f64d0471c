"""Mixed decoding vs `model.generate` sampling, side by side on one ~10M-parameter Llama.

    python benchmarks/generate_bench.py [--batch 32] [--new-tokens 64] [--repeats 3] [--profile]

Random weights (hidden 320, 6 layers, vocab 8192, tied embeddings), random prompts (naive 32
tokens, expert 96), the same number of new tokens everywhere (no stop tokens). `generate` samples
from the expert prompts, so the lam=0 fast path does exactly its work; a mixed sequence adds the
(shorter) naive row. Each method runs
`--repeats` times, interleaved so machine contention hits all alike; medians are reported.
Throughput = batch * new tokens / wall time, prefill included. Ratios are printed last:
mixed/generate (goal >= 0.6; 0.5 is per-row parity, each mixed token costs two rows) and
single-conditional/generate (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mixsd.generate.core import Sampling, sequence_key
from mixsd.generate.hf_engine import HFEngine
from mixsd.generate.jobs import Job


def build_model(vocab: int = 8192, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=320,
        intermediate_size=864,
        num_hidden_layers=6,
        num_attention_heads=5,
        num_key_value_heads=5,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--profile", action="store_true", help="profile one mixed run afterwards")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    b, n = args.batch, args.new_tokens
    g = torch.Generator().manual_seed(1)
    naive = torch.randint(2, 8192, (b, 32), generator=g).tolist()
    expert = [p + torch.randint(2, 8192, (64,), generator=g).tolist() for p in naive]
    sampling = Sampling(temperature=0.6, top_k=64)

    def hf_generate():
        ids = torch.tensor(expert)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=64,
                temperature=0.6,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=0,
            )
        assert out.shape[1] == 96 + n

    def engine_run(lam: float, other: bool = False):
        engine = HFEngine(
            model,
            sampling,
            stop_ids=[],
            batch_size=b,
            max_new_tokens=n,
            max_model_len=2048,
            other_logprobs=other,
        )
        jobs = [Job(sequence_key(0, str(i), 0, 0), lam, naive[i], expert[i], i) for i in range(b)]
        results = list(engine.generate(jobs))
        assert all(len(r.target_ids) == n for r in results)

    runs = {
        "generate": hf_generate,
        "mixed lam=0.5": lambda: engine_run(0.5),
        "single lam=0": lambda: engine_run(0.0),
        "single lam=0 + other logprobs": lambda: engine_run(0.0, other=True),
    }
    hf_generate(), engine_run(0.5)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    print(
        f"model: {params / 1e6:.1f}M params, batch {b}, {n} new tokens, "
        f"{torch.get_num_threads()} threads, {args.repeats} repeats (median)"
    )
    tps = {}
    for name, ts in times.items():
        tps[name] = b * n / statistics.median(ts)
        print(f"  {name:32s} {tps[name]:8.0f} tok/s   runs: " + " ".join(f"{t:.2f}s" for t in ts))
    if args.profile:
        profile(lambda: engine_run(0.5))
    base = tps["generate"]
    print(f"ratio mixed/generate:  {tps['mixed lam=0.5'] / base:.2f}  (goal >= 0.6)")
    print(f"ratio single/generate: {tps['single lam=0'] / base:.2f}  (goal >= 0.95)")
    print(f"ratio single+other/generate: {tps['single lam=0 + other logprobs'] / base:.2f}")


def profile(fn) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
