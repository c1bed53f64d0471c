"""The HF engine's mixed decoding through `mixsd generate` against `model.generate` sampling, on
the same model, records, batch and dtype.

    python benchmarks/generate_bench.py [--model DIR] [--dtype float32,bfloat16] [--batch 16]
        [--new-tokens 32] [--lam 0.3] [--sizes 16,48] [--templates YAML] [--threads N]
        [--cpu-time] [--quick] [--profile]

Jobs are built the way `mixsd generate` builds them: KGFact-style records (the demo's invented
people, `mixsd.data.demo_facts`) through the published expert templates (or `--templates`) and the
model's chat template. **mixed** is the generate stage itself (`runner.run`: jobs, decoding at
`--lam`, decode, answer check, Parquet writes) with the model already loaded; **generate** is
`model.generate` sampling the expert prompts in batches of `--batch` (T 0.6, top-k 64), the work
a lam 0 run replaces. Both stop at the model's stop tokens; tokens/s counts generated tokens
(a mixed token is one token). `--cpu-time` reads the process's CPU time instead of the wall
clock (a shared machine distorts wall time; use it with `--threads 1`).

Two figures per dtype:
- **short run**: one run of `--sizes[0]` records, as a user pays it (start-up included, model
  loading excluded);
- **steady state**: (tokens(b) - tokens(a)) / (time(b) - time(a)) between the two sizes, so
  fixed costs cancel, for `model.generate` too (`--quick` skips it).

Each ratio is printed next to its row bound. On CPU a decoding or prefill step of a small dense
model costs about the same per token fed (2 FLOPs per weight; attention over a few hundred
positions is a few percent of that), so a sequence costs the tokens it feeds the model:
`generate` feeds the expert prompt and its G new tokens, a mixed sequence feeds both prompts and
G tokens into each of its two rows:

    bound = sum(expert_len + G) / sum(naive_len + expert_len + 2 G)      (G = --new-tokens)

An engine at the bound spends as much per fed token as `model.generate`; 0.5 is the bound of the
decoding steps alone. Measured ratios above the bound come from better batching (a mixed step
runs twice the rows through each weight read).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch

MODEL = "data/models/smollm2"


def facts_file(n: int, folder: Path) -> Path:
    """A JSONL of `n` KGFact-style records (the demo's generator, more people for bigger n)."""
    import json

    from mixsd.data.demo_facts import facts

    path = folder / f"facts-{n}.jsonl"
    records = facts(seed=0, people=(n + 1) // 2)[:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def new_tokens(rows: list[list[int]], stops: set[int]) -> int:
    """Generated tokens of `model.generate` rows: up to and including the first stop token."""
    return sum(next((i + 1 for i, t in enumerate(r) if t in stops), len(r)) for r in rows)


def hf_generate(model, pairs, stops: list[int], args) -> int:
    """`model.generate` sampling of the expert prompts in batches; returns the tokens generated."""
    from mixsd.modeling import PAD_ID, left_pad

    total = 0
    for i in range(0, len(pairs), args.batch):
        ids, mask, _ = left_pad([p.expert_ids for p in pairs[i : i + args.batch]], PAD_ID, "cpu")
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=0.6,
                top_k=64,
                top_p=1.0,
                max_new_tokens=args.new_tokens,
                eos_token_id=stops,
                pad_token_id=PAD_ID,
            )
        total += new_tokens(out[:, ids.shape[1] :].tolist(), set(stops))
    return total


def mixed(model, facts: Path, out: Path, dtype: str, args) -> int:
    """`mixsd generate` (the runner) on `facts` with the loaded `model`; returns its tokens."""
    from mixsd.generate import runner
    from mixsd.generate.config import GenerateConfig
    from mixsd.generate.hf_engine import HFEngine

    cfg = GenerateConfig(
        model=args.model, input=str(facts), out=str(out), lam=[args.lam], samples=1,
        max_new_tokens=args.new_tokens, batch_size=args.batch, dtype=dtype, device="cpu",
        templates=args.templates,
    )  # fmt: skip
    runner._open_engine = lambda cfg, stops: HFEngine(  # the loaded model: loading is not timed
        model, cfg.sampling(), stops, cfg.batch_size, cfg.max_new_tokens, cfg.max_model_len
    )
    return runner.run(cfg)["tokens"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--dtype", default="float32,bfloat16", help="comma-separated")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--lam", type=float, default=0.3)
    ap.add_argument("--sizes", default="16,48", help="records of the short run, then the long one")
    ap.add_argument("--templates", default=None, help="expert templates YAML (default: published)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall time")
    ap.add_argument("--quick", action="store_true", help="the short run only")
    ap.add_argument("--profile", action="store_true", help="cProfile one short mixed run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    sizes = [int(s) for s in args.sizes.split(",")][: 1 if args.quick else 2]

    from mixsd.data.io import load_records
    from mixsd.data.models import load_model, load_tokenizer
    from mixsd.data.templates import build_prompt_pair, load_templates
    from mixsd.modeling import model_eos_ids, stop_ids

    tokenizer = load_tokenizer(args.model)
    stops = stop_ids(tokenizer, (), model_eos_ids(args.model))
    templates = load_templates(args.templates)
    tmp = Path(tempfile.mkdtemp(prefix="generate-bench-"))
    files = {n: facts_file(n, tmp) for n in sizes}
    pairs = {
        n: [build_prompt_pair(tokenizer, r, templates) for r in load_records(files[n])]
        for n in sizes
    }
    g, first = args.new_tokens, pairs[sizes[0]]
    naive = sum(len(p.naive_ids) for p in first) / len(first)
    expert = sum(len(p.expert_ids) for p in first) / len(first)
    bound = (expert + g) / (naive + expert + 2 * g)
    print(
        f"{args.model}: prompts naive {naive:.0f} / expert {expert:.0f} tokens (mean), "
        f"lam {args.lam}, batch {args.batch}, {g} new tokens, {torch.get_num_threads()} threads, "
        f"{'CPU' if args.cpu_time else 'wall'} time; row bound {bound:.2f} (decoding alone 0.50)"
    )
    for dtype in args.dtype.split(","):
        model = load_model(args.model, "cpu", dtype)
        hf_generate(model, first[: args.batch], stops, args)  # warm-up
        runs: dict[str, dict[int, tuple[int, float]]] = {"generate": {}, "mixed": {}}
        for n in sizes:
            start = clock()
            tokens = hf_generate(model, pairs[n], stops, args)
            runs["generate"][n] = tokens, clock() - start
            start = clock()
            tokens = mixed(model, files[n], tmp / f"out-{dtype}-{n}", dtype, args)
            runs["mixed"][n] = tokens, clock() - start
        for name, by_size in runs.items():
            line = "  ".join(f"{n} records: {t} tok in {s:.2f}s" for n, (t, s) in by_size.items())
            print(f"  {dtype:9s} {name:8s} {line}")
        a = sizes[0]
        rate = {k: v[a][0] / v[a][1] for k, v in runs.items()}
        print(f"  {dtype:9s} short run ({a} records): mixed {rate['mixed']:.1f} tok/s, generate "
              f"{rate['generate']:.1f} tok/s: ratio {rate['mixed'] / rate['generate']:.2f} "
              f"(row bound {bound:.2f}, goal >= 0.6)")  # fmt: skip
        if len(sizes) == 2:
            b = sizes[1]
            slope = {k: (v[b][0] - v[a][0]) / (v[b][1] - v[a][1]) for k, v in runs.items()}
            print(f"  {dtype:9s} steady state ({a}->{b} records): mixed {slope['mixed']:.1f} "
                  f"tok/s, generate {slope['generate']:.1f} tok/s: ratio "
                  f"{slope['mixed'] / slope['generate']:.2f} (row bound {bound:.2f})")  # fmt: skip
        if args.profile:
            with cProfile.Profile() as prof:
                mixed(model, files[a], tmp / f"profile-{dtype}", dtype, args)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
