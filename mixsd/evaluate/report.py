"""The report: `metrics.json` (every number) and `report.md` (tables and the PNG plots).

Every file is written to a temp name and renamed; `metrics.json` comes last, so a report dir with a
`metrics.json` is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mixsd.evaluate.plots import plot_nll_cdfs, plot_tradeoff
from mixsd.io import write_atomic

FISHER_NOTE = (
    "Diagonal empirical Fisher of the base, per example: F_i = mean_n (d/dθ_i log p(y_n|x_n))^2 "
    "over held-out suite examples (their references as y); Fisher drift = sum_i F_i (θ_i - θ0_i)^2; "
    "L2 drift = ||θ - θ0||_2."
)


def write_report(out: str | Path, metrics: dict, nll: dict[str, np.ndarray]) -> Path:
    """Draw the plots into `out`, then write `report.md` and `metrics.json`; returns `out`.

    metrics: `{"base": {...}, "checkpoints": [...], "nll": {...}, "fisher": ..., "config": ...}`
    as `mixsd.evaluate.run` builds it; `metrics["plots"]` is filled here with the PNG names.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if nll:
        plots["nll_cdf"] = plot_nll_cdfs(nll, out / "nll_cdf.png").name
    points = tradeoff_points(metrics["checkpoints"])
    if points:
        base_train = metrics["base"]["memorization"].get("train")
        plots["tradeoff"] = plot_tradeoff(points, out / "tradeoff.png", base_train).name
    metrics = {**metrics, "plots": plots}
    write_atomic(out / "report.md", render_markdown(metrics))
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return out


def tradeoff_points(checkpoints: list[dict]) -> list[dict]:
    """One point per checkpoint that has both a training accuracy and an average retention."""
    return [
        {
            "run": c["run"],
            "train_acc": c["memorization"]["train"],
            "retention": c["retention"]["average"],
            "first_peak": c["first_peak"],
        }
        for c in checkpoints
        if "train" in c["memorization"] and c.get("retention", {}).get("average") is not None
    ]


def render_markdown(m: dict) -> str:
    base, ckpts = m["base"], m["checkpoints"]
    lines = ["# mixsd evaluation report", "", f"Base model: `{base['path']}`"]
    if any(c["first_peak"] for c in ckpts):
        tolerance = m["config"]["peak_tolerance"]
        by = f" by more than {tolerance:g} points" if tolerance else ""
        lines += [
            "",
            "★ the run's first-peak checkpoint (the first new maximum of training accuracy "
            f"that the next checkpoint does not exceed{by}).",
        ]
    if any(c["replaced_share"] for c in ckpts):
        lines += [
            "",
            "(N% on references): the share of the run's MixSD rows that failed their answer check "
            "and were trained on their reference answers (`--failed reference`): for those rows "
            "the run is SFT.",
        ]
    lines += [""]
    rows = [("base", base)] + [(_name(c), c) for c in ckpts]
    splits = list(base["memorization"])
    if splits:
        lines += ["## Memorization (closed book, T=0)", ""]
        counts = m["counts"]["memorization"]
        lines += _table(
            ["model"] + [f"{s} (n={counts[s]})" for s in splits],
            [[n] + [_pct(r["memorization"][s]) for s in splits] for n, r in rows],
        )
    suites = list(base["suites"])
    if suites:
        lines += ["## Retention (held-out accuracy; retention = model / base)", ""]
        counts = m["counts"]["suites"]
        body = [["base"] + [_pct(base["suites"][s]) for s in suites] + ["—"]]
        for c in ckpts:
            ret = c["retention"]
            cells = [f"{_pct(c['suites'][s])} ({_ratio(ret['per_suite'][s])})" for s in suites]
            body.append([_name(c)] + cells + [_ratio(ret["average"])])
        lines += _table(["model"] + [f"{s} (n={counts[s]})" for s in suites] + ["retention"], body)
        lines += [
            "retention: the mean over the suites the base scores above 0 on "
            "(n/a: base accuracy 0, no ratio).",
            "",
        ]
    if "tradeoff" in m["plots"]:
        lines += [
            "## Trade-off",
            "",
            "Every checkpoint; ringed: the first peak.",
            "",
            f"![trade-off]({m['plots']['tradeoff']})",
            "",
        ]
    elif ckpts:
        lines += [
            "## Trade-off",
            "",
            "No plot: it needs the `train` split and a defined retention "
            "(a suite the base scores above 0 on).",
            "",
        ]
    if m["nll"]:
        lines += ["## Target NLL under the base model (per token, nats)", ""]
        lines += _table(
            ["targets", "tokens", "median", "mean", "p90"],
            [
                [k, str(v["tokens"]), f"{v['median']:.4f}", f"{v['mean']:.4f}", f"{v['p90']:.4f}"]
                for k, v in m["nll"].items()
            ],
        )
        lines += [f"![NLL CDFs]({m['plots']['nll_cdf']})", ""]
    if m.get("fisher"):
        lines += ["## Weight drift from the base", "", FISHER_NOTE, ""]
        lines += _table(
            ["model", "Fisher drift", "L2 drift"],
            [[_name(c), f"{c['drift']['fisher']:.4g}", f"{c['drift']['l2']:.4g}"] for c in ckpts],
        )
    return "\n".join(lines)


def _name(c: dict) -> str:
    peak = " ★" if c["first_peak"] else ""
    run = c["run"]
    if c["replaced_share"]:
        run += f" ({100 * c['replaced_share']:.0f}% on references)"
    return f"{run} / {c['checkpoint']}{peak}" if c["checkpoint"] else run + peak


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]
