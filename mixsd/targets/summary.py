"""`inspect`: what a target set holds, per λ, computed in one streaming pass.

Token-length quantiles come from a histogram of lengths (memory: one counter per distinct
length), so nothing grows with the number of rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from mixsd.targets.completeness import UNKNOWN, completeness
from mixsd.targets.reader import iter_batches, lams, read_manifest
from mixsd.targets.schema import format_lam

COLUMNS = ["target_ids", "source", "correct", "finish_reason"]


class _Tally:
    def __init__(self) -> None:
        self.rows = 0
        self.lengths = np.zeros(0, dtype=np.int64)  # histogram: lengths[k] = rows of k tokens
        self.naive = 0
        self.sourced = 0  # target tokens with a recorded source
        self.correct = 0
        self.scored = 0
        self.finish: Counter = Counter()

    def add(self, batch) -> None:
        self.rows += len(batch)
        n = np.asarray(pc.list_value_length(batch.column("target_ids")).fill_null(0))
        counts = np.bincount(n)
        if counts.size > self.lengths.size:
            self.lengths = np.pad(self.lengths, (0, counts.size - self.lengths.size))
        self.lengths[: counts.size] += counts
        source = batch.column("source")
        self.naive += int(pc.sum(pc.list_flatten(source)).as_py() or 0)
        self.sourced += int(pc.sum(pc.list_value_length(source)).as_py() or 0)
        correct = batch.column("correct")
        self.scored += len(correct) - correct.null_count
        self.correct += int(pc.sum(correct).as_py() or 0)
        self.finish.update(batch.column("finish_reason").to_pylist())

    def merge(self, other: _Tally) -> None:
        size = max(self.lengths.size, other.lengths.size)
        self.lengths = np.pad(self.lengths, (0, size - self.lengths.size))
        self.lengths[: other.lengths.size] += other.lengths
        for name in ("rows", "naive", "sourced", "correct", "scored"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finish.update(other.finish)

    def result(self) -> dict:
        total = int(self.lengths.sum())
        cum = np.cumsum(self.lengths)

        def quantile(q: float) -> int:  # nearest rank
            return int(np.searchsorted(cum, max(1, int(np.ceil(q * total))))) if total else 0

        return {
            "rows": self.rows,
            "target_len": {
                "mean": float((np.arange(self.lengths.size) * self.lengths).sum() / total)
                if total
                else 0.0,
                "p50": quantile(0.5),
                "p95": quantile(0.95),
                "max": int(self.lengths.size - 1) if total else 0,
            },
            "naive_fraction": self.naive / self.sourced if self.sourced else None,
            "correct_rate": self.correct / self.scored if self.scored else None,
            "finish": dict(sorted(self.finish.items())),
        }


def inspect_set(root: str | Path) -> dict:
    """`{rows, complete (null: unknown), completeness [lines], provenance, stats, per_lam: [{lam, rows, target_len{mean,p50,p95,max},
    naive_fraction, correct_rate, finish{reason: rows}}], all: {...}}`: a streaming summary.

    naive_fraction = naive-picked target tokens / target tokens with a source (null for SFT);
    correct_rate = correct rows / scored rows (null when none is scored).
    """
    manifest = read_manifest(root)
    total = _Tally()
    per_lam = []
    for lam in lams(root):
        tally = _Tally()
        for batch in iter_batches(root, lams=[lam], columns=COLUMNS, batch_size=4096):
            tally.add(batch)
        total.merge(tally)
        per_lam.append({"lam": lam, **tally.result()})
    problems, note = completeness(manifest)
    return {
        "rows": total.rows,
        "complete": None if note == UNKNOWN else not problems,
        "completeness": problems + ([note] if note else []),
        "provenance": manifest["provenance"],
        "stats": manifest.get("stats", {}),
        "per_lam": per_lam,
        "all": total.result(),
    }


def format_summary(root: str | Path, summary: dict) -> str:
    """The summary as a few lines of text for people."""
    prov = summary["provenance"]
    model = prov.get("model") or {}
    lines = [
        f"{root}: {summary['rows']} rows, {len(summary['per_lam'])} λ value(s), kind "
        f"{prov.get('kind', 'mixsd')}, schema v{prov.get('schema_version')}, mixsd "
        f"{prov.get('mixsd_version')}, created {prov.get('created')}",
        f"model: {model.get('name')} (revision {model.get('revision')}, weights "
        f"{_short_hash(model.get('weights_sha256'))}); "
        f"tokenizer {_short_hash(prov.get('tokenizer'))}",
        f"engine: {prov.get('engine')}; sampling: {prov.get('sampling')}; seed: {prov.get('seed')}",
        f"input: {_short_hash(prov.get('input'))}",
        *summary["completeness"],
        "",
        f"{'λ':>6} {'rows':>9} {'len mean':>9} {'p50':>5} {'p95':>5} {'max':>6} "
        f"{'naive tok':>9} {'correct':>8}  finish",
    ]
    for row in [*summary["per_lam"], {"lam": "all", **summary["all"]}]:
        lam = row["lam"] if row["lam"] == "all" else format_lam(row["lam"])
        lam = "sft" if row["lam"] is None else lam
        t = row["target_len"]
        finish = ", ".join(f"{k} {v}" for k, v in row["finish"].items())
        lines.append(
            f"{lam:>6} {row['rows']:>9} {t['mean']:>9.1f} {t['p50']:>5} {t['p95']:>5} "
            f"{t['max']:>6} {_pct(row['naive_fraction']):>9} {_pct(row['correct_rate']):>8}  "
            f"{finish}"
        )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _short_hash(h: str | None) -> str:
    return str(h)[:19] + "…" if h and len(str(h)) > 20 else str(h)
