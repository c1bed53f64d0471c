"""From per-item answer flags to the numbers of the trade-off: accuracies with CIs, retention on the
items the base answers correctly, each run's kind, first peak and retention at matched accuracy.

Every model entry of `metrics.json` keeps its flags (`items`: per group a string of 0/1 in item
order), so `mixsd compare` can bootstrap over seeds x items from `metrics.json` alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from mixsd.errors import MixsdError
from mixsd.evaluate.stats import (
    MATCHED_ACCURACIES,
    Curve,
    authors_first_peak,
    bootstrap_ci,
    peak_tolerance,
    retention_at,
)


def flags_text(flags: list[bool]) -> str:
    """Per-item flags as one compact string, "1" correct, "0" wrong, in item order."""
    return "".join("1" if f else "0" for f in flags)


def flags_array(text: str) -> np.ndarray:
    """The flags of `flags_text` as floats [n_items]."""
    return np.array([c == "1" for c in text], dtype=float)


def with_ci(values) -> dict:
    """`{"mean", "lo", "hi", "n"}`: the mean of `values` [n_items] and its 95% bootstrap CI."""
    mean, lo, hi = bootstrap_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi, "n": len(values)}


def accuracy_cis(items: dict) -> dict:
    """`{kind: {group: [lo, hi]}}`: the 95% CI of every accuracy in `items` (`{kind: {group: flags
    text}}`, kind "memorization" or "suites")."""
    return {
        kind: {g: list(bootstrap_ci(flags_array(t))[1:]) for g, t in groups.items()}
        for kind, groups in items.items()
    }


def kept_items(suites: dict[str, str], base_suites: dict[str, str]) -> dict[str, np.ndarray]:
    """Per suite, the model's flags [n_kept] on the items the base answers correctly."""
    out = {}
    for name, base_text in base_suites.items():
        base = flags_array(base_text).astype(bool)
        out[name] = flags_array(suites[name])[base]
    return out


def retention(suites: dict[str, str], base_suites: dict[str, str]) -> dict:
    """Retention with CIs: of the items the base answers correctly, the share the model still does.

    Per suite, and pooled over every suite's such items (each item once, so a big suite weighs
    more than a small one: the headline number). A suite where the base answers nothing has no
    retention (None), and nor does the pool when no suite has one.
    Returns `{"per_suite": {name: with_ci | None}, "pooled": with_ci | None}`.
    """
    kept = kept_items(suites, base_suites)
    pooled = np.concatenate([np.zeros(0), *kept.values()])
    return {
        "per_suite": {name: with_ci(v) if v.size else None for name, v in kept.items()},
        "pooled": with_ci(pooled) if pooled.size else None,
    }


def run_kind(path: str | Path) -> str | None:
    """A run dir's kind for its first-peak tolerance: "opsd" (`method: opsd` in its config.yaml),
    "mixsd" (a target set part with λ > 0 in its data.json), else "sft" (references: λ null,
    `mixsd targets from-references`; or λ 0). None for an HF or adapter dir: no run."""
    path = Path(path)
    config = path / "config.yaml"
    if not config.is_file():
        return None
    if yaml.safe_load(config.read_text(encoding="utf-8"))["method"] == "opsd":
        return "opsd"
    data_file = path / "data.json"
    if not data_file.is_file():
        raise MixsdError(f"{path}: no data.json: cannot tell MixSD from SFT for the first peak")
    data = json.loads(data_file.read_text(encoding="utf-8"))
    lams = [p["lam"] for parts in data.values() for p in parts]
    return "mixsd" if any(lam is not None and lam > 0 for lam in lams) else "sft"


def summarize_runs(base: dict, rows: list[dict], kinds: dict[str, str | None]) -> dict:
    """Per run: its kind and first-peak tolerance, its first-peak checkpoint, and retention at
    matched training accuracy (each `MATCHED_ACCURACIES` and the first peak) with CIs.

    base, rows: the base and checkpoint entries of `metrics.json` (with `items` and `retention`);
    marks each row's `first_peak` (the authors' rule at the run's tolerance; only a run dir (a
    kind) with several checkpoints and a `train` split has one). A matched value interpolates per item
    between the two checkpoints that bracket the crossing, so its CI resamples items with the
    crossing held where it is. Returns `{run: {"kind", "tolerance", "first_peak", "matched"}}`.
    """
    out = {}
    for run, kind in kinds.items():
        mine = [c for c in rows if c["run"] == run]
        tolerance = None if kind is None else peak_tolerance(kind)
        for c in mine:
            c["first_peak"] = False
        peak = None
        if len(mine) > 1 and tolerance is not None and "train" in base["memorization"]:
            points = [100 * c["memorization"]["train"] for c in mine]
            peak = mine[authors_first_peak(points, tolerance)]
            peak["first_peak"] = True
        out[run] = {
            "kind": kind,
            "tolerance": tolerance,
            "first_peak": None if peak is None else peak["checkpoint"],
            "matched": _matched(base, mine, peak),
        }
    return out


def run_curve(base: dict, mine: list[dict], tolerance: float | None) -> Curve | None:
    """A run's per-item flags along its curve, the base first (`Curve`): the training questions
    and the pooled suite items the base answers correctly (the base keeps all of them).
    mine: the run's entries of `metrics.json` in training order. None without a curve (no
    `train` split, or no item the base answers correctly)."""
    base_items = base["items"]["suites"]
    kept = [np.concatenate([np.zeros(0), *kept_items(c["items"]["suites"], base_items).values()])
            for c in [base, *mine]]  # fmt: skip
    if "train" not in base["memorization"] or kept[0].size == 0:
        return None
    train = [flags_array(c["items"]["memorization"]["train"]) for c in [base, *mine]]
    return Curve(np.stack(train), np.stack(kept), tolerance)


def _matched(base: dict, mine: list[dict], peak: dict | None) -> dict:
    """`{"0.5": with_ci | None, ..., "first_peak": {"train", "retention"} | None}`; {} when the
    run has no curve (`run_curve`)."""
    curve = run_curve(base, mine, None)
    if curve is None:
        return {}
    # retention_at is linear in the retentions: given per-item arrays it interpolates item-wise
    points = list(zip(curve.train.mean(axis=1), curve.kept, strict=True))
    out: dict = {}
    for a in MATCHED_ACCURACIES:
        values = retention_at(points, a)
        out[str(a)] = None if values is None else with_ci(values)
    out["first_peak"] = None
    if peak is not None:
        kept = curve.kept[1 + mine.index(peak)]
        out["first_peak"] = {"train": peak["memorization"]["train"], **with_ci(kept)}
    return out
