"""`mixsd generate --engine vllm` against plain vLLM sampling and the authors' per-step generator,
on the same KGFact records through the published templates and the model's chat template.

    python benchmarks/vllm_bench.py [--model 6m|smollm2] [--smollm2 DIR] [--records 48]
        [--new-tokens 32] [--quick] [--no-per-step] [--profile]

One vLLM engine (`VLLMEngine`, started once; its start-up is reported on its own) serves every
method, so all see the same weights, prefix cache and threads:

- **mixsd**: `mixsd.generate.runner.run` (what `mixsd generate` runs: records -> prompt pairs ->
  jobs -> target set on disk) at lam 0.5, T 0.6, top-k 64, `--records` pairs in flight;
- **plain**: `LLM.generate` sampling the naive prompts of the same records (T, top-k, the same
  stop ids), no processor at work;
- **per-step**: the authors' generator (jiarui-liu/MixSD, `mix_distribution_sampling.py`,
  `_run_continuous`), written here: every step one `LLM.generate(max_tokens=1, logprobs=64,
  temperature=1)` call with, per live sequence, its coin-picked conditional's prompt plus the
  tokens so far; the token is drawn from softmax(top-64 log-probs / T); a stop id ends it.

Two measures, each with the row bound next to it (a forward on CPU costs about the same per token
row, prefill or decode: the rows each method computes bound the ratio; a mixed token costs two
rows and the expert prompt is the longer one):
- **steady state**: tokens/s as the slope between `--records` and 3x as many records (fixed costs
  cancel), for plain vLLM too;
- **one run end to end**: `--records` records as a user pays it (the target set's `seconds`,
  engine start-up excluded), against plain vLLM's and the authors' run of the same records.
Times are process CPU seconds (the engine core runs in this process: VLLM_ENABLE_V1_MULTIPROCESSING
is 0) with one thread, so other load on the machine does not skew the ratios; wall seconds are
printed beside them. Models: `6m`, a random Llama from `build_tiny_model` (hidden 256, 6 layers, 4
heads of 64, fp32: a cheap forward, so per-step overhead decides, as on a GPU) and `smollm2`,
SmolLM2-135M-Instruct in bf16 (`--smollm2 DIR`, else built with `mixsd model smollm2`).
Goals (issue 22): steady >= 0.9 of the row bound (6m), >= 0.6x plain and >= 20x per-step
(smollm2); one run >= 0.8 of the row bound (6m) and >= 10x per-step.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAM, TEMPERATURE, TOP_K = 0.5, 0.6, 64
MAX_MODEL_LEN = 512


@dataclass
class Timing:
    """Tokens generated, and the CPU and wall seconds it took."""

    tokens: int
    cpu: float
    wall: float

    def rate(self) -> float:
        return self.tokens / self.cpu

    def __sub__(self, other: Timing) -> Timing:
        return Timing(self.tokens - other.tokens, self.cpu - other.cpu, self.wall - other.wall)


def timed(llm, fn) -> Timing:
    """Run `fn()` (returns the tokens it generated) on an empty prefix cache and time it. Eager
    like the engine: vLLM's few `torch.compile`d helpers would otherwise compile (in worker
    processes, which this clock misses)."""
    import torch

    llm.reset_prefix_cache()  # no run reuses another's prompts
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.compiler.set_stance("force_eager"):
        tokens = fn()
    return Timing(tokens, time.process_time() - cpu, time.perf_counter() - wall)


def model_dir(args, work: Path) -> tuple[str, str]:
    """(model directory, dtype) of the benchmarked model."""
    if args.model == "6m":
        from mixsd.data.models import build_tiny_model

        return str(build_tiny_model(work / "6m", hidden=256, layers=6, heads=4)), "float32"
    if args.smollm2:
        return args.smollm2, "bfloat16"
    from mixsd.data.smollm2 import build_smollm2

    cache = Path(os.environ.get("MIXSD_CACHE", Path.home() / ".cache" / "mixsd"))
    return str(build_smollm2(cache / "smollm2")), "bfloat16"


def write_inputs(work: Path, counts: list[int]) -> dict[int, Path]:
    """KGFact's train records (the large graph), the first n of them per n in `counts`."""
    from mixsd.data.config import KGFactConfig
    from mixsd.data.io import load_records, write_records
    from mixsd.data.kgfact import build

    build(KGFactConfig(out=work / "kgfact", size="large"))
    records = load_records(work / "kgfact" / "train.jsonl")
    paths = {}
    for n in counts:
        paths[n] = work / f"records-{n}.jsonl"
        write_records(records[:n], paths[n])
    return paths


class TimedEngine:
    """The shared engine as `runner.run` sees it, timing its `generate` window in CPU seconds
    (from the first job to the last result, the rows' writing included, like `seconds`)."""

    def __init__(self, engine):
        self.engine, self.cpu = engine, 0.0

    @property
    def stats(self) -> dict:
        return self.engine.stats

    def generate(self, jobs):
        start = time.process_time()
        yield from self.engine.generate(jobs)
        self.cpu += time.process_time() - start


def mixsd_run(cfg_base: dict, timed_engine: TimedEngine, path: Path, out: Path) -> Timing:
    """One `mixsd generate` run on the records in `path` into a fresh target set `out`."""
    from mixsd.generate import runner
    from mixsd.generate.config import GenerateConfig

    cfg = GenerateConfig(input=str(path), out=str(out), **cfg_base)
    timed_engine.engine.llm.reset_prefix_cache()  # no run reuses another's prompts
    timed_engine.cpu = 0.0
    stats = runner.run(cfg)
    return Timing(stats["tokens"], timed_engine.cpu, stats["seconds"])


def prompt_pairs(model: str, path: Path) -> list:
    """The records' prompt pairs, as `mixsd generate` builds them (published templates)."""
    from mixsd.data.io import load_records
    from mixsd.data.models import load_tokenizer
    from mixsd.data.templates import build_prompt_pair

    tokenizer = load_tokenizer(model)
    return [build_prompt_pair(tokenizer, rec) for rec in load_records(path)]


def plain(llm, pairs, stops: list[int], new: int) -> int:
    """Plain vLLM sampling of the naive prompts; returns the tokens generated."""
    from vllm import SamplingParams

    params = SamplingParams(
        temperature=TEMPERATURE,
        top_k=TOP_K,
        max_tokens=new,
        stop_token_ids=stops,
        detokenize=False,
    )
    prompts = [{"prompt_token_ids": p.naive_ids} for p in pairs]
    outs = llm.generate(prompts, params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs)


def per_step(llm, pairs, stops: list[int], new: int, seed: int = 0) -> int:
    """The authors' generator (all sequences in one window): per step one `generate` call, each
    sequence's coin-picked conditional (naive with probability lam); returns the tokens."""
    from vllm import SamplingParams

    llm.llm_engine.model_config.max_logprobs = TOP_K  # theirs starts with max_logprobs=topk
    params = SamplingParams(max_tokens=1, logprobs=TOP_K, temperature=1.0, detokenize=False)
    rng = random.Random(seed)
    draw = np.random.default_rng(seed)
    ys: list[list[int]] = [[] for _ in pairs]
    live = list(range(len(pairs)))
    while live:
        picks = [rng.random() < LAM for _ in live]
        prompts = [
            {"prompt_token_ids": (pairs[i].naive_ids if naive else pairs[i].expert_ids) + ys[i]}
            for i, naive in zip(live, picks, strict=True)
        ]
        outs = llm.generate(prompts, params, use_tqdm=False)
        still = []
        for i, out in zip(live, outs, strict=True):
            top = out.outputs[0].logprobs[0]
            ids = np.fromiter(top.keys(), dtype=np.int64)
            lp = np.array([v.logprob for v in top.values()]) / TEMPERATURE
            p = np.exp(lp - lp.max())
            tok = int(draw.choice(ids, p=p / p.sum()))
            ys[i].append(tok)
            if tok not in stops and len(ys[i]) < new:
                still.append(i)
        live = still
    return sum(len(y) for y in ys)


def row_bound(pairs, mix_tokens: int, plain_tokens: int) -> float:
    """The mixsd/plain tokens-per-second ratio if time were proportional to token rows:
    plain computes the naive prompts and its tokens, mixsd both prompts and two rows a token."""
    naive = sum(len(p.naive_ids) for p in pairs)
    both = naive + sum(len(p.expert_ids) for p in pairs)
    return (mix_tokens / (both + 2 * mix_tokens)) / (plain_tokens / (naive + plain_tokens))


def show(name: str, t: Timing) -> None:
    print(
        f"  {name:<22} {t.tokens:6d} tok  {t.cpu:7.2f} cpu-s  {t.wall:7.2f} wall-s  "
        f"{t.rate():8.1f} tok/cpu-s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("6m", "smollm2"), default="6m")
    ap.add_argument("--smollm2", help="an existing `mixsd model smollm2` directory")
    ap.add_argument("--records", type=int, default=48, help="records (pairs in flight)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="16 records, 16 new tokens")
    ap.add_argument("--no-per-step", action="store_true", help="skip the authors' generator")
    ap.add_argument("--profile", action="store_true", help="cProfile one mixsd run afterwards")
    args = ap.parse_args()
    if args.quick:
        args.records, args.new_tokens = 16, 16
    import torch

    torch.set_num_threads(1)
    from mixsd.data.models import load_tokenizer
    from mixsd.generate import runner
    from mixsd.modeling import model_eos_ids, stop_ids

    work = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    model, dtype = model_dir(args, work)
    n, new = args.records, args.new_tokens
    inputs = write_inputs(work, [n, 3 * n])
    stops = stop_ids(load_tokenizer(model), (), model_eos_ids(model))
    cfg_base = dict(
        model=model, lam=[LAM], temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=new,
        max_model_len=MAX_MODEL_LEN, engine="vllm", batch_size=n, dtype=dtype,
        cpu_kv_cache_gib=2, templates=None,
    )  # fmt: skip
    from mixsd.generate.config import GenerateConfig

    cfg0 = GenerateConfig(input=str(inputs[n]), out=str(work / "unused"), **cfg_base)
    start = time.perf_counter()
    engine = runner._open_engine(cfg0, stops)
    startup = time.perf_counter() - start
    timed_engine = TimedEngine(engine)
    runner._open_engine = lambda cfg, stops: timed_engine  # one engine for every run
    llm = engine.llm
    pairs = {k: prompt_pairs(model, p) for k, p in inputs.items()}
    outs = iter(range(10**6))

    def mix(k: int) -> Timing:
        return mixsd_run(cfg_base, timed_engine, inputs[k], work / f"set-{next(outs)}")

    print(
        f"model {args.model} ({dtype}), lam {LAM}, T {TEMPERATURE}, top-k {TOP_K}, {new} new "
        f"tokens, {n} pairs in flight, torch threads {torch.get_num_threads()}, naive prompt "
        f"{np.mean([len(p.naive_ids) for p in pairs[n]]):.0f} tokens, expert "
        f"{np.mean([len(p.expert_ids) for p in pairs[n]]):.0f}; engine start-up {startup:.1f} s",
        flush=True,
    )
    before = dict(engine.stats)
    first = mix(n)  # the first run of a fresh engine: what a user pays
    show(f"mixsd first run ({n})", first)
    print(
        f"  engine stats of that run: { {k: v - before[k] for k, v in engine.stats.items()} }",
        flush=True,
    )
    t = {
        "mixsd": (mix(n), mix(3 * n)),
        "plain": tuple(
            timed(llm, lambda k=k: plain(llm, pairs[k], stops, new)) for k in (n, 3 * n)
        ),
    }
    for name, (a, b) in t.items():
        show(f"{name} ({n})", a)
        show(f"{name} ({3 * n})", b)
    slope = {k: b - a for k, (a, b) in t.items()}
    bound = row_bound(pairs[3 * n][n:], slope["mixsd"].tokens, slope["plain"].tokens)
    ratio = slope["mixsd"].rate() / slope["plain"].rate()
    print(
        f"steady state (slope {n}->{3 * n}): mixsd {slope['mixsd'].rate():.1f} tok/cpu-s, plain "
        f"{slope['plain'].rate():.1f}: {ratio:.2f}x plain (row bound {bound:.2f}x: "
        f"{ratio / bound:.2f} of it)"
    )
    e2e_bound = row_bound(pairs[n], first.tokens, t["plain"][0].tokens)
    e2e = first.rate() / t["plain"][0].rate()
    print(
        f"one run end to end ({n} records, first run): {e2e:.2f}x plain (row bound "
        f"{e2e_bound:.2f}x: {e2e / e2e_bound:.2f} of it); warm run "
        f"{t['mixsd'][0].rate() / t['plain'][0].rate():.2f}x"
    )
    if not args.no_per_step:
        authors = timed(llm, lambda: per_step(llm, pairs[n], stops, new))
        show(f"per-step ({n})", authors)
        print(
            f"mixsd / per-step: one run {first.rate() / authors.rate():.1f}x, steady "
            f"{slope['mixsd'].rate() / authors.rate():.1f}x (the authors' rate from one run: a "
            "bound in their favour only if their fixed cost is small)"
        )
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(mix, n)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
