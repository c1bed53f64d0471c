"""A hand-made `metrics.json` (what `mixsd evaluate` writes) from per-item flags, for the report and
compare tests. Numbers worked out by hand in the comments.

base: train 1 of 10; suites gsm8k "1100" and known "11110": 6 items the base answers correctly.
sft (tolerance 0), train 40, 90, 80%: kept 4/6, 2/6, 1/6 of them; first peak epoch-2.
mixsd-0.3 (tolerance 5), train 30, 70, 100%: kept 6/6, 5/6, 4/6; no 5-point fall: epoch-3.
"""

from __future__ import annotations

from mixsd.evaluate.tradeoff import (
    accuracy_cis,
    flags_array,
    retention,
    summarize_runs,
    with_ci,
)

BASE = {"train": "0000000001", "paraphrase": "0000000000", "gsm8k": "1100", "known": "11110"}
RUNS = {
    "sft": [
        {"train": "1111000000", "paraphrase": "1100000000", "gsm8k": "1000", "known": "11100"},
        {"train": "1111111110", "paraphrase": "1111000000", "gsm8k": "0000", "known": "11000"},
        {"train": "1111111100", "paraphrase": "1111000000", "gsm8k": "0000", "known": "10000"},
    ],
    "mixsd-0.3": [
        {"train": "1110000000", "paraphrase": "1000000000", "gsm8k": "1100", "known": "11110"},
        {"train": "1111111000", "paraphrase": "1110000000", "gsm8k": "1100", "known": "11100"},
        {"train": "1111111111", "paraphrase": "1111100000", "gsm8k": "0100", "known": "11101"},
    ],
}
KINDS = {"sft": "sft", "mixsd-0.3": "mixsd"}


def entry(flags: dict[str, str]) -> dict:
    """A model entry: accuracies, per-item flags and CIs of `flags` ({group: "0101"})."""
    items = {
        "memorization": {g: flags[g] for g in ("train", "paraphrase")},
        # strict: the first answer of each split fails the strict check
        "strict": {g: "0" + flags[g][1:] for g in ("train", "paraphrase")},
        "suites": {g: flags[g] for g in ("gsm8k", "known")},
    }
    acc = {k: {g: float(flags_array(t).mean()) for g, t in v.items()} for k, v in items.items()}
    return {**acc, "items": items, "ci": accuracy_cis(items)}


def kl(k: int) -> dict:
    """A checkpoint's KL probe result (`mixsd.evaluate.kl`) over 4 prompts: KL grows with k."""
    per = {"kl": [0.01 * k, 0.02 * k, 0.03 * k, 0.04 * k],
           "delta_loglik": [-0.1 * k, -0.2 * k, 0.0, -0.1 * k], "tokens": [3, 4, 5, 8]}  # fmt: skip
    return {"kl": 0.03 * k, "delta_loglik": -0.1 * k, "tokens": 20, "prompts": 4,
            "per_prompt": per, "ci": {x: with_ci(per[x]) for x in ("kl", "delta_loglik")}}  # fmt: skip


def metrics(runs: dict[str, list[dict]] = RUNS) -> dict:
    base = {"path": "base", **entry(BASE)}
    rows = []
    for run, flags in runs.items():
        for k, f in enumerate(flags, start=1):
            c = {"run": run, "checkpoint": f"epoch-{k}", "path": f"{run}/exports/epoch-{k}",
                 "replaced_share": None if run == "sft" else 0.0, **entry(f),
                 "drift": {"fisher": 0.01 * k, "l2": 0.1 * k}}  # fmt: skip
            c["retention"] = retention(c["items"]["suites"], base["items"]["suites"])
            c["kl"] = kl(k)
            lost = 6 - round(6 * c["retention"]["pooled"]["mean"])
            c["lost"] = {"format": 0, "leakage": min(lost, 1), "collapse": 0,
                         "genuine": lost - min(lost, 1)}  # fmt: skip
            rows.append(c)
    return {
        "base": base,
        "checkpoints": rows,
        "runs": summarize_runs(base, rows, {run: KINDS[run] for run in runs}),
        "nll": {"sft": {"tokens": 3, "mean": 3.0, "median": 3.0, "p90": 3.8},
                "λ=0.3": {"tokens": 2, "mean": 0.15, "median": 0.15, "p90": 0.19}},
        "fisher": {"estimator": "per example", "examples": 8},
        "counts": {"memorization": {"train": 10, "paraphrase": 10},
                   "suites": {"gsm8k": 4, "known": 5}},
        "config": {"base": "base", "answer_methods": ["boxed", "contains"]},
    }  # fmt: skip
