"""Target sets at scale: build a synthetic set (1M rows by default), then time `inspect` and
`validate` streaming over it, each in a fresh process so that its peak RSS is its own.

    python benchmarks/targets_bench.py [--rows 1000000] [--dir DIR] [--keep]

Rows are realistic in shape: ~100 prompt tokens, ~170 expert-prompt tokens, ~64 target tokens
with a source flag and two float32 log-probs each, four λ values. Columns are generated
vectorised (numpy -> Arrow offsets/values) and written through `TargetSetWriter.write_batch`, so
the writer's checks, parts, manifest and checksums are the real ones. Printed last: time, peak
RSS and peak Arrow-pool memory of each phase, and the set's size on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

LAMS = (0.0, 0.3, 0.5, 1.0)
CHUNK = 50_000
VOCAB = 32_000
PROVENANCE = {
    "kind": "mixsd",
    "model": {"name": "synthetic", "revision": None, "weights_sha256": None},
    "tokenizer": "sha256:" + "0" * 64,
    "sampling": {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 128},
    "seed": 0,
    "lams": list(LAMS),
    "engine": {"name": "synthetic", "version": "0"},
    "input": "sha256:" + "1" * 64,
}


def _lists(rng, lengths: np.ndarray, values: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[: offsets[-1]]))


def synthetic_batch(rng, n: int, start: int, lam: float) -> pa.RecordBatch:
    """`n` schema-v1 rows `ex<start>`..., built column by column (no Python row dicts)."""
    from mixsd.targets.schema import SCHEMA

    t_len = rng.integers(32, 97, n)
    p_len = rng.integers(60, 141, n)
    e_len = p_len + rng.integers(40, 101, n)
    tokens = int(t_len.sum())
    texts = pa.array([f"synthetic answer text number {k} " * 8 for k in range(512)])
    pick = pa.array(rng.integers(0, 512, n))
    correct = rng.random(n)
    finish = pa.array(["stop", "length", "prompt_too_long"]).take(
        pa.array(np.searchsorted([0.9, 0.99], rng.random(n), side="right"))
    )
    columns = {
        "id": pa.array([f"ex{i:08d}" for i in range(start, start + n)]),
        "sample": pa.array(np.zeros(n, np.int32)),
        "attempt": pa.array(np.zeros(n, np.int32)),
        "lam": pa.array(np.full(n, lam)),
        "kind": pa.array(["mixsd"] * n),
        "prompt_ids": _lists(rng, p_len, rng.integers(0, VOCAB, int(p_len.sum()), dtype=np.int32)),
        "expert_prompt_ids": _lists(
            rng, e_len, rng.integers(0, VOCAB, int(e_len.sum()), dtype=np.int32)
        ),
        "target_ids": _lists(rng, t_len, rng.integers(0, VOCAB, tokens, dtype=np.int32)),
        "target_text": texts.take(pick),
        "source": _lists(rng, t_len, (rng.random(tokens) < lam).astype(np.uint8)),
        "expert_logprob": _lists(rng, t_len, -rng.exponential(1.0, tokens).astype(np.float32)),
        "naive_logprob": _lists(rng, t_len, -rng.exponential(2.0, tokens).astype(np.float32)),
        "finish_reason": finish,
        "correct": pa.array(correct < 0.7, mask=correct > 0.95),
        "reference": texts.take(pick),
        "answer": pa.array([str(k) for k in range(512)]).take(pick),
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=SCHEMA)


def build(root: Path, rows: int) -> None:
    from mixsd.targets.writer import TargetSetWriter

    rng = np.random.default_rng(0)
    with TargetSetWriter(root, PROVENANCE, rows_per_part=CHUNK) as writer:
        for k, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            writer.write_batch(synthetic_batch(rng, n, start, LAMS[k % len(LAMS)]))


def phase(name: str, root: Path, rows: int) -> dict:
    """Run one phase in this process; report its time and memory."""
    import mixsd.targets.summary
    import mixsd.targets.validate
    import mixsd.targets.writer  # noqa: F401  (imports count in the baseline, not the phase)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if name == "build":
        build(root, rows)
        result = rows
    elif name == "inspect":
        from mixsd.targets.summary import inspect_set

        result = inspect_set(root)["rows"]
    else:
        from mixsd.targets.validate import validate

        problems, result = validate(root)
        assert not problems, problems[:3]
    return {
        "phase": name,
        "rows": result,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_imports_mb": round(baseline),
        "arrow_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the set afterwards")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.dir, args.rows)))
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="mixsd-targets-bench-"))
    root = base / "set"
    shutil.rmtree(root, ignore_errors=True)
    results = []
    for name in ("build", "inspect", "validate"):
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--dir",
            str(root),
            "--rows",
            str(args.rows),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
    parts = len(list(root.rglob("*.parquet")))
    if not args.keep:
        shutil.rmtree(base if args.dir is None else root)
    print(f"target set: {args.rows} rows, {parts} parts, {size:.0f} MiB on disk (zstd)")
    print(
        f"{'phase':<9} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13} {'after imports':>14} "
        f"{'Arrow peak MiB':>15}"
    )
    for r in results:
        print(
            f"{r['phase']:<9} {r['seconds']:>8} {r['rows'] / max(r['seconds'], 1e-9):>9.0f} "
            f"{r['peak_rss_mb']:>13} {r['rss_after_imports_mb']:>14} {r['arrow_peak_mb']:>15}"
        )


if __name__ == "__main__":
    main()
